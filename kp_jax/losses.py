"""Keypoint losses: pure functions of predictions, targets and visibility."""

import jax.numpy as jnp


def masked_l2(pred, target, visible):
  """Mean over all keypoint slots of visible * squared distance; [B, K, 2], [B, K] -> [].

  Invisible keypoints contribute zero to a fixed denominator (B * K), so the loss of a batch
  split across devices is exactly the mean of the devices' losses.
  """
  return jnp.mean(jnp.sum((pred - target) ** 2, axis=-1) * visible)


LOSSES = {
    "l2": masked_l2,
}
