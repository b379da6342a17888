"""Evaluation: a split's metrics (used by the training loop and the `evaluate` command), the
field's metrics on top (COCO AP/AR, likelihood cutoffs), and a run's evaluation written out.

The metrics are defined in kp_jax/metrics.py; what `evaluate_run` writes is listed in
kp_jax/evaluate.py, the command.
"""

import json
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from etils import epath

from kp_jax import coco_eval, metrics, poses, steps
from kp_jax.data import coco, pipeline, pixels
from kp_jax.exported import to_source_pixels
from kp_jax.runs import load_run


def evaluate_split(parallel: steps.Parallel, state, config, source, split: str, mean_shape,
                   on_predictions: Callable | None = None) -> tuple[dict, dict]:
  """(model and baseline metrics, per-keypoint metrics of both) over a whole split; every
  example counted exactly once. `on_predictions(pred [B, K, 2], likelihood [B, K], batch)`,
  single-process only, sees each batch's predictions (in model input pixels) with the batch,
  all [B, ...]."""
  total = None
  for batch in pipeline.eval_iterator(config, source, split,
                                      local_devices=jax.local_device_count(),
                                      process_index=jax.process_index(),
                                      process_count=jax.process_count()):
    sums, (pred, likelihood) = parallel.eval_step(
        state, parallel.put_batch(pipeline.device_batch(batch)), mean_shape)
    total = sums if total is None else jax.tree.map(jnp.add, total, sums)
    if on_predictions is not None:  # a host-device sync point
      on_predictions(np.asarray(pred).reshape(-1, *pred.shape[-2:]),
                     np.asarray(likelihood).reshape(-1, likelihood.shape[-1]), batch)
  total = jax.device_get(parallel.first(total))  # a host-device sync point
  names = source.spec.names
  per_keypoint = metrics.summarize_keypoints(total["per_keypoint"], names)
  baseline = metrics.summarize_keypoints(total["per_keypoint_baseline"], names)
  for name in names:
    per_keypoint[name].update({f"baseline_{k}": v for k, v in baseline[name].items()})
  num_examples = int(total["num_examples"])
  return ({**metrics.summarize(total["model"]),
           **metrics.keypoint_means(total["per_keypoint"]),
           **metrics.summarize(total["baseline"], prefix="baseline_"),
           **metrics.keypoint_means(total["per_keypoint_baseline"], prefix="baseline_"),
           "num_examples": num_examples,
           # What the averages leave out: examples and keypoints without ground truth.
           "num_examples_without_labels": num_examples - int(total["model"]["nme"][1]),
           "num_labelled_keypoints": int(total["model"]["pck@0.1"][1])}, per_keypoint)


def headline_metrics(values: dict) -> dict:
  """`evaluate_split`'s model metrics, with the baseline's NME and pixel error beside them."""
  return {**{k: v for k, v in values.items() if not k.startswith("baseline_")},
          "nme_baseline": values["baseline_nme"],
          "nme_ratio_to_baseline": (values["nme"] / values["baseline_nme"]
                                    if values["nme"] is not None and values["baseline_nme"]
                                    else None),  # a perfect baseline (identical crops): none
          "error_image_px_baseline": values["baseline_error_image_px"]}


def stack_rows(collected: list) -> dict:
  """The real (unpadded) rows of the collected (prediction, likelihood, flattened batch)."""
  out = {"pred": np.concatenate([pred for pred, _, _ in collected]),
         "likelihood": np.concatenate([likelihood for _, likelihood, _ in collected])}
  for key in ("matrix", "image_id", "box", "keypoints", "visible", "mask"):
    out[key] = np.concatenate([batch[key] for _, _, batch in collected])
  real = out.pop("mask") > 0
  return {k: v[real] for k, v in out.items()}


def cutoff_metrics(rows: dict, cutoff: float) -> dict:
  """With predictions under the likelihood `cutoff` marked missing: the fraction of labelled
  keypoints still predicted, and their mean error in the source image's pixels."""
  pred = to_source_pixels(rows["pred"], rows["matrix"])
  true = to_source_pixels(rows["keypoints"], rows["matrix"])
  labelled = rows["visible"] > 0
  kept = labelled & (rows["likelihood"] >= cutoff)
  error = np.linalg.norm(pred - true, axis=-1)
  return {"likelihood_cutoff": cutoff,
          "kept_fraction": float(kept.sum() / labelled.sum()) if labelled.any() else None,
          "error_image_px_kept": float(error[kept].mean()) if kept.any() else None}


# MMPose's top-down evaluation with detected boxes (its CocoMetric defaults): an instance
# scores its box's score times the mean likelihood of its keypoints above this ...
KEYPOINT_SCORE_THRESHOLD = 0.2
# ... and of two poses of an image whose OKS exceeds this, the lower-scored is dropped.
OKS_NMS_THRESHOLD = 0.9


