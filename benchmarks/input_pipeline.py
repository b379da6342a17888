"""Examples/s of the training input pipeline alone (no model), for a config.

  python benchmarks/input_pipeline.py [configs/default.py] [--batches 200]

Compare with the model's images/s (benchmarks/models.py): the step waits for input when the
pipeline is slower, and on a 2-core CPU the two share the cores.
"""

import argparse
import importlib.util
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root
from kp_jax.data import pipeline  # noqa: E402


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("config", nargs="?", default="configs/default.py")
  parser.add_argument("--batches", type=int, default=200)
  args = parser.parse_args()
  spec = importlib.util.spec_from_file_location("config", args.config)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  source = pipeline.get_source(config.data)
  batches = pipeline.train_iterator(config, source, start_step=0, local_devices=1)
  for _ in range(20):  # fills the cache and the prefetch buffer
    next(batches)
  start = time.perf_counter()
  for _ in range(args.batches):
    next(batches)
  seconds = time.perf_counter() - start
  print(f"| config | batch | examples/s (pipeline alone) |\n|---|---|---|\n"
        f"| `{args.config}` | {config.batch_size} | {args.batches * config.batch_size / seconds:.0f} |")


if __name__ == "__main__":
  main()
