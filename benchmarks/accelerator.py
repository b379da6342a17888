"""Training throughput on an accelerator: images/s, step time and MFU of kp-jax's train step.

  python benchmarks/accelerator.py [--configs seed default resnet18_heatmap coco_person
      coco_hrnet_w32 coco_vitpose_b]
      [--dtypes float32 bfloat16] [--batch_size N] [--steps 20] [--platform gpu|tpu|cpu]
      [--json results.json]

Needs only jax (with its accelerator plugin), flax, optax and ml_collections: no TensorFlow
and no data. The batches are random and made on the devices, split over every local device
as training splits them; the step is kp-jax's own (`steps.make_parallel("jit")`: forward,
loss, gradients, optimiser update). A config is a name in configs/ or a path; any config
works (`--keypoints` where its source does not say how many keypoints it has).

Reported per network and dtype: images/s and milliseconds per step (the mean of `--steps`
steps after two warm-up steps), the compiled step's FLOPs per device (XLA's cost analysis)
and MFU = FLOPs / step time / the device's dense peak (PEAK_TFLOPS; `--peak_tflops`
otherwise; none on CPU). float32 rows use the TF32 peak on NVIDIA GPUs, since XLA's default
precision computes float32 convolutions in TF32 there. Where torch with CUDA is importable,
a PyTorch row follows for the same network (torchvision for resnet18_heatmap;
kp_jax/torch_reference.py's MMPose modules for SimpleBaseline, HRNet-W32 and ViTPose-B),
channels-last, with TF32 or bf16 autocast.
"""

import argparse
import functools
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from config_shapes import config_name, input_shape, keypoint_count, load_config
from kp_jax import steps
from kp_jax.models import create_model

# Dense peak TFLOP/s per device (bf16, and the rate float32 convolutions run at by default),
# matched against `device_kind` in order.
PEAK_TFLOPS = (
    ("H200", {"bfloat16": 989.4, "float32": 494.7}),
    ("H100", {"bfloat16": 989.4, "float32": 494.7}),
    ("A100", {"bfloat16": 312.0, "float32": 156.0}),
    ("L4", {"bfloat16": 121.0, "float32": 60.0}),
    ("TPU v6", {"bfloat16": 918.0, "float32": 918.0}),  # TPUs: f32 matmuls run as bf16 passes
    ("TPU v5p", {"bfloat16": 459.0, "float32": 459.0}),
    ("TPU v5", {"bfloat16": 197.0, "float32": 197.0}),  # v5e ("TPU v5 lite")
    ("TPU v4", {"bfloat16": 275.0, "float32": 275.0}),
)
# Global batches that keep a large accelerator busy; on CPU the config's own batch size.
ACCELERATOR_BATCH = {"seed": 1024, "default": 512, "resnet18_heatmap": 256, "coco_person": 256,
                     "coco_hrnet_w32": 256, "coco_vitpose_b": 256}


def peak_tflops(dtype: str, override: float | None) -> float | None:
  if override:
    return override
  kind = jax.devices()[0].device_kind
  return next((peaks[dtype] for name, peaks in PEAK_TFLOPS if name in kind), None)


def random_batch(batch_size: int, shape, keypoints: int):
  """A training batch made on the devices, split over them along the batch axis."""
  sharding = NamedSharding(Mesh(np.array(jax.devices()), ("data",)), PartitionSpec("data"))

  @functools.partial(jax.jit, out_shardings=sharding)
  def make(key):
    image_key, point_key = jax.random.split(key)
    size = jnp.array([shape[1], shape[0]], jnp.float32)
    return {"image": jax.random.uniform(image_key, (batch_size, *shape)),
            "keypoints": jax.random.uniform(point_key, (batch_size, keypoints, 2)) * size,
            "visible": jnp.ones((batch_size, keypoints)),
            "norm": jnp.ones((batch_size,))}
  return make(jax.random.key(0))


def time_kp_jax(config, dtype: str, batch_size: int, keypoints: int, num_steps: int) -> dict:
  config.model.dtype = dtype
  shape = input_shape(config.data)
  model, head = create_model(config.model, keypoints, shape[:2])
  parallel = steps.make_parallel("jit", head)
  state = parallel.put_state(
      steps.create_train_state(config, model, shape, jax.random.key(0)))
  batch = random_batch(batch_size, shape, keypoints)
  cost = parallel.train_step.lower(state, batch).compile().cost_analysis()
  flops = (cost[0] if isinstance(cost, list) else cost)["flops"]
  for _ in range(2):  # compilation, allocation
    state, _ = parallel.train_step(state, batch)
  jax.block_until_ready(state)
  start = time.perf_counter()
  for _ in range(num_steps):
    state, _ = parallel.train_step(state, batch)
  jax.block_until_ready(state)
  seconds = (time.perf_counter() - start) / num_steps
  return {"seconds": seconds, "flops": flops}