def coco_metrics(source, split: str, rows: dict, box_scores=None) -> tuple[dict, list]:
  """(COCO AP/AR, the predictions in the COCO results format) of `rows` (`stack_rows`). With
  `box_scores` (detected boxes, one a row), MMPose's protocol: box score x mean likelihood
  above KEYPOINT_SCORE_THRESHOLD, then OKS-NMS per image."""
  spec = source.spec
  pred = to_source_pixels(rows["pred"], rows["matrix"])
  if split in source.ground_truth:
    ground_truth, category_id = source.ground_truth[split]()  # the annotation file's own
  else:
    category_id = 1
    ground_truth = coco_eval.ground_truth_from_examples(
        rows["image_id"], rows["box"], to_source_pixels(rows["keypoints"], rows["matrix"]),
        rows["visible"], spec.names, category_id)
  if box_scores is None:
    # An instance scores its keypoints' mean likelihood (MMPose's rule for heatmap heads with
    # ground-truth boxes); the regression head has none, so every instance scores 1.
    scores, kept = rows["likelihood"].mean(-1), np.arange(len(pred))
  else:
    scores = poses.instance_scores(box_scores, rows["likelihood"], KEYPOINT_SCORE_THRESHOLD)
    kept = np.concatenate([
        np.flatnonzero(same)[poses.oks_nms(pred[same], rows["likelihood"][same], scores[same],
                                           spec.oks_sigmas(), OKS_NMS_THRESHOLD)]
        for same in (rows["image_id"] == i for i in np.unique(rows["image_id"]))])
  predictions = coco_eval.results(rows["image_id"][kept], pred[kept], scores[kept], category_id)
  return coco_eval.keypoint_ap(ground_truth, predictions, spec.oks_sigmas(), category_id), \
      predictions


def evaluate_run(workdir: str, split: str, output_dir: str | None = None,
                 step: int | None = None, likelihood_cutoff: float | None = None,
                 detections: str | None = None) -> dict:
  """Evaluates `workdir`'s checkpoint (default: the best) on `split`; returns metrics.json.
  `detections` (default the run's `data.detections`): a COCO results file of boxes to crop
  instead of the split's own (MMPose's protocol with detected boxes; COCO AP only)."""
  run = load_run(workdir, step)
  config = run.config
  source = pipeline.get_source(config.data)
  detections = detections or config.data.get("detections", "")
  box_scores = None
  if detections:
    source, box_scores = coco.with_detections(source, split, detections, config.data)
  spec = source.spec
  if spec.names != run.keypoint_names:
    raise ValueError(f"{workdir}: the checkpoint's keypoints {run.keypoint_names} differ from "
                     f"its config's data ({spec.names}).")
  parallel = steps.make_parallel("jit", run.head, flip_permutation=run.flip_permutation,
                                 image_stats=pixels.normalisation(config.data,
                                                                  run.image_shape[2]))
  mean_shape = (pipeline.training_mean_shape(config.data, source) if run.mean_shape is None
                else run.mean_shape)
  collected = []
  values, per_keypoint = evaluate_split(
      parallel, parallel.put_state(run.state), config, source, split, mean_shape,
      on_predictions=lambda *outputs: collected.append(outputs))
  rows = stack_rows(collected)
  ap, predictions = coco_metrics(source, split, rows, box_scores)
  if likelihood_cutoff is None:
    likelihood_cutoff = config.get("likelihood_cutoff", 0.0)
  summary = {"workdir": workdir, "step": run.step, "split": split, "source": source.name,
             "boxes": detections or "the split's own", "normaliser": spec.normaliser,
             **headline_metrics(values),
             **cutoff_metrics(rows, likelihood_cutoff),
             **{f"coco_{k}": v for k, v in ap.items()}, "per_keypoint": per_keypoint}
  output_dir = epath.Path(output_dir or epath.Path(workdir) / "eval" / split)
  output_dir.mkdir(parents=True, exist_ok=True)
  (output_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
  (output_dir / "keypoint_results.json").write_text(json.dumps(predictions))
  logging.info("Wrote %s", output_dir)
  return summary


def format_table(summary: dict) -> str:
  lines = [f"{summary['source']} {summary['split']} ({summary['num_examples']} examples), "
           f"step {summary['step']}; NME normaliser: {summary['normaliser']}"]
  lines += [f"  {k:<27} {v:.4f}" for k, v in summary.items() if isinstance(v, float)]
  lines += [f"  {k:<27} {v}" for k, v in summary.items()
            if k.startswith("num_") or v is None]
  lines.append(f"  {'keypoint':<28} {'NME':>8} {'PCK@0.1':>8} {'error px':>9} "
               f"{'baseline px':>12}  (px: the source image's pixels; - : never labelled)")
  cell = lambda value, spec: "-" if value is None else format(value, spec)
  lines += [f"  {name:<28} {cell(m['nme'], '>8.4f')} {cell(m['pck@0.1'], '>8.3f')} "
            f"{cell(m['error_image_px'], '>9.2f')} {cell(m['baseline_error_image_px'], '>12.2f')}"
            for name, m in summary["per_keypoint"].items()]
  return "\n".join(lines)
