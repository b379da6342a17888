"""Keypoint losses: pure functions, masked by visibility.

Coordinate losses take the prediction error in input-image pixels, `error` [B, K, 2], and
`visible` [B, K]. Invisible keypoints contribute zero to a fixed denominator (B * K), so the
loss of a batch split across devices is exactly the mean of the devices' losses.
"""

import jax.numpy as jnp
import optax


def _masked_mean(per_keypoint, visible):
  return jnp.mean(per_keypoint * visible)


def l2(error, visible):
  return _masked_mean(jnp.sum(error**2, axis=-1), visible)


def l1(error, visible):
  return _masked_mean(jnp.sum(jnp.abs(error), axis=-1), visible)


def smooth_l1(error, visible, beta: float = 1.0):
  """Quadratic below `beta` pixels, linear above (Huber / Fast R-CNN)."""
  return _masked_mean(jnp.sum(optax.huber_loss(error, delta=beta) / beta, axis=-1), visible)


def wing(error, visible, width: float = 10.0, curvature: float = 2.0):
  """Wing loss (Feng et al. 2018): width * log(1 + |e| / curvature) below `width` pixels,
  |e| - C above, with C making it continuous."""
  a = jnp.abs(error)
  c = width - width * jnp.log1p(width / curvature)
  per_axis = jnp.where(a < width, width * jnp.log1p(a / curvature), a - c)
  return _masked_mean(jnp.sum(per_axis, axis=-1), visible)


COORDINATE_LOSSES = {"l2": l2, "l1": l1, "smooth_l1": smooth_l1, "wing": wing}


def heatmap_mse(pred_maps, target_maps, weight):
  """Mean squared error over maps [B, h, w, K], each pixel weighted by `weight` (broadcast to
  the maps: a keypoint's visibility [B, 1, 1, K], or a mask of pixels)."""
  return jnp.mean((pred_maps - target_maps) ** 2 * weight)


def heatmap_bce(logit_maps, target_maps, weight):
  """Binary cross-entropy of sigmoid(logit_maps) against targets in [0, 1], weighted and
  averaged as heatmap_mse (DeepLabCut 3's WeightedBCECriterion)."""
  return jnp.mean(optax.sigmoid_binary_cross_entropy(logit_maps, target_maps) * weight)


HEATMAP_LOSSES = {"mse": heatmap_mse, "bce": heatmap_bce}
