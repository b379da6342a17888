"""Trains a keypoint detector; all logic lives in `kp_jax` (this file is kept short).

  python train.py --config configs/default.py --workdir workdirs/default \
      [--config.num_train_steps=1000 ...]

Multi-process (multi-host) runs start one such process per host (or per GPU): under SLURM,
Open MPI and on Cloud TPU pod slices JAX finds its peers itself; elsewhere pass
--coordinator_address, --num_processes and --process_id.
"""

import logging as std_logging
import os

from absl import app, flags, logging
import jax
from ml_collections import config_flags
import tensorflow as tf

from kp_jax import compilation_cache, train, two_stage

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and pictures go; a run in a "
                    "workdir that holds checkpoints resumes from the latest.", required=True)
config_flags.DEFINE_config_file("config", None, "Config file; override fields with "
                                "--config.<key>=<value>.", lock_config=True)
flags.mark_flags_as_required(["config"])
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 in a multi-process run "
                    "that JAX does not detect by itself.")
flags.DEFINE_integer("num_processes", None, "With --coordinator_address: how many processes.")
flags.DEFINE_integer("process_id", None, "With --coordinator_address: this process's index.")

# Environment variables by which JAX's own cluster detection (jax.distributed.initialize()
# without arguments) recognises a multi-process launch, with the process count they carry.
_CLUSTER_SIZES = {"SLURM_NTASKS": int, "OMPI_COMM_WORLD_SIZE": int,
                  "TPU_WORKER_HOSTNAMES": lambda hosts: len(hosts.split(","))}


def initialize_distributed():
  """Joins the other processes of a multi-process run; a single process needs nothing."""
  jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU-only multi-process
  if FLAGS.coordinator_address:
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  elif any(size(os.environ[var]) > 1 for var, size in _CLUSTER_SIZES.items()
           if os.environ.get(var)):
    jax.distributed.initialize()


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
  initialize_distributed()
  compilation_cache.enable(FLAGS.config.get("compilation_cache_dir"))
  logging.info("Config:\n%s", FLAGS.config)
  run = two_stage if "two_stage" in FLAGS.config else train  # find, then refine: two runs
  summary = run.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  if "preempted_at_step" in summary:
    logging.warning("Stopped at step %d on SIGTERM, checkpoint saved.",
                    summary["preempted_at_step"])


if __name__ == "__main__":
  app.run(main)
