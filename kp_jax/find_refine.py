"""Find, then refine, as one pure JAX function: frame -> centres -> crops -> keypoints.

A centre model (heads.Centre) sees the whole frame at the scale it was trained at (its input
as large as the frame needs, padded to a multiple of 32: the model is fully convolutional, so
a frame twice the size of the training frames, or two arenas side by side, shows each animal
at the size it learnt) and finds up to `max_instances` instance centres; a keypoint model sees
a fixed-size crop about each centre at (near) the frame's own resolution. Both warps are gathers written in JAX, so the whole
composition compiles (and exports) as one program, with static shapes: every frame yields
`max_instances` instances, each with its score. No TensorFlow here.

Geometry as everywhere in kp-jax: 3x3 matrices take source pixels to model-input pixels, pixel
centres at integers.
"""

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from kp_jax import steps
from kp_jax.data import pixels


def centred_matrix(centre, scale, output_hw):
  """[..., 3, 3] matrices scaling by `scale` about `centre` [..., 2] (source pixels) onto the
  middle of an `output_hw` input: `transforms.box_matrix` of a box centred there."""
  centre = jnp.asarray(centre, jnp.float32)
  scale = jnp.broadcast_to(jnp.asarray(scale, jnp.float32), centre.shape[:-1])
  out_centre = (jnp.array([output_hw[1], output_hw[0]], jnp.float32) - 1) / 2
  shift = out_centre - scale[..., None] * centre
  zero, one = jnp.zeros_like(scale), jnp.ones_like(scale)
  return jnp.stack([jnp.stack([scale, zero, shift[..., 0]], -1),
                    jnp.stack([zero, scale, shift[..., 1]], -1),
                    jnp.stack([zero, zero, one], -1)], -2)


def fit_scale(image_hw, output_hw) -> float:
  """The scale fitting a whole (h, w) image into `output_hw` (aspect kept, no padding)."""
  return min(output_hw[0] / image_hw[0], output_hw[1] / image_hw[1])


CENTRE_MULTIPLE = 32  # the centre model's input sides: a multiple of every backbone's stride


def centre_input_hw(frame_hw, scale: float) -> tuple[int, int]:
  """The centre model's input for a frame of `frame_hw` seen at `scale` (input pixels per
  source pixel): the scaled frame's size rounded up to CENTRE_MULTIPLE."""
  return tuple(int(CENTRE_MULTIPLE * max(1, math.ceil(n * scale / CENTRE_MULTIPLE)))
               for n in frame_hw)


def apply_matrix(matrix, points):
  """Points [..., N, 2] through matrices [..., 3, 3]."""
  return points @ jnp.swapaxes(matrix[..., :2, :2], -1, -2) + matrix[..., None, :2, 2]


def affine_inverse(matrix):
  """The inverse of affine matrices [..., 3, 3] (last row 0, 0, 1) in closed form: what
  `jnp.linalg.inv` gives, without the LU solve that jax2onnx cannot convert."""
  a, b, c = matrix[..., 0, 0], matrix[..., 0, 1], matrix[..., 0, 2]
  d, e, f = matrix[..., 1, 0], matrix[..., 1, 1], matrix[..., 1, 2]
  det = a * e - b * d
  zero, one = jnp.zeros_like(a), jnp.ones_like(a)
  return jnp.stack([jnp.stack([e / det, -b / det, (b * f - c * e) / det], -1),
                    jnp.stack([-d / det, a / det, (c * d - a * f) / det], -1),
                    jnp.stack([zero, zero, one], -1)], -2)


def warp(image, matrix, output_hw):
  """The [H, W, C] image seen through `matrix` (source -> output pixels): bilinear, zero
  outside, as the pipeline's warp (transforms.resample). A gather, so it runs and exports on
  any backend."""
  h, w = image.shape[:2]
  ys, xs = jnp.meshgrid(jnp.arange(output_hw[0], dtype=jnp.float32),
                        jnp.arange(output_hw[1], dtype=jnp.float32), indexing="ij")
  inverse = affine_inverse(matrix)
  x = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
  y = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
  x0, y0 = jnp.floor(x), jnp.floor(y)
  out = 0.0
  for dx in (0, 1):
    for dy in (0, 1):
      xi, yi = x0 + dx, y0 + dy
      weight = (1 - jnp.abs(x - xi)) * (1 - jnp.abs(y - yi))
      inside = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1)
      pixel = image[jnp.clip(yi, 0, h - 1).astype(jnp.int32),
                    jnp.clip(xi, 0, w - 1).astype(jnp.int32)]
      out = out + jnp.where(inside, weight, 0.0)[..., None] * pixel
  return out


