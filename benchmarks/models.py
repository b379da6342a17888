"""Size, cost and training speed of the models of the given configs; with --train, their
accuracy too.

  python benchmarks/models.py configs/zoo/*.py            # params, MACs, img/s (seconds)
  python benchmarks/models.py --counts configs/coco_*.py  # params and MACs only
  python benchmarks/models.py --train configs/zoo/*.py    # also trains each (minutes each)
  python benchmarks/models.py --batch_size 2 configs/coco_hrnet_w32.py  # GPU recipes on a CPU

Prints a Markdown table: parameters, multiply-adds per image of the forward pass and of a
training step (kp_jax/flops.py: counted from the program, the same on every backend; one
multiply-add is two FLOPs), and training images/s (jit train steps at the config's batch size,
or --batch_size, on random data, after a warm-up step). With --train, each config is trained with train.py into
workdirs/zoo/<config name> (resuming if already there) and the table adds its validation
NME, PCK@0.05, failure rate (NME > 0.1) and the images/s of the real run.
"""

import argparse
import functools
import json
import os
import subprocess
import sys
import time

import jax
import numpy as np

from config_shapes import input_shape, keypoint_count, load_config
from kp_jax import flops, steps
from kp_jax.data import pixels
from kp_jax.models import create_model


def counts(config) -> tuple[int, dict]:
  """(parameters, multiply-adds per image {"forward", "train_step"})."""
  shape = input_shape(config.data)
  k = keypoint_count(config.data)
  model, _ = create_model(config.model, k, shape[:2])
  variables = jax.eval_shape(model.init, jax.random.key(0), np.zeros((1, *shape), np.float32))
  params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(variables["params"]))
  return params, flops.model_macs(config, k, shape)


def images_per_second(config, num_steps: int = 10, batch_size: int | None = None) -> float:
  shape = input_shape(config.data)
  k = keypoint_count(config.data)
  model, head = create_model(config.model, k, shape[:2])
  state = steps.create_train_state(config, model, shape, jax.random.key(0))
  rng = np.random.default_rng(0)
  b = batch_size or config.batch_size
  batch = {"image": rng.integers(0, 256, size=(b, *shape), dtype=np.uint8),
           "keypoints": rng.uniform(0, min(shape[:2]) - 1, size=(b, k, 2)).astype(np.float32),
           "visible": np.ones((b, k), np.float32)}
  step = jax.jit(functools.partial(steps.train_step, head=head,
                                   image_stats=pixels.normalisation(config.data, shape[2])),
                 donate_argnums=(0,))
  state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(num_steps):
    state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  return num_steps * b / (time.perf_counter() - start)


def train_summary(path, name):
  workdir = os.path.join("workdirs", "zoo", name)
  subprocess.run([sys.executable, "train.py", f"--config={path}", f"--workdir={workdir}"],
                 check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  with open(os.path.join(workdir, "summary.json")) as f:
    return json.load(f)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("configs", nargs="+", help="config files or built-in names")
  parser.add_argument("--train", action="store_true", help="also train each (minutes each)")
  parser.add_argument("--counts", action="store_true", help="parameters and MACs only")
  parser.add_argument("--batch_size", type=int, help="for the img/s timing; default: the "
                      "config's")
  args = parser.parse_args()
  columns = ["config", "params", "forward GMACs/img", "train-step GMACs/img"]
  columns += [] if args.counts else ["img/s (random data)"]
  if args.train:
    columns += ["val NME", "PCK@0.05", "failure@0.1", "img/s (run)", "run wall s"]
  print("| " + " | ".join(columns) + " |")
  print("|" + "---|" * len(columns))
  for path in args.configs:
    config = load_config(path)
    params, macs = counts(config)
    row = [f"`{path}`", f"{params:,d}", f"{macs['forward'] / 1e9:.4g}",
           f"{macs['train_step'] / 1e9:.4g}"]
    if not args.counts:
      row.append(f"{images_per_second(config, batch_size=args.batch_size):.0f}")
    if args.train:
      s = train_summary(path, config.name)
      speed = s["train_images_per_sec"]  # None when the run was already finished
      row += [f"{s['nme']:.4f}", f"{s['pck@0.05']:.3f}", f"{s['failure@0.1']:.3f}",
              "n/a" if speed is None else f"{speed:.0f}", f"{s['wall_seconds']:.0f}"]
    print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
  main()
