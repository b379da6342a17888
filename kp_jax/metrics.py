"""Keypoint metrics as (sum, count) pairs, so averages stay exact across batches, devices,
hosts and padding. All are masked by visibility and by the example mask.

Definitions (e = Euclidean error in pixels of a visible keypoint, d = the example's normaliser):
  rmse_px       sqrt of the mean squared coordinate error (Kaggle Facial Keypoints' RMSE)
  nme           mean over examples of (mean e over the example's visible keypoints) / d
  pck@t         fraction of visible keypoints with e <= t * d
  failure@0.1   fraction of examples whose NME exceeds 0.1
"""

import jax.numpy as jnp
import numpy as np

PCK_THRESHOLDS = (0.05, 0.1)
FAILURE_THRESHOLD = 0.1


def metric_sums(pred_px, true_px, visible, norm, mask=None) -> dict:
  """{name: [sum, count]} for one batch; pred_px, true_px [B, K, 2], visible [B, K], norm [B]."""
  if mask is None:
    mask = jnp.ones(norm.shape, jnp.float32)
  v = visible * mask[:, None]
  sq = jnp.sum((pred_px - true_px) ** 2, axis=-1)
  err = jnp.sqrt(sq)
  num_visible = v.sum(axis=1)
  has_visible = (num_visible > 0).astype(jnp.float32)
  nme_per_example = (err * v).sum(axis=1) / (jnp.maximum(num_visible, 1) * norm)
  sums = {
      "mse_px": (jnp.sum(sq * v), 2 * jnp.sum(v)),  # per coordinate: two per keypoint
      "nme": (jnp.sum(nme_per_example * has_visible), jnp.sum(has_visible)),
      f"failure@{FAILURE_THRESHOLD}": (
          jnp.sum((nme_per_example > FAILURE_THRESHOLD) * has_visible), jnp.sum(has_visible)),
  }
  for t in PCK_THRESHOLDS:
    sums[f"pck@{t}"] = (jnp.sum((err <= t * norm[:, None]) * v), jnp.sum(v))
  return {name: jnp.stack(pair) for name, pair in sums.items()}


def summarize(sums: dict, prefix: str = "") -> dict:
  """Averages from accumulated sums; `mse_px` is reported as `rmse_px`."""
  out = {}
  for name, (total, count) in sums.items():
    value = float(total) / float(count) if count > 0 else float("nan")
    if name == "mse_px":
      name, value = "rmse_px", np.sqrt(value)
    out[prefix + name] = value
  return out
