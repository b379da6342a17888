"""Keypoint metrics as (sum, count) pairs, so averages stay exact across batches, devices,
hosts and padding. All are masked by visibility and by the example mask.

Definitions (e = Euclidean error in pixels of a visible keypoint, d = the example's normaliser):
  rmse_input_px   sqrt of the mean squared coordinate error, in model-input pixels (Kaggle
                  Facial Keypoints' RMSE when the input is the image)
  error_image_px  mean e in the source image's own pixels (predictions mapped back through
                  the crop), what DeepLabCut reports as its test error
  rmse_image_px   rmse_input_px's definition, in the source image's pixels
  nme           mean over examples of (mean e over the example's visible keypoints) / d
  pck@t         fraction of visible keypoints with e <= t * d
  failure@t     fraction of examples whose NME exceeds t
  auc@t         area under the cumulative error distribution (fraction of examples with
                NME <= x) for x in [0, t], divided by t. Computed exactly: each example adds
                max(0, 1 - NME / t), its share of that integral (toolkits that sample x on a
                grid agree to the grid's resolution).
Per keypoint (`keypoint_sums`): nme (mean e / d where labelled), pck@0.1, error_image_px, and
the MMPose definitions (mmpose.evaluation.functional), whose overall value is the mean of the
per-keypoint values over the keypoints labelled at least once (`keypoint_means`):
  mmpose_pck@t       PCK with a strict e < t * d, d the dataset's normaliser (PCKh with head
                     sizes, PCK with torso or box sizes)
  mmpose_pck_bbox@t  PCKAccuracy(norm_item="bbox"): e_image < t * max(box w, h), in the source
                     image's pixels, box the instance's (whole frame without boxes)
  mmpose_auc@30px    AUC(norm_factor=30, num_thrs=20): the mean of that PCK with d = 30 image
                     pixels over the thresholds 0, 0.05, ..., 0.95
MMPose's EPE is `error_image_px` (pooled over labelled keypoints), its NME `nme` when d is the
same normaliser.

Keypoints without ground truth are left out of every average and examples without any out of
the per-example ones; an average over nothing is None, never NaN.

Image-pixel metrics need `to_image` [B, 3, 3], the matrices from model-input to source-image
pixels (the inverse of the pipeline's crop `matrix`).
"""

import jax.numpy as jnp
import numpy as np

PCK_THRESHOLDS = (0.05, 0.1)
FAILURE_THRESHOLDS = (0.08, 0.1)  # 300W / AFLW papers report 0.08, WFLW 0.1
MMPOSE_PCK_THRESHOLDS = (0.05, 0.1, 0.2)  # MMPose's default 0.05; hands and animals use 0.2
MMPOSE_AUC_NORM_PX, MMPOSE_AUC_STEPS = 30.0, 20  # MMPose's AUC metric defaults


def to_image_pixels(points, to_image):
  """Points [B, K, 2] through matrices [B, 3, 3] (model input -> source image pixels)."""
  return jnp.einsum("bkj,bij->bki", points, to_image[:, :2, :2]) + to_image[:, None, :2, 2]


def _image_squared_error(pred_px, true_px, to_image):
  return jnp.sum((to_image_pixels(pred_px, to_image) - to_image_pixels(true_px, to_image)) ** 2,
                 axis=-1)