def torch_network(name: str, config, keypoints: int, channels: int):
  """The config's network in PyTorch, or None where there is no port of it."""
  import torch  # noqa: PLC0415 -- only the PyTorch rows need it
  from torch import nn  # noqa: PLC0415

  import peers  # noqa: PLC0415 -- benchmarks/, beside this script
  from kp_jax import torch_reference  # noqa: PLC0415
  from kp_jax.models import hrnet_shape, vit_shape  # noqa: PLC0415
  if name == "default":
    return peers.torch_default(torch, nn, keypoints)
  if name == "seed":
    return peers.torch_seed(nn, config.data.image_size, keypoints)
  if name == "coco_person":
    return torch_reference.SimpleBaseline(keypoints)
  if name == "coco_hrnet_w32":
    return torch_reference.HRNet(**hrnet_shape(32), num_keypoints=keypoints)
  if name == "coco_vitpose_b":
    return torch_reference.ViTPose(vit_shape("base"), keypoints, tuple(config.data.input_size))
  if name != "resnet18_heatmap":
    return None
  import torchvision  # noqa: PLC0415
  trunk = torchvision.models.resnet18()
  trunk.conv1 = nn.Conv2d(channels, 64, 7, 2, 3, bias=False)
  layers = [*list(trunk.children())[:-2]]
  features = trunk.fc.in_features
  for _ in range(3):  # SimpleBaseline: three 4x4 deconvolutions of 256 to stride 4
    layers += [nn.ConvTranspose2d(features, 256, 4, 2, 1, bias=False), nn.BatchNorm2d(256),
               nn.ReLU()]
    features = 256
  return nn.Sequential(*layers, nn.Conv2d(256, keypoints, 1))


def time_pytorch(name, config, dtype, batch_size, keypoints, num_steps) -> dict | None:
  try:
    import torch  # noqa: PLC0415
  except ImportError:
    return None
  if not torch.cuda.is_available():
    return None
  shape = input_shape(config.data)
  try:
    network = torch_network(name, config, keypoints, shape[2])
  except ImportError:  # torchvision missing
    return None
  if network is None:
    return None
  torch.backends.cudnn.benchmark = True
  torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
  network = network.cuda().to(memory_format=torch.channels_last).train()
  optimizer = torch.optim.RMSprop(network.parameters(), lr=1e-3)
  x = torch.rand(batch_size, shape[2], shape[0], shape[1], device="cuda").to(
      memory_format=torch.channels_last)

  def step():
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
      out = network(x)
    out.float().square().mean().backward()
    optimizer.step()

  for _ in range(2):
    step()
  torch.cuda.synchronize()
  start = time.perf_counter()
  for _ in range(num_steps):
    step()
  torch.cuda.synchronize()
  return {"seconds": (time.perf_counter() - start) / num_steps, "flops": None,
          "version": torch.__version__}


def row(framework, name, dtype, batch_size, timing, peak) -> dict:
  flops = timing["flops"]
  return {"framework": framework, "config": name, "dtype": dtype, "batch": batch_size,
          "images_per_sec": batch_size / timing["seconds"], "step_ms": 1e3 * timing["seconds"],
          "gflops_per_step": flops / 1e9 if flops else None,
          "mfu": flops / timing["seconds"] / (peak * 1e12) if flops and peak else None}


def print_table(rows, device: str):
  print(f"\n{device}; jax {jax.__version__}")
  print("| framework | config | dtype | batch | images/s | ms/step | GFLOP/step/device | MFU |")
  print("| --- | --- | --- | --- | --- | --- | --- | --- |")
  for r in rows:
    gflops = f"{r['gflops_per_step']:.3g}" if r["gflops_per_step"] else "-"
    mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "-"
    print(f"| {r['framework']} | {r['config']} | {r['dtype']} | {r['batch']} "
          f"| {r['images_per_sec']:.1f} | {r['step_ms']:.2f} | {gflops} | {mfu} |")


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--configs", nargs="+",
                      default=["seed", "default", "resnet18_heatmap", "coco_person",
                               "coco_hrnet_w32", "coco_vitpose_b"])
  parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
  parser.add_argument("--batch_size", type=int, help="global; default: see ACCELERATOR_BATCH")
  parser.add_argument("--keypoints", type=int, help="for configs whose source does not say")
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--platform", help="jax platform (gpu, tpu, cpu); default: JAX's choice")
  parser.add_argument("--peak_tflops", type=float, help="per device, when not in PEAK_TFLOPS")
  parser.add_argument("--json", help="also write the rows here")
  parser.add_argument("--skip", nargs="+", default=[], metavar="CONFIG:DTYPE",
                      help="combinations not to run, e.g. resnet18_heatmap:bfloat16")
  args = parser.parse_args(argv)
  if args.platform:
    jax.config.update("jax_platforms", args.platform)
  on_cpu = jax.default_backend() == "cpu"
  device = f"{jax.device_count()} x {jax.devices()[0].device_kind} ({jax.default_backend()})"
  rows = []
  for name in args.configs:
    config = load_config(name)
    short_name = config_name(name)
    batch_size = args.batch_size or (config.batch_size if on_cpu else
                                     ACCELERATOR_BATCH.get(short_name, 4 * config.batch_size))
    keypoints = keypoint_count(config.data, args.keypoints)
    for dtype in args.dtypes:
      if f"{short_name}:{dtype}" in args.skip:
        continue
      peak = peak_tflops(dtype, args.peak_tflops)
      timing = time_kp_jax(config, dtype, batch_size, keypoints, args.steps)
      new_rows = [row("kp-jax", short_name, dtype, batch_size, timing, peak)]
      torch_timing = time_pytorch(short_name, config, dtype, batch_size, keypoints, args.steps)
      if torch_timing:
        new_rows.append(row(f"pytorch {torch_timing['version']}", short_name, dtype,
                            batch_size, torch_timing, None))
      for new in new_rows:
        print(json.dumps(new), flush=True)
      rows += new_rows
  print_table(rows, device)
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"device": device, "rows": rows}, f, indent=1)


if __name__ == "__main__":
  main()
