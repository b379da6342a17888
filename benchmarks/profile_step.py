"""Where a training step's time goes: the XLA ops of kp-jax's jit train step, by time per step.

  .venv/bin/python benchmarks/profile_step.py configs/seed_96.py --batch 128 [--top 25]

Random data at the config's input size; a `jax.profiler` trace of `--steps` steps after a
warm-up, read back from its trace events (`profiled`, which benchmarks/accelerator.py's
`--profile_steps` uses too). On an accelerator the lanes are its streams and the ops its
kernels; on the CPU the lanes are host threads, convolutions run as asynchronous thunks, so
their time shows under "ThunkExecutor::Execute" rather than by name, and fusions show by name
(match them to the HLO with `--hlo FILE`, which writes the compiled step).
"""

import argparse
import collections
import glob
import gzip
import json
import os
import re
import tempfile

import jax
import numpy as np

from config_shapes import input_shape, keypoint_count, load_config
from kp_jax import steps
from kp_jax.data import pixels
from kp_jax.models import create_model

LANES = 4  # the busiest lanes of a trace that a summary keeps
# Where a GPU kernel's trace event may name the XLA op it ran for (XLA's annotation of it).
XLA_OP_ARGS = ("hlo_op", "kernel_annotation")


def kind(name: str) -> str:
  """`name` without its numeric suffix: "loop_add_fusion_12" and "fusion.3" -> their kind."""
  return re.sub(r"[._]\d+$", "", name)


def trace_lanes(events, num_steps: int, top: int) -> list[dict]:
  """Where `num_steps` steps' time went, lane by lane, busiest first: [{"lane", "ms_per_step"
  (the time of its events), "ops": [[name, ms a step, calls a step], ...] (its `top` events by
  time), "kinds": the same by `kind` (all fusions of a kind together), and where the events
  name the XLA op they ran for (`XLA_OP_ARGS`), "xla_ops": the same by that op's kind}]. The
  lanes are an accelerator's ("/device:..." processes' threads: a GPU's streams, whose kernels
  run one after another, so a lane's time is its busy time), or on the CPU, which has none,
  the host's threads (whose events nest, so their times overlap)."""
  processes = {e["pid"]: e["args"]["name"] for e in events if e.get("name") == "process_name"}
  threads = {(e["pid"], e.get("tid")): e["args"]["name"] for e in events
             if e.get("name") == "thread_name"}
  devices = {pid for pid, name in processes.items() if name.startswith("/device:")}
  # lane -> view ("ops", "kinds", "xla_ops") -> (microseconds, calls) by name
  lanes = collections.defaultdict(lambda: collections.defaultdict(
      lambda: (collections.Counter(), collections.Counter())))
  for e in events:
    if e.get("ph") != "X" or (devices and e["pid"] not in devices):
      continue
    key = (e["pid"], e.get("tid"))
    lane = lanes[f"{processes.get(e['pid'], e['pid'])} {threads.get(key, key[1])}"]
    views = {"ops": e["name"], "kinds": kind(e["name"])}
    op = next((str(e["args"][k]) for k in XLA_OP_ARGS if k in e.get("args", {})), None)
    if op:
      views["xla_ops"] = kind(op)
    for view, name in views.items():
      micros, calls = lane[view]
      micros[name] += e.get("dur", 0)
      calls[name] += 1

  def table(micros, calls):
    return [[name[:120], micros[name] / num_steps / 1e3, calls[name] / num_steps]
            for name, _ in micros.most_common(top)]

  summary = [{"lane": lane, "ms_per_step": sum(views["ops"][0].values()) / num_steps / 1e3,
              **{view: table(*counts) for view, counts in views.items()}}
             for lane, views in lanes.items()]
  return sorted(summary, key=lambda lane: -lane["ms_per_step"])[:LANES]


def profiled(step, num_steps: int, synchronize, top: int) -> list[dict]:
  """`trace_lanes` of a `jax.profiler` trace of `num_steps` calls of `step()` (compiled and
  warmed up already)."""
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir):
      for _ in range(num_steps):
        step()
      synchronize()
    path = sorted(glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True))
    with gzip.open(path[-1]) as f:
      events = json.load(f)["traceEvents"]
  return trace_lanes(events, num_steps, top)


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
  holder = {"state": state}

  def step():
    holder["state"], holder["metrics"] = parallel.train_step(holder["state"], batch)

  lanes = profiled(step, args.steps, lambda: jax.block_until_ready(holder), args.top)
  print(f"{args.config}, batch {batch_size}, {args.steps} profiled steps")
  for lane in lanes:
    print(f"\n{lane['lane']}: {lane['ms_per_step']:.1f} ms a step\n")
    print("| ms/step | calls/step | op |")
    print("|---|---|---|")
    for name, ms, calls in lane["ops"]:
      print(f"| {ms:.1f} | {calls:g} | {name[:90]} |")


if __name__ == "__main__":
  main()
