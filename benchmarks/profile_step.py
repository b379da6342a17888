"""Where a training step's time goes: the XLA ops of kp-jax's jit train step, by time per step.

  .venv/bin/python benchmarks/profile_step.py configs/seed_96.py --batch 128 [--top 25]

Random data at the config's input size; a `jax.profiler` trace of `--steps` steps after a
warm-up, read back from its trace events. Convolutions run as asynchronous thunks, so their
time shows under "ThunkExecutor::Execute" rather than by name; fusions show by name (match
them to the HLO with `--hlo FILE`, which writes the compiled step).
"""

import argparse
import collections
import glob
import gzip
import json
import os
import tempfile

import jax
import numpy as np

from config_shapes import input_shape, keypoint_count, load_config
from kp_jax import steps
from kp_jax.data import pixels
from kp_jax.models import create_model

def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("config")
  parser.add_argument("--batch", type=int, default=None, help="default: the config's")
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--top", type=int, default=25)
  parser.add_argument("--hlo", help="write the compiled step's HLO text here")
  parser.add_argument("--keypoints", type=int, help="for configs whose source does not say")
  args = parser.parse_args()
  config = load_config(args.config)
  shape, keypoints = input_shape(config.data), keypoint_count(config.data, args.keypoints)
  batch_size = args.batch or config.batch_size
  model, head = create_model(config.model, keypoints, shape[:2])
  state = steps.create_train_state(config, model, shape, jax.random.key(0))
  parallel = steps.make_parallel("jit", head,
                                 image_stats=pixels.normalisation(config.data, shape[2]))
  rng = np.random.default_rng(0)
  batch = parallel.put_batch({
      "image": rng.integers(0, 256, (batch_size, *shape), dtype=np.uint8),
      "keypoints": rng.uniform(0, min(shape[:2]), (batch_size, keypoints, 2)).astype(
          np.float32),
      "visible": np.ones((batch_size, keypoints), np.float32),
      "norm": np.ones((batch_size,), np.float32)})
  state = parallel.put_state(state)
  if args.hlo:
    with open(args.hlo, "w") as f:
      f.write(parallel.train_step.lower(state, batch).compile().as_text())
  for _ in range(3):  # compile and warm up
    state, metrics = parallel.train_step(state, batch)
  jax.block_until_ready(metrics)
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir)
    for _ in range(args.steps):
      state, metrics = parallel.train_step(state, batch)
    jax.block_until_ready(metrics)
    jax.profiler.stop_trace()
    trace = sorted(glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True))
    events = json.load(gzip.open(trace[-1]))["traceEvents"]
  total, count = collections.Counter(), collections.Counter()
  for event in events:
    if event.get("ph") == "X":
      total[event["name"]] += event.get("dur", 0)
      count[event["name"]] += 1
  print(f"{args.config}, batch {batch_size}, {args.steps} profiled steps\n")
  print("| ms/step | calls/step | op |")
  print("|---|---|---|")
  for name, micros in total.most_common(args.top):
    print(f"| {micros / args.steps / 1e3:.1f} | {count[name] / args.steps:g} | {name[:90]} |")


if __name__ == "__main__":
  main()
