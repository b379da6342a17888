"""Trains a keypoint detector; all logic lives in `kp_jax` (this file is kept short).

  python train.py --config configs/default.py --workdir workdirs/default \
      [--config.num_train_steps=1000 ...]
"""

import logging as std_logging

from absl import app, flags, logging
from ml_collections import config_flags
import tensorflow as tf

from kp_jax import train

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and pictures go; a run in a "
                    "workdir that holds checkpoints resumes from the latest.", required=True)
config_flags.DEFINE_config_file("config", None, "Config file; override fields with "
                                "--config.<key>=<value>.", lock_config=True)
flags.mark_flags_as_required(["config"])


class _QuietLibraries(std_logging.Filter):
  """Keeps Orbax's and TFDS's per-operation INFO lines off the console (warnings still show)."""

  def filter(self, record):
    noisy = any(f"/{lib}/" in record.pathname for lib in ("orbax", "tensorflow_datasets"))
    return record.levelno >= std_logging.WARNING or not noisy


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.get_absl_handler().addFilter(_QuietLibraries())
  tf.config.set_visible_devices([], "GPU")  # TF only feeds data: leave accelerators to JAX
  logging.info("Config:\n%s", FLAGS.config)
  train.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
