"""The synthetic faces (`faces.py`) as a tensorflow-datasets builder.

Each example is drawn from its own random stream, seeded by (dataset seed, split, index), so a
split is the same on every machine and in any generation order.
"""

import dataclasses

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from kp_jax.data import keypoints as kp
from kp_jax.data.faces import render_example
from kp_jax.data.source import Source, tfds_shard, whole_image_box

SPEC = kp.FACE15
SPLITS = ("train", "validation", "test")


# ---------------------------------------------------------------------------------------------
# The TFDS builder.


@dataclasses.dataclass
class SyntheticFacesConfig(tfds.core.BuilderConfig):
  image_size: int = 96
  num_train: int = 20_000
  num_validation: int = 1_000
  num_test: int = 1_000
  seed: int = 0


def make_config(image_size, num_train, num_validation, num_test, seed) -> SyntheticFacesConfig:
  """A builder config whose name encodes every field, so each variant is prepared once."""
  name = f"{image_size}px_{num_train}_{num_validation}_{num_test}_seed{seed}"
  return SyntheticFacesConfig(name=name, image_size=image_size, num_train=num_train,
                              num_validation=num_validation, num_test=num_test, seed=seed)


class SyntheticFaces(tfds.core.GeneratorBasedBuilder):
  """Face-like grayscale images with the 15 Kaggle Facial Keypoints, generated offline."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [make_config(96, 20_000, 1_000, 1_000, 0), make_config(28, 20_000, 1_000, 1_000, 0)]

  def _info(self):
    size, k = self.builder_config.image_size, SPEC.num_keypoints
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(size, size, 1)),
            "keypoints": tfds.features.Tensor(shape=(k, 2), dtype=np.float32),
            "visible": tfds.features.Tensor(shape=(k,), dtype=np.float32),
            "norm": tfds.features.Scalar(dtype=np.float32),
        }),
        description=__doc__,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    return {split: self._generate_examples(split) for split in SPLITS}

  def _generate_examples(self, split):
    config = self.builder_config
    count = getattr(config, f"num_{split}")
    tenth = max(1, count // 10)
    for index in range(count):
      if index % tenth == 0:  # first use only: TFDS itself says "Unknown size", then nothing
        logging.info("Generating the synthetic faces (once, into %s): %s %d / %d.",
                     self.data_dir, split, index, count)
      rng = np.random.default_rng([config.seed, SPLITS.index(split), index])
      yield index, render_example(rng, config.image_size)


def builder(data_dir=None, **config_fields) -> SyntheticFaces:
  """The builder for one variant (see `make_config`), prepared into `data_dir` on first use."""
  config = make_config(**config_fields)
  if config.name in SyntheticFaces.builder_configs:  # TFDS wants registered ones by name
    config = config.name
  faces = SyntheticFaces(config=config, data_dir=data_dir)
  tfds.disable_progress_bar()
  faces.download_and_prepare()
  return faces


def source(data_config) -> Source:
  """The synthetic faces as a `Source`; `data_config` is the config's `data` block."""
  faces = builder(data_dir=data_config.data_dir, image_size=data_config.image_size,
                  num_train=data_config.num_train, num_validation=data_config.num_validation,
                  num_test=data_config.num_test, seed=data_config.generator_seed)

  def load(split, process_index, process_count):
    return tfds_shard(faces, split, process_index, process_count).map(
        lambda index, ex: {**ex, "box": whole_image_box(ex["image"]), "image_id": index})

  sizes = {split: faces.info.splits[split].num_examples for split in SPLITS}
  size = faces.builder_config.image_size
  return Source(name=f"synthetic_faces/{faces.builder_config.name}", spec=SPEC,
                split_sizes=sizes, channels=1, image_hw=(size, size), load=load)
