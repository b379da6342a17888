"""Predicts keypoints on image files with the best checkpoint of a training run.

  python -m kp_jax.predict --workdir workdirs/default face1.png face2.jpg

Writes `keypoints.json` ({image path: {keypoint name: [x, y]}}, in the original image's
pixels) and an overlay `<name>_keypoints.png` per image into --output_dir (default
WORKDIR/predictions).
"""

import dataclasses
import functools
import json
import os
from typing import Any

import jax
import matplotlib.pyplot as plt
import ml_collections
import numpy as np
import scipy.ndimage
from absl import app, flags
from PIL import Image

from kp_jax import checkpoint, steps, visualize
from kp_jax.data import transforms
from kp_jax.models import create_model


def load_image(path: str, channels: int) -> np.ndarray:
  """An image file as floats in [0, 1], [H, W, channels]."""
  try:
    with Image.open(path) as image:
      image = image.convert("L" if channels == 1 else "RGB")
  except (OSError, ValueError) as e:
    raise ValueError(f"Cannot read image {path}: {e}") from None
  return np.asarray(image, np.float32).reshape(image.height, image.width, channels) / 255.0


def crop(image: np.ndarray, matrix: np.ndarray, image_shape) -> np.ndarray:
  """The model input seen through `matrix` (source -> input pixels), bilinear, zero outside:
  the same crop the pipeline's `warp` makes."""
  inverse = np.linalg.inv(matrix)
  height, width, channels = image_shape
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
  sx = inverse[0, 0] * xx + inverse[0, 1] * yy + inverse[0, 2]
  sy = inverse[1, 0] * xx + inverse[1, 1] * yy + inverse[1, 2]
  out = np.stack([scipy.ndimage.map_coordinates(image[..., c], [sy, sx], order=1,
                                                  mode="grid-constant", cval=0.0)
                  for c in range(channels)], -1)
  return out.astype(np.float32)


def to_source_pixels(points, matrix):
  """Maps points [..., K, 2] from model input pixels back through `matrix` [..., 3, 3] (source
  -> input) to the source image's pixels."""
  inverse = np.linalg.inv(np.asarray(matrix, np.float64))
  points = np.asarray(points, np.float64)
  return points @ np.swapaxes(inverse[..., :2, :2], -1, -2) + inverse[..., None, :2, 2]


@dataclasses.dataclass(frozen=True)
class Run:
  """A training run's config and one of its checkpoints, restored on the host."""
  config: ml_collections.ConfigDict
  step: int
  state: steps.TrainState
  model: Any
  head: Any
  keypoint_names: tuple[str, ...]
  image_shape: tuple[int, int, int]
  flip_permutation: np.ndarray | None  # for test-time flip, when the config asks for it


def load_run(workdir: str, step: int | None = None) -> Run:
  """`workdir`'s config and its checkpoint at `step` (default: the best by validation NME)."""
  config_path = os.path.join(workdir, "config.json")
  if not os.path.exists(config_path):
    raise FileNotFoundError(f"{config_path} not found: is {workdir} a training workdir?")
  with open(config_path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  manager = checkpoint.create_manager(os.path.join(workdir, "checkpoints"), 1, 1)
  step = manager.best_step() if step is None else step
  if step is None or step not in manager.all_steps():
    raise FileNotFoundError(f"No checkpoint {'' if step is None else step} in "
                            f"{workdir}/checkpoints (it has {list(manager.all_steps())}).")
  meta = checkpoint.restore_meta(manager, step)
  names, image_shape = tuple(meta["keypoint_names"]), tuple(meta["image_shape"])
  model, head = create_model(config.model, len(names), image_shape[:2])
  template = steps.create_train_state(config, model, image_shape, jax.random.key(0))
  restored, _ = checkpoint.restore(manager, step, steps.checkpointable(template))
  manager.close()
  flip = meta.get("flip_permutation") if config.flip_test else None
  return Run(config, step, template.replace(**restored), model, head, names, image_shape,
             None if flip is None else np.array(flip))


class Predictor:
  """The best checkpoint of `workdir`, ready to run on images."""

  def __init__(self, workdir: str):
    run = load_run(workdir)
    self.config, self.step = run.config, run.step
    self.names, self.image_shape = run.keypoint_names, run.image_shape
    self._predict = jax.jit(functools.partial(
        steps.predict, run.model.apply, head=run.head, flip_permutation=run.flip_permutation))
    self._variables = steps.eval_variables(run.state)

  def on_inputs(self, inputs):
    """Keypoints [B, K, 2] in pixels of model inputs [B, H, W, C] (normalised images)."""
    return np.asarray(self._predict(self._variables, inputs))

  def __call__(self, path: str, box=None):
    """(keypoints [K, 2] in the image's pixels, the image): the model sees `box` (x, y, w, h;
    default the whole image) cropped as in training."""
    image = load_image(path, self.image_shape[-1])
    data = self.config.data
    if box is None:  # the whole image, fitted without padding unless the model saw crops
      box = (0.0, 0.0, image.shape[1], image.shape[0])
    padding = data.box_padding if data.input_size else 1.0
    matrix = transforms.box_matrix(np.asarray(box, np.float32), self.image_shape[:2],
                                   padding).numpy().astype(np.float64)
    inputs = (crop(image, matrix, self.image_shape) - data.image_mean) / data.image_std
    points = self.on_inputs(inputs[None])[0]
    return to_source_pixels(points, matrix), image


def save_overlay(path: str, image, points):
  fig, ax = plt.subplots(figsize=(4, 4 * image.shape[0] / image.shape[1]))
  visualize.draw(ax, image if image.ndim == 3 else image[..., None], points)
  fig.tight_layout(pad=0)
  fig.savefig(path, dpi=100)
  plt.close(fig)


def predict_files(workdir: str, paths, output_dir: str | None = None, box=None) -> dict:
  predictor = Predictor(workdir)
  output_dir = output_dir or os.path.join(workdir, "predictions")
  os.makedirs(output_dir, exist_ok=True)
  results = {}
  for path in paths:
    points, image = predictor(path, box)
    results[path] = {name: [float(x), float(y)] for name, (x, y) in zip(predictor.names, points)}
    stem = os.path.splitext(os.path.basename(path))[0]
    save_overlay(os.path.join(output_dir, f"{stem}_keypoints.png"), image, points)
  with open(os.path.join(output_dir, "keypoints.json"), "w") as f:
    json.dump(results, f, indent=2)
  return results


def main(argv):
  if len(argv) < 2:
    raise app.UsageError("Give one or more image files.")
  args = flags.FLAGS
  box = [float(v) for v in args.box] if args.box else None
  results = predict_files(args.workdir, argv[1:], args.output_dir, box)
  print(json.dumps(results, indent=2))


if __name__ == "__main__":  # flags only for the command, so the module imports anywhere
  flags.DEFINE_string("workdir", None, "A training run's workdir.", required=True)
  flags.DEFINE_string("output_dir", None, "Default: WORKDIR/predictions.")
  flags.DEFINE_list("box", None, "x,y,w,h of the object in every image (COCO convention); "
                    "default: the whole image.")
  app.run(main)
