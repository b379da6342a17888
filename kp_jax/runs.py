"""A finished training run on disk: its config, its checkpoints restored on the host, and the
predictor of its best one. One owner for reading workdirs: predict, evaluate, export and the
two stages' predictor (kp_jax/two_stage.py) build on it.
"""

import dataclasses
import json
from typing import Any

import ml_collections
import numpy as np
import tensorflow as tf
from etils import epath

from kp_jax import checkpoint, steps, visualize
from kp_jax.data import pixels, transforms
from kp_jax.data.keypoints import DEFAULT_OKS_SIGMA
from kp_jax.exported import to_source_pixels
from kp_jax.models import create_model, loaded_model_config


@dataclasses.dataclass(frozen=True)
class Run:
  """A training run's config and one of its checkpoints, restored on the host."""
  config: ml_collections.ConfigDict
  step: int
  state: steps.TrainState
  model: Any
  head: Any
  keypoint_names: tuple[str, ...]
  skeleton: tuple[tuple[int, int], ...]  # index pairs, for drawing
  image_shape: tuple[int, int, int]
  flip_permutation: np.ndarray | None  # for test-time flip, when the config asks for it
  mean_shape: np.ndarray | None  # the baseline (checkpoint.RunMeta); None in older runs
  oks_sigmas: np.ndarray  # per keypoint, for comparing poses


def load_config(workdir: str) -> ml_collections.ConfigDict:
  config_path = epath.Path(workdir) / "config.json"
  if not config_path.exists():
    raise FileNotFoundError(f"{config_path} not found: is {workdir} a training workdir?")
  return ml_collections.ConfigDict(json.loads(config_path.read_text()))


def load_run(workdir: str, step: int | None = None, portable: bool = False) -> Run:
  """`workdir`'s config and its checkpoint at `step` (default: the best by validation NME),
  its model's layers those that run here, or with `portable` those that lower alike for every
  platform (`models.loaded_model_config`)."""
  config = load_config(workdir)
  config.model = loaded_model_config(config.model, portable)
  manager = checkpoint.create_manager(epath.Path(workdir) / "checkpoints", 1, 1)
  if step is None:  # the best by validation NME; a run never evaluated: the latest
    step = manager.best_step() or manager.latest_step()
  if step is None or step not in manager.all_steps():
    raise FileNotFoundError(f"No checkpoint {'' if step is None else step} in "
                            f"{workdir}/checkpoints (it has {list(manager.all_steps())}).")
  meta = checkpoint.restore_meta(manager, step)
  model, head = create_model(config.model, len(meta.keypoint_names), meta.image_shape[:2])
  template = steps.state_shapes(config, model, meta.image_shape)
  restored, _ = checkpoint.restore(manager, step, steps.checkpointable(template))
  manager.close()
  flip = np.array(meta.flip_permutation) if config.flip_test else None
  return Run(config, step, template.replace(**restored), model, head, meta.keypoint_names,
             meta.skeleton, meta.image_shape, flip,
             None if meta.mean_shape is None else np.array(meta.mean_shape, np.float32),
             np.array(meta.oks_sigmas or [DEFAULT_OKS_SIGMA] * len(meta.keypoint_names)))


def crop_geometry(data_config) -> tuple[float, bool]:
  """(box padding, UDP) of the crops a run's model saw: a model trained on crops of boxes sees
  them padded (and with `data.udp`, UDP's affine); one trained on whole images, neither."""
  if not data_config.input_size:
    return 1.0, False
  return float(data_config.box_padding), bool(data_config.get("udp", False))


class Drawing:
  """What both predictors share: their keypoints' description, and drawing on a frame."""

  def _describe(self, run: Run, likelihood_cutoff: float | None):
    self.names, self.skeleton, self.image_shape = run.keypoint_names, run.skeleton, run.image_shape
    self.upright = run.config.data.get("upright", True)  # how it reads pictures
    self.run_cutoff = run.config.get("likelihood_cutoff", 0.0)  # the run's own
    self.cutoff = self.run_cutoff if likelihood_cutoff is None else likelihood_cutoff

  def overlay(self, image_uint8, points, likelihood) -> np.ndarray:
    return visualize.draw_frame(image_uint8, points, likelihood, self.names, self.skeleton,
                                self.cutoff)


class Predictor(Drawing):
  """The best checkpoint of `workdir`, ready to run on images."""

  def __init__(self, workdir: str, likelihood_cutoff: float | None = None):
    run = load_run(workdir)
    self.config, self.step = run.config, run.step
    self._describe(run, likelihood_cutoff)
    self._predict = steps.compiled_predict(run.model.apply, head=run.head,
                                           flip_permutation=run.flip_permutation)
    self._variables = steps.eval_variables(run.state)

  def on_inputs(self, inputs):
    """(keypoints [B, K, 2] in pixels, likelihoods [B, K]) of model inputs [B, H, W, C]
    (normalised images)."""
    points, likelihood = self._predict(self._variables, inputs)
    return np.asarray(points), np.asarray(likelihood)

  def crop_matrix(self, image_hw, box=None) -> np.ndarray:
    """The source -> input matrix for an image of `image_hw`: `box` (x, y, w, h; default the
    whole image) cropped as in training."""
    if box is None:  # the whole image, fitted without padding unless the model saw crops
      box = (0.0, 0.0, image_hw[1], image_hw[0])
    padding, udp = crop_geometry(self.config.data)
    return transforms.box_matrix(np.asarray(box, np.float32), self.image_shape[:2], padding,
                                 udp).numpy().astype(np.float64)

  def on_images(self, images, matrix) -> tuple[np.ndarray, np.ndarray]:
    """(keypoints [B, K, 2] in the images' pixels, likelihoods [B, K]) of images [B, h, w, C]
    (uint8 pixels, or floats in [0, 1]), all cropped by `matrix`."""
    matrix32 = tf.constant(matrix, tf.float32)
    mean, std = pixels.normalisation(self.config.data, self.image_shape[2])
    # The training pipeline's own warp (of uint8 pixels, rounded, as the pipeline's), so
    # predictions see inputs made as in training.
    inputs = np.stack([pixels.model_input(transforms.resample(
        tf.constant(image), matrix32, self.image_shape[:2]).numpy(), mean, std)
        for image in images])
    points, likelihood = self.on_inputs(inputs)
    return to_source_pixels(points, matrix), likelihood
