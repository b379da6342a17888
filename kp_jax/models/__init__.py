"""Flax linen keypoint models. Nothing here imports TensorFlow."""

from kp_jax.models.seed_cnn import POOLS, SeedCNN

MODELS = {
    "seed_cnn": SeedCNN,
}


def create_model(model_config, num_keypoints: int):
  """The model named by `model_config.name`, built with the rest of `model_config` as fields."""
  fields = dict(model_config)
  name = fields.pop("name")
  if name not in MODELS:
    raise ValueError(f"config.model.name={name!r} is not a known model; "
                     f"choose one of {sorted(MODELS)}.")
  if fields.get("pool", "max") not in POOLS:
    raise ValueError(f"config.model.pool={fields['pool']!r}: choose one of {sorted(POOLS)}.")
  try:
    return MODELS[name](num_keypoints=num_keypoints, **fields)
  except TypeError as e:
    raise ValueError(f"config.model does not fit model {name!r}: {e}") from None
