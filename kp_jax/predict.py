"""Predicts keypoints on image files with the best checkpoint of a training run.

  python -m kp_jax.predict --workdir workdirs/default face1.png face2.jpg

Writes `keypoints.json` ({image path: {keypoint name: [x, y]}}, in the original image's
pixels) and an overlay `<name>_keypoints.png` per image into --output_dir (default
WORKDIR/predictions).
"""

import functools
import json
import os

import jax
import matplotlib.pyplot as plt
import ml_collections
import numpy as np
from absl import app, flags
from PIL import Image

from kp_jax import checkpoint, train, visualize
from kp_jax.models import create_model


def load_image(path: str, image_shape, data_config):
  """(model input [H, W, C] float32, original image as floats in [0, 1])."""
  try:
    image = Image.open(path)
    image = image.convert("L" if image_shape[-1] == 1 else "RGB")
  except (OSError, ValueError) as e:
    raise ValueError(f"Cannot read image {path}: {e}") from None
  original = np.asarray(image, np.float32) / 255.0
  resized = np.asarray(image.resize((image_shape[1], image_shape[0]), Image.BILINEAR),
                       np.float32) / 255.0
  resized = resized.reshape(image_shape)
  return (resized - data_config.image_mean) / data_config.image_std, original


def rescale(points, from_hw, to_hw):
  """Maps pixel coordinates between two sizes of the same image (pixel centres at integers)."""
  ratio = np.array([to_hw[1] / from_hw[1], to_hw[0] / from_hw[0]])
  return (points + 0.5) * ratio - 0.5


class Predictor:
  """The best checkpoint of `workdir`, ready to run on images."""

  def __init__(self, workdir: str):
    config_path = os.path.join(workdir, "config.json")
    if not os.path.exists(config_path):
      raise FileNotFoundError(f"{config_path} not found: is {workdir} a training workdir?")
    with open(config_path) as f:
      self.config = ml_collections.ConfigDict(json.load(f))
    manager = checkpoint.create_manager(os.path.join(workdir, "checkpoints"), 1, 1)
    step = manager.best_step()
    if step is None:
      raise FileNotFoundError(f"No checkpoint in {workdir}/checkpoints.")
    meta = checkpoint.restore_meta(manager, step)
    self.names = tuple(meta["keypoint_names"])
    self.image_shape = tuple(meta["image_shape"])
    model, head = create_model(self.config.model, len(self.names), self.image_shape[:2])
    template = train.create_train_state(self.config, model, self.image_shape, jax.random.key(0))
    restored, _ = checkpoint.restore(manager, step, train.checkpointable(template))
    manager.close()
    self.step = step
    spec_flip = meta.get("flip_permutation") if self.config.flip_test else None
    self._predict = jax.jit(functools.partial(
        train.predict, model.apply, head=head,
        flip_permutation=None if spec_flip is None else np.array(spec_flip)))
    self._variables = train.eval_variables(template.replace(**restored))

  def on_inputs(self, inputs):
    """Keypoints [B, K, 2] in pixels of model inputs [B, H, W, C] (normalised images)."""
    return np.asarray(self._predict(self._variables, inputs))

  def __call__(self, path: str):
    """(keypoints [K, 2] in the original image's pixels, the original image)."""
    inputs, original = load_image(path, self.image_shape, self.config.data)
    points = self.on_inputs(inputs[None])[0]
    return rescale(points, self.image_shape[:2], original.shape[:2]), original


def save_overlay(path: str, image, points):
  fig, ax = plt.subplots(figsize=(4, 4 * image.shape[0] / image.shape[1]))
  visualize.draw(ax, image if image.ndim == 3 else image[..., None], points)
  fig.tight_layout(pad=0)
  fig.savefig(path, dpi=100)
  plt.close(fig)


def predict_files(workdir: str, paths, output_dir: str | None = None) -> dict:
  predictor = Predictor(workdir)
  output_dir = output_dir or os.path.join(workdir, "predictions")
  os.makedirs(output_dir, exist_ok=True)
  results = {}
  for path in paths:
    points, image = predictor(path)
    results[path] = {name: [float(x), float(y)] for name, (x, y) in zip(predictor.names, points)}
    stem = os.path.splitext(os.path.basename(path))[0]
    save_overlay(os.path.join(output_dir, f"{stem}_keypoints.png"), image, points)
  with open(os.path.join(output_dir, "keypoints.json"), "w") as f:
    json.dump(results, f, indent=2)
  return results


_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's workdir.", required=True)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Default: WORKDIR/predictions.")


def main(argv):
  if len(argv) < 2:
    raise app.UsageError("Give one or more image files.")
  results = predict_files(_WORKDIR.value, argv[1:], _OUTPUT_DIR.value)
  print(json.dumps(results, indent=2))


if __name__ == "__main__":
  app.run(main)
