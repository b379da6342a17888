"""Evaluates a training run's checkpoint on a split, as the field reports it.

  python -m kp_jax.evaluate --workdir workdirs/coco_example --split validation

Writes into --output_dir (default WORKDIR/eval/SPLIT):
  metrics.json       NME (the dataset's normaliser), PCK, AUC and failure rate at 0.08 and 0.1,
                     the mean error (MMPose's EPE) and RMSE in the source images' pixels
                     (`*_image_px`) and RMSE in model-input pixels (`rmse_input_px`), MMPose's
                     PCK, PCK by box and AUC (`mmpose_*`, kp_jax/metrics.py has every
                     definition), the examples and keypoints left out (no ground truth),
                     the mean-shape baseline's
                     NME and image-pixel error, the share and error of keypoints above the
                     likelihood cutoff, COCO keypoint AP/AR (pycocotools, OKS with the
                     keypoints' sigmas), and a per-keypoint breakdown
  keypoint_results.json  the predictions in the COCO results format, in source image pixels
"""

import json

import numpy as np
import tensorflow as tf
from absl import app, flags, logging
from etils import epath

from kp_jax import coco_eval, steps, train
from kp_jax.data import pipeline
from kp_jax.exported import to_source_pixels
from kp_jax.predict import load_run


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


def coco_metrics(source, split: str, rows: dict, spec) -> tuple[dict, list]:
  """(COCO AP/AR, the predictions in the COCO results format) of `rows` (`stack_rows`)."""
  pred = to_source_pixels(rows["pred"], rows["matrix"])
  if split in source.ground_truth and spec.names == source.spec.names:
    ground_truth, category_id = source.ground_truth[split]()  # the annotation file's own
  else:
    category_id = 1
    ground_truth = coco_eval.ground_truth_from_examples(
        rows["image_id"], rows["box"], to_source_pixels(rows["keypoints"], rows["matrix"]),
        rows["visible"], spec.names, category_id)
  # An instance scores its keypoints' mean likelihood (MMPose's rule for heatmap heads); the
  # regression head has none, so every instance scores 1 and COCO AP ranks them by order.
  predictions = coco_eval.results(rows["image_id"], pred, rows["likelihood"].mean(-1),
                                  category_id)
  return coco_eval.keypoint_ap(ground_truth, predictions, spec.oks_sigmas(), category_id), \
      predictions


def evaluate_run(workdir: str, split: str, output_dir: str | None = None,
                 step: int | None = None, likelihood_cutoff: float | None = None) -> dict:
  """Evaluates `workdir`'s checkpoint (default: the best) on `split`; returns metrics.json."""
  run = load_run(workdir, step)
  config = run.config
  source = pipeline.get_source(config.data)
  spec, _ = pipeline.keypoint_subset(config.data, source.spec)
  if spec.names != run.keypoint_names:
    raise ValueError(f"{workdir}: the checkpoint's keypoints {run.keypoint_names} differ from "
                     f"its config's data ({spec.names}).")
  parallel = steps.make_parallel("jit", run.head, flip_permutation=run.flip_permutation)
  mean_shape = pipeline.training_mean_shape(config.data, source)
  collected = []
  values, per_keypoint = train.evaluate(
      parallel, parallel.put_state(run.state), config, source, split, mean_shape,
      on_predictions=lambda *outputs: collected.append(outputs))
  rows = stack_rows(collected)
  ap, predictions = coco_metrics(source, split, rows, spec)
  if likelihood_cutoff is None:
    likelihood_cutoff = config.get("likelihood_cutoff", 0.0)
  summary = {"workdir": workdir, "step": run.step, "split": split, "source": source.name,
             "normaliser": spec.normaliser,
             **{k: v for k, v in values.items() if not k.startswith("baseline_")},
             "nme_baseline": values["baseline_nme"],
             "error_image_px_baseline": values["baseline_error_image_px"],
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


def main(argv):
  del argv
  tf.config.set_visible_devices([], "GPU")  # TF only feeds data: leave accelerators to JAX
  args = flags.FLAGS
  print(format_table(evaluate_run(args.workdir, args.split, args.output_dir, args.step,
                                  args.likelihood_cutoff)))


if __name__ == "__main__":  # flags only for the command, so the module imports anywhere
  flags.DEFINE_string("workdir", None, "A training run's workdir.", required=True)
  flags.DEFINE_string("split", "validation", "The split to evaluate.")
  flags.DEFINE_integer("step", None, "Checkpoint step; default: the best.")
  flags.DEFINE_string("output_dir", None, "Default: WORKDIR/eval/SPLIT.")
  flags.DEFINE_float("likelihood_cutoff", None, "Also report the error of the keypoints at or "
                     "above this likelihood and their share; default: the run's "
                     "config.likelihood_cutoff.")
  app.run(main)
