"""kp-jax trained side by side with Keras (default and jit_compile) and PyTorch.

  .venv/bin/pip install -r benchmarks/requirements.txt
  .venv/bin/python benchmarks/peers.py [--models seed default] [--steps 40] [--rounds 3]

Networks, each with the same batch of random data in every framework:
- `seed`: the seed article's CNN (conv 32 3x3 -> max-pool 2 -> conv 64 3x3 -> max-pool 2 ->
  dense 64 -> dense 30 -> sigmoid, 'VALID' convolutions, ReLU) on 96x96x1 inputs, 15
  keypoints, batch 128, RMSprop (lr 1e-3, decay 0.9, eps 1e-7), mean squared error; in kp-jax,
  Keras, Keras with jit_compile and PyTorch. kp-jax runs configs/seed_96.py's model and head.
- `default`: the best model of docs/models.md (configs/default.py: ResNet width 16 with one
  basic block per stage, two 4x4 deconvs to 12x12 maps, soft-argmax, L1 on pixels; BatchNorm
  in training mode), batch 64, RMSprop; in kp-jax and PyTorch. Each framework reports its
  parameter count, printed side by side, so a port that differs from kp-jax's shows.
- `hrnet_w32`, `vitpose_b`: configs/coco_hrnet_w32.py's and configs/coco_vitpose_b.py's
  networks (HRNet-W32; ViT-B with the classic decoder, drop path off in both frameworks) on
  256x192x3 inputs, 17 keypoints, batch 8, each with its config's optimiser (Adam; AdamW with
  layer-wise decay and gradient clipping), heatmap MSE; in kp-jax and PyTorch
  (benchmarks/torch_reference.py: MMPose's modules, whose parameter counts must equal kp-jax's).
  kp-jax makes its Gaussian targets inside the step, PyTorch gets them made (as MMPose's data
  workers make them).
`kp-jax-xla` is kp-jax with `config.model.kernels = "xla"`: the plain Flax/XLA layers that
GPUs and TPUs run, here on the CPU, so the table shows what kp-jax's CPU forms buy.
`--frameworks` runs a subset.
Each framework runs in its own process, one after another, with every CPU core: a warm-up,
then `rounds` timed runs of `steps` steps; the tables show the best round's images/s and
kp-jax's ratio to each peer. kp-jax runs its own training step (`kp_jax.steps.train_step`).
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # kp_jax, configs

SIZE, KEYPOINTS, LR = 96, 15, 1e-3
MODELS = {  # name -> (kp-jax config, batch, input (h, w, c), keypoints, frameworks)
    "seed": ("seed_96", 128, (SIZE, SIZE, 1), KEYPOINTS,
             ("kp-jax", "kp-jax-xla", "keras", "keras-jit", "pytorch")),
    "default": ("default", 64, (SIZE, SIZE, 1), KEYPOINTS, ("kp-jax", "kp-jax-xla", "pytorch")),
    "hrnet_w32": ("coco_hrnet_w32", 8, (256, 192, 3), 17, ("kp-jax", "pytorch")),
    "vitpose_b": ("coco_vitpose_b", 8, (256, 192, 3), 17, ("kp-jax", "pytorch")),
}


def random_batch(model_name: str):
  """Images in [0, 1] and targets in [0, 1) (sigmoid outputs; times the size for pixels)."""
  _, batch, shape, keypoints, _ = MODELS[model_name]
  rng = np.random.default_rng(0)
  images = rng.uniform(0, 1, (batch, *shape)).astype(np.float32)
  targets = rng.uniform(0, 1, (batch, 2 * keypoints)).astype(np.float32)
  return images, targets


def points_px(model_name: str, targets):
  """Targets as keypoints [B, K, 2] in input pixels."""
  _, _, (height, width, _), keypoints, _ = MODELS[model_name]
  return targets.reshape(len(targets), keypoints, 2) * np.array([width, height], np.float32)


def time_rounds(run_steps, batch: int, steps: int, rounds: int) -> float:
  """Best images/s over `rounds` calls of `run_steps(steps)` (which must finish its work)."""
  run_steps(3)  # warm-up: compilation, allocation
  best = 0.0
  for _ in range(rounds):
    start = time.perf_counter()
    run_steps(steps)
    best = max(best, steps * batch / (time.perf_counter() - start))
  return best


def kp_jax(model_name, steps, rounds, kernels="auto"):
  import importlib

  import jax
  from kp_jax import steps as kp_steps  # `steps` is the step count here
  from kp_jax.models import create_model

  config_name, batch_size, shape, keypoints, _ = MODELS[model_name]
  config = importlib.import_module(f"configs.{config_name}").get_config()
  config.model.kernels = kernels
  if config.model.backbone.name == "vit":
    config.model.backbone.drop_path_rate = 0.0  # as the PyTorch port
  model, head = create_model(config.model, keypoints, shape[:2])
  state = kp_steps.create_train_state(config, model, shape, jax.random.key(0))
  params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))
  # The peers' random images are their network's input already: kp-jax's step takes them
  # as pixels in [0, 1] and normalises them by mean 0, std 1, which leaves them as they are.
  parallel = kp_steps.make_parallel("jit", head, image_stats=(0.0, 1.0))
  images, targets = random_batch(model_name)
  batch = {"image": images, "keypoints": points_px(model_name, targets),
           "visible": np.ones((batch_size, keypoints), np.float32),
           "norm": np.ones((batch_size,), np.float32)}
  batch = parallel.put_batch(batch)
  holder = {"state": parallel.put_state(state)}

  def run_steps(n):
    for _ in range(n):
      holder["state"], metrics = parallel.train_step(holder["state"], batch)
    jax.block_until_ready(metrics)
  return time_rounds(run_steps, batch_size, steps, rounds), f"jax {jax.__version__}", params


def keras(model_name, steps, rounds, jit_compile=False):
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
  batch_size = MODELS[model_name][1]
  images, targets = random_batch(model_name)
  data = tf.data.Dataset.from_tensors((images, targets)).repeat().prefetch(2)
  run_steps = lambda n: model.fit(data, steps_per_epoch=n, epochs=1, verbose=0)
  return (time_rounds(run_steps, batch_size, steps, rounds),
          f"keras {k.__version__}, tf {tf.__version__}", model.count_params())


def torch_seed(nn, size=SIZE, keypoints=KEYPOINTS):
  side = ((size - 2) // 2 - 2) // 2  # after two VALID 3x3 convolutions and 2x2 poolings
  return nn.Sequential(
      nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
      nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
      nn.Flatten(), nn.Linear(64 * side * side, 64), nn.ReLU(),
      nn.Linear(64, 2 * keypoints), nn.Sigmoid())


def torch_default(torch, nn, keypoints=KEYPOINTS):
  """configs/default.py's network: ResNet (v1.5, width 16, one basic block per stage, stride
  32) -> two [4x4 deconv /2 -> BN -> ReLU] to 12x12 maps -> 1x1 conv -> soft-argmax."""
  def bn(c, zero=False):
    layer = nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)
    if zero:
      nn.init.zeros_(layer.weight)  # each block starts as the identity, as in kp-jax
    return layer

  class Block(nn.Module):
    def __init__(self, cin, cout, stride):
      super().__init__()
      self.body = nn.Sequential(
          nn.Conv2d(cin, cout, 3, stride, 1, bias=False), bn(cout), nn.ReLU(),
          nn.Conv2d(cout, cout, 3, 1, 1, bias=False), bn(cout, zero=True))
      self.project = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), bn(cout))
                      if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
      return torch.relu(self.project(x) + self.body(x))

  class SoftArgmax(nn.Module):
    def forward(self, maps):  # [B, K, h, w] -> [B, K, 2] pixels at stride 8
      b, k, h, w = maps.shape
      probs = maps.reshape(b, k, h * w).softmax(-1).reshape(b, k, h, w)
      x = (probs.sum(2) * torch.arange(w, dtype=maps.dtype, device=maps.device)).sum(-1)
      y = (probs.sum(3) * torch.arange(h, dtype=maps.dtype, device=maps.device)).sum(-1)
      return (torch.stack([x, y], -1) + 0.5) * 8 - 0.5

  up = lambda cin: [nn.ConvTranspose2d(cin, 32, 4, 2, 1, bias=False), bn(32), nn.ReLU()]
  return nn.Sequential(
      nn.Conv2d(1, 16, 7, 2, 3, bias=False), bn(16), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
      Block(16, 16, 1), Block(16, 32, 2), Block(32, 64, 2), Block(64, 128, 2),
      *up(128), *up(32), nn.Conv2d(32, keypoints, 1), SoftArgmax())


def torch_vitpose_optimizer(torch, model, depth: int):
  """configs/coco_vitpose_b.py's optimiser in PyTorch: AdamW 5e-4, weight decay 0.1 off
  biases, norms and the position embedding, layer-wise decay 0.75 (MMPose's ids)."""
  groups = {}
  for name, p in model.named_parameters():
    if name.startswith(("backbone.patch_embed", "backbone.pos_embed")):
      layer = 0
    elif name.startswith("backbone.layers."):
      layer = int(name.split(".")[2]) + 1
    else:
      layer = depth + 1
    decay = 0.0 if p.ndim == 1 or name.endswith("pos_embed") else 0.1
    groups.setdefault((layer, decay), []).append(p)
  return torch.optim.AdamW([{"params": ps, "lr": 5e-4 * 0.75 ** (depth + 1 - layer),
                             "weight_decay": decay} for (layer, decay), ps in groups.items()])


def torch_pose_model(torch, model_name):
  """(network, optimiser, clip norm) of the MMPose models, from benchmarks/torch_reference.py."""
  import torch_reference  # noqa: PLC0415 -- benchmarks/, beside this script
  from kp_jax.models import hrnet_shape, vit_shape  # noqa: PLC0415
  if model_name == "hrnet_w32":
    model = torch_reference.HRNet(**hrnet_shape(32), num_keypoints=17)
    return model, torch.optim.Adam(model.parameters(), lr=5e-4), None
  shape = vit_shape("base")
  model = torch_reference.ViTPose(shape, 17, (256, 192))
  return model, torch_vitpose_optimizer(torch, model, shape["depth"]), 1.0


def pytorch(model_name, steps, rounds):
  import torch
  from torch import nn
  torch.set_num_threads(os.cpu_count())
  batch_size = MODELS[model_name][1]
  images, targets = random_batch(model_name)
  x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # NCHW, PyTorch's layout
  clip = None
  if model_name == "seed":
    model, y = torch_seed(nn), torch.from_numpy(targets)
    loss_fn = nn.functional.mse_loss
  elif model_name == "default":  # kp-jax's L1: |error| summed over x and y, mean over keypoints
    model, y = torch_default(torch, nn), torch.from_numpy(points_px(model_name, targets))
    loss_fn = lambda pred, y: (pred - y).abs().sum(-1).mean()
  else:  # heatmap MSE against Gaussian targets at stride 4
    model, optimizer, clip = torch_pose_model(torch, model_name)
    from kp_jax import heatmaps  # noqa: PLC0415 -- kp-jax's own targets, made once
    height, width, _ = MODELS[model_name][2]
    maps = heatmaps.gaussian_maps(points_px(model_name, targets), (height // 4, width // 4), 4,
                                  2.0)
    y = torch.from_numpy(np.asarray(maps).transpose(0, 3, 1, 2).copy())
    loss_fn = nn.functional.mse_loss
  if model_name in ("seed", "default"):
    optimizer = torch.optim.RMSprop(model.parameters(), lr=LR, alpha=0.9, eps=1e-7)
  model.train()

  def run_steps(n):
    for _ in range(n):
      optimizer.zero_grad()
      loss = loss_fn(model(x), y)
      loss.backward()
      if clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
      optimizer.step()
  params = sum(p.numel() for p in model.parameters())
  return time_rounds(run_steps, batch_size, steps, rounds), f"torch {torch.__version__}", params


RUNNERS = {"kp-jax": kp_jax, "keras": keras, "pytorch": pytorch,
           # the plain Flax/XLA layers that accelerators run, on this CPU
           "kp-jax-xla": lambda m, s, r: kp_jax(m, s, r, kernels="xla"),
           "keras-jit": lambda m, s, r: keras(m, s, r, jit_compile=True)}


def run_model(model_name, args):
  """Each framework's {images_per_sec, version, params}, each from its own process."""
  results = {}
  for framework in (f for f in MODELS[model_name][-1] if f in args.frameworks):
    out = subprocess.run([sys.executable, __file__, "--only", framework, "--models", model_name,
                          "--steps", str(args.steps), "--rounds", str(args.rounds)],
                         capture_output=True, text=True)
    if out.returncode:
      print(f"{framework} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
      continue
    results[framework] = json.loads(out.stdout.strip().splitlines()[-1])
  return results


def print_table(model_name, results):
  config_name, batch_size, shape, _, _ = MODELS[model_name]
  print(f"\n{model_name} (configs/{config_name}.py's network), {'x'.join(map(str, shape))}, "
        f"batch {batch_size}; {os.cpu_count()} CPU cores\n")
  print("| framework | version | params | images/s | kp-jax / this |")
  print("|---|---|---|---|---|")
  ours = results.get("kp-jax", {}).get("images_per_sec")
  for framework, r in results.items():
    ratio = f"{ours / r['images_per_sec']:.2f}" if ours else "-"
    print(f"| {framework} | {r['version']} | {r['params']:,} | {r['images_per_sec']:.3g} | "
          f"{ratio} |")
  peers = [r["images_per_sec"] for f, r in results.items() if not f.startswith("kp-jax")]
  if ours and peers:
    print(f"\nkp-jax / best peer: {ours / max(peers):.2f}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["seed", "default"])
  parser.add_argument("--steps", type=int, default=40)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--frameworks", nargs="+", choices=sorted(RUNNERS), default=sorted(RUNNERS))
  parser.add_argument("--only", choices=sorted(RUNNERS),
                      help="run one framework on the first of --models, print JSON")
  args = parser.parse_args()
  if args.only and args.only not in MODELS[args.models[0]][-1]:
    parser.error(f"--only {args.only}: no {args.only} port of {args.models[0]!r}; "
                 f"choose one of {MODELS[args.models[0]][-1]}.")
  if args.only:
    images_per_sec, version, params = RUNNERS[args.only](args.models[0], args.steps, args.rounds)
    print(json.dumps({"framework": args.only, "images_per_sec": images_per_sec,
                      "version": version, "params": params}))
    return
  for model_name in args.models:
    print_table(model_name, run_model(model_name, args))


if __name__ == "__main__":
  main()
