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

import tensorflow as tf
from absl import app, flags

from kp_jax import two_stage
from kp_jax.evaluation import evaluate_run, format_table
from kp_jax.predict import is_find_refine


def main(argv):
  del argv
  tf.config.set_visible_devices([], "GPU")  # TF only feeds data: leave accelerators to JAX
  args = flags.FLAGS
  if is_find_refine(args.workdir):  # both stages end to end, beside each alone
    if args.step is not None:
      raise app.UsageError("--step: a two-stage workdir is evaluated at each stage's best "
                           "checkpoint.")
    print(two_stage.format_table(two_stage.evaluate(args.workdir, args.split, args.output_dir)))
    return
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