@dataclasses.dataclass(frozen=True)
class Stages:
  """What the composition needs of the two trained models (no parameters: those are passed to
  `predict_frames`, so one compiled program serves any checkpoint of the same shapes)."""
  centre_apply: Callable
  centre_head: Any  # heads.Centre
  centre_hw: tuple[int, int]
  keypoint_apply: Callable
  keypoint_head: Any
  crop_hw: tuple[int, int]  # the keypoint model's input
  crop_scale: float  # keypoint-model input pixels per source pixel
  image_mean: Any  # float32, one number or one per channel (pixels.normalisation)
  image_std: Any
  max_instances: int = 1
  flip_permutation: Any = None  # test-time flip of the keypoint model
  # The centre model's input pixels per source pixel in training (two_stage.json); None (runs
  # from before it was recorded): every frame fitted into `centre_hw`, as in training.
  centre_scale: float | None = None


def _normalize(stages: Stages, images):
  return pixels.model_input(images, stages.image_mean, stages.image_std)


def find(stages: Stages, centre_variables, frames) -> dict:
  """Stage 1 on frames [B, H, W, C] (uint8 pixels, or floats in [0, 1]): the `max_instances`
  best instance `centres` [B, M, 2], `sizes` [B, M, 2], their `boxes` [B, M, 4] (x0, y0, x1,
  y1: what tracks follow; all in the frames' pixels) and `scores` [B, M]."""
  frames = pixels.unit_floats(frames)
  h, w = frames.shape[1:3]
  if stages.centre_scale is None:
    scale, input_hw = fit_scale((h, w), stages.centre_hw), stages.centre_hw
  else:
    scale, input_hw = stages.centre_scale, centre_input_hw((h, w), stages.centre_scale)
  frame_centre = jnp.array([(w - 1) / 2, (h - 1) / 2], jnp.float32)
  to_centre_input = centred_matrix(frame_centre, scale, input_hw)
  small = jax.vmap(warp, (0, None, None))(frames, to_centre_input, input_hw)
  outputs = stages.centre_apply(centre_variables, _normalize(stages, small))
  centres, sizes, scores = stages.centre_head.detect(outputs, stages.max_instances)
  centres, sizes = apply_matrix(affine_inverse(to_centre_input), centres), sizes / scale
  return {"centres": centres, "sizes": sizes, "scores": scores,
          "boxes": jnp.concatenate([centres - sizes / 2, centres + sizes / 2], -1)}


def refine(stages: Stages, keypoint_variables, frames, centres) -> dict:
  """Stage 2 on frames [B, H, W, C] (as `find`'s) about `centres` [B, N, 2] (any N: stage
  1's, the labels' or a detector's): `keypoints` [B, N, K, 2] in the frames' pixels,
  `likelihood` [B, N, K] and the crops' `matrices` [B, N, 3, 3]. All B * N crops run as one
  batch."""
  frames = pixels.unit_floats(frames)
  b, n = centres.shape[:2]
  to_crop = centred_matrix(centres, stages.crop_scale, stages.crop_hw)  # [B, N, 3, 3]
  crops = jax.vmap(warp, (None, 0, None))  # one frame, its N crops
  crops = jax.vmap(crops, (0, 0, None))(frames, to_crop, stages.crop_hw)
  crops = crops.reshape(b * n, *stages.crop_hw, frames.shape[-1])
  points, likelihood = steps.predict(stages.keypoint_apply, keypoint_variables,
                                     _normalize(stages, crops), head=stages.keypoint_head,
                                     flip_permutation=stages.flip_permutation)
  points = points.reshape(b, n, *points.shape[1:])
  return {"keypoints": apply_matrix(affine_inverse(to_crop), points),
          "likelihood": likelihood.reshape(b, n, -1), "matrices": to_crop}


def predict_frames(stages: Stages, centre_variables, keypoint_variables, frames) -> dict:
  """Every instance of frames [B, H, W, C] (as `find`'s), in the frames' pixels: `find`'s
  `centres`, `sizes`, `boxes`, `scores` [B, M] and `refine`'s `keypoints` [B, M, K, 2], `likelihood`
  [B, M, K], `matrices` [B, M, 3, 3], M = max_instances."""
  found = find(stages, centre_variables, frames)
  return {**found, **refine(stages, keypoint_variables, frames, found["centres"])}


def crop_scale(crop_size, input_hw) -> float:
  """The keypoint model's input pixels per source pixel, for crops of `crop_size` (h, w)
  fitted into `input_hw` as `transforms.box_matrix` fits them."""
  return float(np.min(np.asarray(input_hw, np.float64) / np.asarray(crop_size, np.float64)))
