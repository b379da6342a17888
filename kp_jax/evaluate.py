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

With --detections FILE (or `config.data.detections`), a COCO-format run crops the boxes of a
person-detections file instead of the annotated ones and scores them as MMPose does (box score
x mean keypoint likelihood above 0.2, OKS-NMS at 0.9): the protocol of published COCO tables
(docs/datasets.md says which table compares with which mode).
"""

from absl import app, flags

from kp_jax import startup, two_stage
from kp_jax.evaluation import evaluate_run, format_table


def main(argv):
  del argv
  args = flags.FLAGS
  startup.for_run(args.workdir)
  if two_stage.is_find_refine(args.workdir):  # both stages end to end, beside each alone
    if args.step is not None:
      raise app.UsageError("--step: a two-stage workdir is evaluated at each stage's best "
                           "checkpoint.")
    print(two_stage.format_table(two_stage.evaluate(args.workdir, args.split, args.output_dir)))
    return
  print(format_table(evaluate_run(args.workdir, args.split, args.output_dir, args.step,
                                  args.likelihood_cutoff, args.detections)))


if __name__ == "__main__":  # flags only for the command, so the module imports anywhere
  flags.DEFINE_string("workdir", None, "A training run's workdir.", required=True)
  flags.DEFINE_string("split", "validation", "The split to evaluate.")
  flags.DEFINE_integer("step", None, "Checkpoint step; default: the best.")
  flags.DEFINE_string("output_dir", None, "Default: WORKDIR/eval/SPLIT.")
  flags.DEFINE_float("likelihood_cutoff", None, "Also report the error of the keypoints at or "
                     "above this likelihood and their share; default: the run's "
                     "config.likelihood_cutoff.")
  flags.DEFINE_string("detections", None, "COCO-format runs: a detections file (COCO's "
                      "results format) whose boxes are cropped instead of the split's own, "
                      "scored as MMPose does; default: the run's config.data.detections.")
  app.run(main)
