"""The seed CNN trained side by side in kp-jax, Keras (default and jit_compile) and PyTorch.

  .venv/bin/pip install -r benchmarks/requirements.txt
  .venv/bin/python benchmarks/peers.py [--steps 40] [--rounds 3]

The seed article's network (conv 32 3x3 -> max-pool 2 -> conv 64 3x3 -> max-pool 2 ->
dense 64 -> dense 30 -> sigmoid, 'VALID' convolutions, ReLU) on 96x96x1 inputs, 15 keypoints,
batch 128, RMSprop (lr 1e-3, decay 0.9, eps 1e-7), mean squared error, on the same random
batch. Each framework runs in its own process, one after another, with every CPU core: a
warm-up, then `rounds` timed runs of `steps` steps; the table shows the best round's
images/s and kp-jax's ratio to the best peer. kp-jax runs its own training step
(`kp_jax.train.train_step` with configs/seed_96.py's model and head).
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

BATCH, SIZE, KEYPOINTS, LR = 128, 96, 15, 1e-3
FRAMEWORKS = ("kp-jax", "keras", "keras-jit", "pytorch")


def random_batch():
  rng = np.random.default_rng(0)
  images = rng.uniform(0, 1, (BATCH, SIZE, SIZE, 1)).astype(np.float32)
  targets = rng.uniform(0, 1, (BATCH, 2 * KEYPOINTS)).astype(np.float32)  # sigmoid outputs
  return images, targets


def time_rounds(run_steps, steps: int, rounds: int) -> float:
  """Best images/s over `rounds` calls of `run_steps(steps)` (which must finish its work)."""
  run_steps(3)  # warm-up: compilation, allocation
  best = 0.0
  for _ in range(rounds):
    start = time.perf_counter()
    run_steps(steps)
    best = max(best, steps * BATCH / (time.perf_counter() - start))
  return best


def kp_jax(steps, rounds):
  import jax
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from configs import seed_96
  from kp_jax import train
  from kp_jax.models import create_model

  config = seed_96.get_config()
  model, head = create_model(config.model, KEYPOINTS, (SIZE, SIZE))
  state = train.create_train_state(config, model, (SIZE, SIZE, 1), jax.random.key(0))
  parallel = train.make_parallel("jit", head)
  images, targets = random_batch()
  batch = {"image": images[None], "keypoints": targets.reshape(1, BATCH, KEYPOINTS, 2) * SIZE,
           "visible": np.ones((1, BATCH, KEYPOINTS), np.float32),
           "norm": np.ones((1, BATCH), np.float32)}
  batch = parallel.put_batch(batch)
  holder = {"state": parallel.put_state(state)}

  def run_steps(n):
    for _ in range(n):
      holder["state"], metrics = parallel.train_step(holder["state"], batch)
    jax.block_until_ready(metrics)
  return time_rounds(run_steps, steps, rounds), f"jax {jax.__version__}"


def keras(steps, rounds, jit_compile=False):
  import keras as k
  import tensorflow as tf
  layers = k.layers
  model = k.Sequential([
      k.Input((SIZE, SIZE, 1)),
      layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(2),
      layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(2),
      layers.Flatten(), layers.Dense(64, activation="relu"),
      layers.Dense(2 * KEYPOINTS, activation="sigmoid")])
  model.compile(optimizer=k.optimizers.RMSprop(LR, rho=0.9, epsilon=1e-7), loss="mse",
                jit_compile=jit_compile)
  images, targets = random_batch()
  data = tf.data.Dataset.from_tensors((images, targets)).repeat().prefetch(2)
  run_steps = lambda n: model.fit(data, steps_per_epoch=n, epochs=1, verbose=0)
  return time_rounds(run_steps, steps, rounds), f"keras {k.__version__}, tf {tf.__version__}"


def pytorch(steps, rounds):
  import torch
  from torch import nn
  torch.set_num_threads(os.cpu_count())
  model = nn.Sequential(
      nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
      nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
      nn.Flatten(), nn.Linear(64 * 22 * 22, 64), nn.ReLU(),
      nn.Linear(64, 2 * KEYPOINTS), nn.Sigmoid())
  optimizer = torch.optim.RMSprop(model.parameters(), lr=LR, alpha=0.9, eps=1e-7)
  images, targets = random_batch()
  x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # NCHW, PyTorch's layout
  y = torch.from_numpy(targets)

  def run_steps(n):
    for _ in range(n):
      optimizer.zero_grad()
      loss = nn.functional.mse_loss(model(x), y)
      loss.backward()
      optimizer.step()
  return time_rounds(run_steps, steps, rounds), f"torch {torch.__version__}"


RUNNERS = {"kp-jax": kp_jax, "keras": keras,
           "keras-jit": lambda s, r: keras(s, r, jit_compile=True), "pytorch": pytorch}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--steps", type=int, default=40)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--only", choices=FRAMEWORKS, help="run one framework, print JSON")
  args = parser.parse_args()
  if args.only:
    images_per_sec, version = RUNNERS[args.only](args.steps, args.rounds)
    print(json.dumps({"framework": args.only, "images_per_sec": images_per_sec,
                      "version": version}))
    return
  results = {}
  for framework in FRAMEWORKS:
    out = subprocess.run([sys.executable, __file__, "--only", framework, "--steps",
                          str(args.steps), "--rounds", str(args.rounds)],
                         capture_output=True, text=True)
    if out.returncode:
      print(f"{framework} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
      continue
    results[framework] = json.loads(out.stdout.strip().splitlines()[-1])
  best_peer = max((r["images_per_sec"] for f, r in results.items() if f != "kp-jax"),
                  default=None)
  print(f"seed CNN, {SIZE}x{SIZE}x1, batch {BATCH}, RMSprop; {os.cpu_count()} CPU cores\n")
  print("| framework | version | images/s | kp-jax / this |")
  print("|---|---|---|---|")
  ours = results.get("kp-jax", {}).get("images_per_sec")
  for framework, r in results.items():
    ratio = f"{ours / r['images_per_sec']:.2f}" if ours else "-"
    print(f"| {framework} | {r['version']} | {r['images_per_sec']:.0f} | {ratio} |")
  if ours and best_peer:
    print(f"\nkp-jax / best peer: {ours / best_peer:.2f}")


if __name__ == "__main__":
  main()