def metric_sums(pred_px, true_px, visible, norm, mask=None, to_image=None) -> dict:
  """{name: [sum, count]} for one batch; pred_px, true_px [B, K, 2], visible [B, K], norm [B]."""
  if mask is None:
    mask = jnp.ones(norm.shape, jnp.float32)
  v = visible * mask[:, None]
  sq = jnp.sum((pred_px - true_px) ** 2, axis=-1)
  err = jnp.sqrt(sq)
  num_visible = v.sum(axis=1)
  has_visible = (num_visible > 0).astype(jnp.float32)
  nme_per_example = (err * v).sum(axis=1) / (jnp.maximum(num_visible, 1)
                                             * jnp.where(has_visible > 0, norm, 1.0))
  sums = {
      "mse_input_px": (jnp.sum(sq * v), 2 * jnp.sum(v)),  # per coordinate: two per keypoint
      "nme": (jnp.sum(nme_per_example * has_visible), jnp.sum(has_visible)),
  }
  if to_image is not None:
    image_sq = _image_squared_error(pred_px, true_px, to_image)
    sums["error_image_px"] = (jnp.sum(jnp.sqrt(image_sq) * v), jnp.sum(v))
    sums["mse_image_px"] = (jnp.sum(image_sq * v), 2 * jnp.sum(v))
  for t in FAILURE_THRESHOLDS:
    sums[f"failure@{t}"] = (jnp.sum((nme_per_example > t) * has_visible), jnp.sum(has_visible))
    sums[f"auc@{t}"] = (jnp.sum(jnp.maximum(0.0, 1 - nme_per_example / t) * has_visible),
                        jnp.sum(has_visible))
  for t in PCK_THRESHOLDS:
    sums[f"pck@{t}"] = (jnp.sum((err <= t * norm[:, None]) * v), jnp.sum(v))
  return {name: jnp.stack(pair) for name, pair in sums.items()}


def keypoint_sums(pred_px, true_px, visible, norm, mask, to_image=None, box=None) -> dict:
  """{name: [2, K] (sum, count) per keypoint} for one batch; `box` [B, 4] (x, y, w, h in source
  pixels) with `to_image` adds the MMPose metrics measured in source pixels."""
  v = visible * mask[:, None]
  error = jnp.sqrt(jnp.sum((pred_px - true_px) ** 2, axis=-1))
  relative = jnp.where(v > 0, error / jnp.where(v > 0, norm[:, None], 1.0), 0.0)  # padding: 0
  count = v.sum(0)
  per_keypoint = lambda values: jnp.stack([(values * v).sum(0), count])
  sums = {"nme": per_keypoint(relative), "pck@0.1": per_keypoint(relative <= 0.1)}
  for t in MMPOSE_PCK_THRESHOLDS:
    sums[f"mmpose_pck@{t}"] = per_keypoint(relative < t)
  if to_image is not None:
    image_error = jnp.sqrt(_image_squared_error(pred_px, true_px, to_image))
    sums["error_image_px"] = per_keypoint(image_error)
    thresholds = jnp.arange(MMPOSE_AUC_STEPS) / MMPOSE_AUC_STEPS
    sums[f"mmpose_auc@{MMPOSE_AUC_NORM_PX:g}px"] = per_keypoint(
        (image_error[..., None] / MMPOSE_AUC_NORM_PX < thresholds).mean(-1))
    if box is not None:
      box_size = jnp.max(box[:, 2:], axis=-1)[:, None]
      for t in MMPOSE_PCK_THRESHOLDS:
        sums[f"mmpose_pck_bbox@{t}"] = per_keypoint(image_error < t * box_size)
  return sums


def _ratio(total, count):
  return float(total) / float(count) if count > 0 else None


def summarize_keypoints(sums: dict, names) -> dict:
  """{keypoint name: {metric: value or None}} from accumulated `keypoint_sums`."""
  out = {name: {} for name in names}
  for metric, (total, count) in sums.items():
    for name, t, c in zip(names, np.asarray(total), np.asarray(count)):
      out[name][metric] = _ratio(t, c)
  return out


def keypoint_means(sums: dict, prefix: str = "") -> dict:
  """The MMPose metrics' overall values: per-keypoint averages, then their mean over the
  keypoints labelled at least once (None when there are none)."""
  out = {}
  for name, (total, count) in sums.items():
    if name.startswith("mmpose_"):
      total, count = np.asarray(total), np.asarray(count)
      labelled = count > 0
      out[prefix + name] = (float(np.mean(total[labelled] / count[labelled]))
                            if labelled.any() else None)
  return out


def summarize(sums: dict, prefix: str = "") -> dict:
  """Averages from accumulated sums (None over nothing); each `mse_*` is reported as its root,
  `rmse_*`."""
  out = {}
  for name, (total, count) in sums.items():
    value = _ratio(total, count)
    if name.startswith("mse_"):
      name, value = "r" + name, None if value is None else float(np.sqrt(value))
    out[prefix + name] = value
  return out
