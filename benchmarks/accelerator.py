"""Training throughput on an accelerator: kp-jax's train step beside PyTorch's, eager and
under torch.compile, with compile seconds and MFU from a backend-independent count.

  python benchmarks/accelerator.py [--configs coco_vitpose_b coco_hrnet_w32 coco_person
      resnet18_heatmap default seed] [--dtypes bfloat16 float32]
      [--frameworks kp-jax pytorch pytorch-compile] [--batch_size N] [--steps 20]
      [--budget_s S] [--row_timeout_s S] [--json rows.jsonl] [--counts_from rows.jsonl]
      [--log FILE] [--profile_steps N]
      [--compilation_cache_dir DIR] [--xla_flags FLAGS] [--platform gpu|tpu|cpu]

Needs only jax (with its accelerator plugin), flax, optax and ml_collections, and torch for
the PyTorch rows: no TensorFlow and no data. A config is a name in configs/ or a path, with
optional overrides after a colon (`coco_vitpose_b:model.backbone.attention=xla`).

Rows. Each (config, dtype, framework) runs in its own process with a time limit, one after
another, each with the whole accelerator: a crash or a time-out becomes a row that says so,
and the next row starts. A kp-jax row prints its step's compile stages as they end, so one
that ends before reporting says how far its compile got ("in XLA's compile (train step:
trace 3.8 s, lower 1.1 s)"). Rows print as they finish; `--json` appends each as a JSON line.
`--budget_s` stops starting rows in time: a row's limit is cut to what is left of the budget,
and no row starts with less than `MIN_ROW_SECONDS` left.

- kp-jax: its own train step (`steps.make_parallel("jit")`: forward, loss with Gaussian
  targets made in the step, gradients, the config's optimiser), on random batches (uint8
  pixels, normalised in the step, as the input pipeline's) made on the devices and split over
  them, from parameters drawn on the host (`host_drawn_state`). JAX's persistent compilation
  cache is on (kp_jax/compilation_cache.py), so a second run of the same rows compiles from it.
- pytorch / pytorch-compile: the same network (torchvision's ResNet-18 for resnet18_heatmap;
  benchmarks/torch_reference.py's MMPose modules for SimpleBaseline, HRNet-W32 and ViTPose-B;
  benchmarks/peers.py's ports of the seed CNN and configs/default.py), the same batch (uint8
  pixels normalised in the step), dtype (bf16 autocast), loss shape (heatmap MSE against
  Gaussian targets, or the coordinate loss) and optimiser family (fused Adam/AdamW, RMSprop;
  clipping where the config clips), channels-last, cuDNN autotuning on; eager, and the
  network under `torch.compile`.

Reported: images/s and ms per step (the mean of `--steps` steps after warm-up steps),
`compile_seconds` (the first step's wall time less one step: tracing, compiling, autotuning;
torch.compile's compile for pytorch-compile, cuDNN's autotuning for eager), kp-jax's
`cache_hits` (programs read back from the compilation cache) and, by JAX's own timings of
the train step's compile, `trace_seconds`, `lower_seconds` and `xla_seconds` (XLA's compile
and autotuning, or reading the program back from the cache), and the
multiply-adds per image counted from the program (kp_jax/flops.py, on the CPU, the same on
every backend): `forward_gmacs_per_image` and `train_gmacs_per_image` (one training step;
about three forwards). MFU = 2 FLOPs per multiply-add x train_gmacs_per_image x images/s /
the device's dense peak (PEAK_TFLOPS; `--peak_tflops` otherwise). float32 rows use the TF32
peak on NVIDIA GPUs, where XLA and PyTorch compute float32 matrix products in TF32 by default.

With `--profile_steps N`, each kp-jax row then traces N more steps (profile_step.py's
`profiled`): `profile` holds its busiest lanes (a GPU's streams), each with its busy ms a step
and its kernels by time (and by XLA op, where the trace names them), and the busiest lane's
print after the table. A row reports its timings before it profiles, so a profiler that fails
or hangs costs it nothing.
"""

import argparse
import ast
import collections
import functools
import json
import os
import re
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # config_shapes, peers

from config_shapes import config_name, input_shape, keypoint_count, load_config  # noqa: E402

# Dense peak TFLOP/s per device (bf16, and the rate float32 matrix products run at by default),
# matched against the device's name in order: the PCIe and NVL cards run at lower clocks than
# the SXM parts, which name no form ("NVIDIA H100 80GB HBM3", "NVIDIA H200").
PEAK_TFLOPS = (
    ("H100 PCIe", {"bfloat16": 756.5, "float32": 378.0}),
    ("NVL", {"bfloat16": 835.5, "float32": 417.5}),  # H100 NVL, H200 NVL
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
FRAMEWORKS = ("kp-jax", "pytorch", "pytorch-compile")
MIN_ROW_SECONDS = 20
WARMUP_STEPS = 3
ROW_PREFIX = "ROW "  # a row process's result line on stdout (the last one counts)
STAGE_PREFIX = "STAGE "  # a row process's line for each compile stage of its step, as it ends
PROFILE_TOP = 12  # kernels a lane of a row's profile lists
COMPILE_STAGES = {"trace_seconds": "/jax/core/compile/jaxpr_trace_duration",  # JAX's events
                  "lower_seconds": "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "xla_seconds": "/jax/core/compile/backend_compile_duration"}


def peak_tflops(device: str, dtype: str, override: float | None) -> float | None:
  if override:
    return override
  return next((peaks[dtype] for name, peaks in PEAK_TFLOPS if name in device), None)


# ---------------------------------------------------------------------------------------------
# Configs: "name[:key=value,key=value]".


def parse_value(text: str):
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text  # a bare string


def config_of(spec: str):
  """The config of `spec` ("name" or "name:key=value,..."), with its overrides applied."""
  name, _, overrides = spec.partition(":")
  config = load_config(name)
  for item in filter(None, overrides.split(",")):
    key, _, value = item.partition("=")
    *path, last = key.split(".")
    node = config
    for part in path:
      node = node[part]
    node[last] = parse_value(value)
  return config


def short_name(spec: str) -> str:
  return config_name(spec.partition(":")[0])


def row_batch(spec: str, config, override: int | None, on_cpu: bool) -> int:
  short = short_name(spec)
  if override:
    return override
  return config.batch_size if on_cpu else ACCELERATOR_BATCH.get(short, 4 * config.batch_size)


# ---------------------------------------------------------------------------------------------
# One row, in its own process.


def time_steps(step, num_steps: int, synchronize) -> dict:
  """Compile seconds (the first call less one step) and seconds per step of `step()`."""
  start = time.perf_counter()
  step()
  synchronize()
  first = time.perf_counter() - start
  for _ in range(WARMUP_STEPS - 1):
    step()
  synchronize()
  start = time.perf_counter()
  for _ in range(num_steps):
    step()
  synchronize()
  seconds = (time.perf_counter() - start) / num_steps
  return {"seconds": seconds, "compile_seconds": max(first - seconds, 0.0)}


def random_batch(batch_size: int, shape, keypoints: int):
  """A training batch made on the devices, split over them along the batch axis."""
  import jax  # noqa: PLC0415 -- row processes only
  import jax.numpy as jnp  # noqa: PLC0415
  import numpy as np  # noqa: PLC0415
  from jax.sharding import Mesh, NamedSharding, PartitionSpec  # noqa: PLC0415
  sharding = NamedSharding(Mesh(np.array(jax.devices()), ("data",)), PartitionSpec("data"))

  @functools.partial(jax.jit, out_shardings=sharding)
  def make(key):
    image_key, point_key = jax.random.split(key)
    size = jnp.array([shape[1], shape[0]], jnp.float32)
    return {"image": jax.random.bits(image_key, (batch_size, *shape), jnp.uint8),  # pixels
            "keypoints": jax.random.uniform(point_key, (batch_size, keypoints, 2)) * size,
            "visible": jnp.ones((batch_size, keypoints)),
            "norm": jnp.ones((batch_size,))}
  return make(jax.random.key(0))


def host_drawn_state(config, model, shape):
  """A training state of the network's shapes whose parameters NumPy draws on the host
  (normal, standard deviation 0.02; BatchNorm statistics 1), where `steps.create_train_state`
  runs the network's initialisers: a step's speed does not depend on the values, while
  compiling the initialisers (HRNet-W32's: ~40 s on a CPU, benchmarks/compile_time.py --state)
  is no part of the step and ran inside the row's time limit."""
  import jax  # noqa: PLC0415
  import numpy as np  # noqa: PLC0415

  from kp_jax import steps  # noqa: PLC0415
  shapes = steps.state_shapes(config, model, shape)
  rng = np.random.default_rng(0)
  variables = {"params": jax.tree.map(
      lambda v: (0.02 * rng.standard_normal(v.shape)).astype(v.dtype), shapes.params),
      "batch_stats": jax.tree.map(lambda v: np.ones(v.shape, v.dtype), shapes.batch_stats)}
  return steps.train_state_around(config, model, variables)


def run_kp_jax(config, dtype: str, batch_size: int, keypoints: int, num_steps: int,
               cache_dir: str | None, report, profile_steps: int = 0) -> None:
  """Reports the row's result, and with `profile_steps` reports it again with its profile."""
  import jax  # noqa: PLC0415

  from kp_jax import compilation_cache, steps  # noqa: PLC0415
  from kp_jax.data import pixels  # noqa: PLC0415
  from kp_jax.models import create_model  # noqa: PLC0415
  compilation_cache.enable(cache_dir)
  cache_hits = []  # programs read back from the persistent cache: a warm row's are all of them
  jax.monitoring.register_event_listener(
      lambda event, **_: cache_hits.append(event) if event.endswith("/cache_hits") else None)
  stages = collections.Counter()  # JAX's own timings of tracing, lowering and XLA's compile
  stage_of = {event: key for key, event in COMPILE_STAGES.items()}
  watching = []  # non-empty once only the train step compiles

  def on_stage(event, seconds, **_):
    stages.update({event: seconds})
    if watching and event in stage_of:  # now: a row killed in XLA's compile says how far it got
      print(STAGE_PREFIX + json.dumps({stage_of[event]: seconds}), flush=True)
  jax.monitoring.register_event_duration_secs_listener(on_stage)
  config.model.dtype = dtype
  shape = input_shape(config.data)
  model, head = create_model(config.model, keypoints, shape[:2])
  parallel = steps.make_parallel("jit", head, ema_decay=config.optimizer.ema_decay,
                                 seed=config.seed,
                                 image_stats=pixels.normalisation(config.data, shape[2]))
  holder = {"state": parallel.put_state(host_drawn_state(config, model, shape))}
  batch = random_batch(batch_size, shape, keypoints)

  def step():
    holder["state"], holder["metrics"] = parallel.train_step(holder["state"], batch)

  synchronize = lambda: jax.block_until_ready(holder)
  stages.clear()  # from here on, only the train step compiles
  watching.append(True)
  timing = time_steps(step, num_steps, synchronize)
  result = {**timing, "cache_hits": len(cache_hits),
            **{key: stages.get(event) for key, event in COMPILE_STAGES.items()},  # None: unseen
            "version": f"jax {jax.__version__}",
            "device": f"{jax.device_count()} x {jax.devices()[0].device_kind} "
                      f"({jax.default_backend()})"}
  report(result)
  if profile_steps:
    import profile_step  # noqa: PLC0415 -- benchmarks/, beside this script
    report({**result, "profile": profile_step.profiled(step, profile_steps, synchronize,
                                                        PROFILE_TOP)})


def torch_network(name: str, config, keypoints: int, channels: int):
  """The config's network in PyTorch, or None where there is no port of it."""
  import torch  # noqa: PLC0415 -- only the PyTorch rows need it
  from torch import nn  # noqa: PLC0415

  import peers  # noqa: PLC0415 -- benchmarks/, beside this script
  import torch_reference  # noqa: PLC0415 -- benchmarks/, beside this script
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


def torch_optimizer(torch, network, optimizer_config, fused: bool):
  """The config's optimiser family at PyTorch's fastest (fused Adam/AdamW on CUDA; RMSprop and
  the others foreach, PyTorch's own default for CUDA tensors)."""
  params, o = network.parameters(), optimizer_config
  if o.name == "rmsprop":
    return torch.optim.RMSprop(params, lr=o.learning_rate, alpha=o.rmsprop_decay, eps=o.eps)
  if o.name == "adamw":
    return torch.optim.AdamW(params, lr=o.learning_rate, eps=o.eps,
                             weight_decay=o.weight_decay, fused=fused)
  return torch.optim.Adam(params, lr=o.learning_rate, eps=o.eps, fused=fused)


def torch_loss(torch, config, keypoints: int, batch_size: int, shape, device: str):
  """(loss(outputs), made once) of the config's head, on random keypoints: heatmap MSE against
  kp-jax's own Gaussian targets, or the coordinate loss in pixels."""
  import numpy as np  # noqa: PLC0415

  from kp_jax import heatmaps  # noqa: PLC0415
  height, width, _ = shape
  rng = np.random.default_rng(0)
  points = rng.uniform(0, 1, (batch_size, keypoints, 2)).astype(np.float32) * [width, height]
  head = config.model.head
  if head.name == "heatmap":
    stride = head.stride
    maps = heatmaps.gaussian_maps(points, (height // stride, width // stride), stride,
                                  head.sigma)
    target = torch.from_numpy(np.asarray(maps).transpose(0, 3, 1, 2).copy()).to(device)
    return lambda out: (out.float() - target).square().mean()
  target = torch.from_numpy(points).to(device)
  if head.name == "regression":  # sigmoid coordinates -> pixels, squared error
    size = torch.tensor([width, height], device=device)
    return lambda out: ((out.float().reshape(batch_size, keypoints, 2) * size - 0.5 - target)
                        .square().sum(-1).mean())
  return lambda out: (out.float() - target).abs().sum(-1).mean()  # integral: L1 in pixels


def torch_train_step(name, config, dtype, batch_size, keypoints, device: str, compiled: bool):
  """(one training step of the config's PyTorch peer on `device`, a closure; its network), or
  None where there is no port of it. Every tensor is made on `device`: on "meta" (no memory,
  no compute) a tensor left on the CPU fails the step, as it would on CUDA."""
  import contextlib  # noqa: PLC0415

  import numpy as np  # noqa: PLC0415
  import torch  # noqa: PLC0415

  from kp_jax.data import pixels  # noqa: PLC0415
  shape = input_shape(config.data)
  network = torch_network(name, config, keypoints, shape[2])
  if network is None:
    return None
  loss_fn = torch_loss(torch, config, keypoints, batch_size, shape, device)
  network = network.to(device, memory_format=torch.channels_last).train()
  optimizer = torch_optimizer(torch, network, config.optimizer, fused=device == "cuda")
  forward = torch.compile(network) if compiled else network
  clip = config.optimizer.grad_clip_norm
  # uint8 pixels normalised in the step, as kp-jax's batches are (kp_jax/data/pixels.py).
  x = torch.randint(0, 256, (batch_size, shape[2], shape[0], shape[1]), dtype=torch.uint8,
                    device=device).to(memory_format=torch.channels_last)
  mean, std = (torch.tensor(np.reshape(value, (-1, 1, 1)), device=device)
               for value in pixels.normalisation(config.data, shape[2]))

  def step():
    optimizer.zero_grad(set_to_none=True)
    with (torch.autocast(device, dtype=torch.bfloat16) if dtype == "bfloat16"
          else contextlib.nullcontext()):
      out = forward((x.float() / 255 - mean) / std)
    loss_fn(out).backward()
    if clip:  # foreach on CUDA, PyTorch's default there
      torch.nn.utils.clip_grad_norm_(network.parameters(), clip)
    optimizer.step()
  return step, network


def run_pytorch(name, config, dtype, batch_size, keypoints, num_steps, compiled) -> dict:
  import torch  # noqa: PLC0415
  cuda = torch.cuda.is_available()
  device = "cuda" if cuda else "cpu"  # the CPU for tests
  torch.backends.cudnn.benchmark = True
  torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
  peer = torch_train_step(name, config, dtype, batch_size, keypoints, device, compiled)
  if peer is None:
    return {"status": f"skipped: no PyTorch port of {name}"}
  step, _ = peer
  timing = time_steps(step, num_steps, torch.cuda.synchronize if cuda else lambda: None)
  name = torch.cuda.get_device_name() if cuda else "cpu"
  return {**timing, "version": f"torch {torch.__version__}", "device": f"1 x {name} ({device})"}


def run_row(args, report) -> None:
  import jax  # noqa: PLC0415
  spec, dtype, framework = args.row
  # JAX runs on the accelerator in kp-jax's rows; in PyTorch's it only makes the targets.
  platform = args.platform if framework == "kp-jax" else "cpu"
  if platform:
    jax.config.update("jax_platforms", platform)
  config = config_of(spec)
  shape = input_shape(config.data)
  keypoints = keypoint_count(config.data, args.keypoints)
  if framework == "kp-jax":
    batch_size = row_batch(spec, config, args.batch_size, jax.default_backend() == "cpu")
  else:
    import torch  # noqa: PLC0415 -- only the PyTorch rows need it
    # The batch of kp-jax's row on this machine: an accelerator's, or on the CPU the config's.
    batch_size = row_batch(spec, config, args.batch_size, on_cpu=not torch.cuda.is_available())
  done = lambda result: report({**result, "batch": batch_size, "input": list(shape)})
  if framework == "kp-jax":
    run_kp_jax(config, dtype, batch_size, keypoints, args.steps, args.compilation_cache_dir,
               done, args.profile_steps)
  else:
    done(run_pytorch(short_name(spec), config, dtype, batch_size, keypoints, args.steps,
                     compiled=framework == "pytorch-compile"))


# ---------------------------------------------------------------------------------------------
# The parent: counts, row processes, the table.


def count_macs(spec: str, keypoints: int | None) -> dict:
  """Multiply-adds per image (kp_jax/flops.py), traced in this process (on the CPU)."""
  from kp_jax import flops  # noqa: PLC0415
  config = config_of(spec)
  counts = flops.model_macs(config, keypoint_count(config.data, keypoints),
                            input_shape(config.data))
  return {"forward_gmacs_per_image": counts["forward"] / 1e9,
          "train_gmacs_per_image": counts["train_step"] / 1e9}


def earlier_counts(path: str | None) -> dict:
  """{config: its multiply-adds} from an earlier run's --json rows (tracing HRNet-W32 to count
  them takes seconds of a warm pass's budget)."""
  if not path:
    return {}
  keys = ("forward_gmacs_per_image", "train_gmacs_per_image")
  with open(path) as f:
    rows = [json.loads(line) for line in f]
  return {r["config"]: {k: r[k] for k in keys} for r in rows if all(k in r for k in keys)}


def row_command(args, spec, dtype, framework) -> list:
  command = [sys.executable, os.path.abspath(__file__), "--row", spec, dtype, framework,
             "--steps", str(args.steps)]
  for flag in ("batch_size", "keypoints", "platform", "compilation_cache_dir",
               "profile_steps"):
    if getattr(args, flag) is not None:
      command += [f"--{flag}", str(getattr(args, flag))]
  return command


def failure(returncode: int, stderr: str) -> str:
  """One line saying how a row's process ended: a Python exception's last line, else XLA's
  first error line (later ones are often its consequences), else the signal."""
  lines = [line.strip() for line in stderr.splitlines() if line.strip()]
  exceptions = [line for line in lines if re.match(r"[\w.]*(Error|Exception)\b", line)]
  logged = [line for line in lines if re.match(r"[EF]\d{4} ", line)]
  cause = (exceptions[-1:] or logged[:1] or lines[-1:] or [""])[0][:400]
  how = (f"killed by {signal.Signals(-returncode).name}" if returncode < 0
         else f"exit {returncode}")
  return f"crashed ({how}): {cause}" if cause else f"crashed ({how})"


def compile_progress(stdout: str) -> dict:
  """The compile stages of its train step that a row process printed as they ended, summed,
  and a word on how far it got: {} where it printed none (it never reached its step)."""
  stages = collections.Counter()
  for line in stdout.splitlines():
    if line.startswith(STAGE_PREFIX):
      stages.update(json.loads(line[len(STAGE_PREFIX):]))
  if not stages:
    return {}
  done = ", ".join(f"{key.removesuffix('_seconds')} {seconds:.1f} s"
                   for key, seconds in stages.items())
  where = "after its compile" if "xla_seconds" in stages else "in XLA's compile"
  return {**stages, "progress": f"{where} (train step: {done})"}


def run_in_process(args, spec, dtype, framework, limit_s: float) -> tuple[dict, str]:
  """(the row's result or {"status": why not}, its stdout and stderr)."""
  env = dict(os.environ)
  if args.xla_flags:
    env["XLA_FLAGS"] = " ".join(filter(None, [env.get("XLA_FLAGS"), args.xla_flags]))
  process = subprocess.Popen(row_command(args, spec, dtype, framework), cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)  # its own group: compile workers go too
  try:
    stdout, stderr = process.communicate(timeout=limit_s)
    ended = failure(process.returncode, stderr) if process.returncode else None
  except subprocess.TimeoutExpired:
    os.killpg(process.pid, signal.SIGKILL)
    stdout, stderr = process.communicate()
    ended = f"timed out after {limit_s:.0f} s"
  results = [line[len(ROW_PREFIX):] for line in stdout.splitlines()
             if line.startswith(ROW_PREFIX)]
  if not results:  # with how far its step's compile got, if it got to its step
    progress = compile_progress(stdout)
    status = ended or failure(process.returncode, stderr)
    if progress:
      status = f"{status}, {progress.pop('progress')}"
    return {"status": status, **progress}, stdout + stderr
  row = {"status": "ok", **json.loads(results[-1])}  # or its own status
  if ended:  # after reporting its timings: in the profile, if it was asked for one
    row["profile" if framework == "kp-jax" and args.profile_steps else "after_timings"] = ended
  return row, stdout + stderr


def finish_row(row: dict, counts: dict, peak_override) -> dict:
  row = {**row, **counts}
  if row["status"] != "ok":
    return row
  row["images_per_sec"] = row["batch"] / row["seconds"]
  row["step_ms"] = 1e3 * row.pop("seconds")
  peak = peak_tflops(row["device"], row["dtype"], peak_override)
  macs = counts.get("train_gmacs_per_image")
  row["mfu"] = 2e9 * macs * row["images_per_sec"] / (peak * 1e12) if peak and macs else None
  return row


HEADER = ("| framework | config | dtype | batch | images/s | ms/step | compile s | "
          "fwd GMAC/img | MFU | status |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- "
          "| --- |")


def table_line(r: dict) -> str:
  number = lambda key, fmt: format(r[key], fmt) if r.get(key) is not None else "-"
  speed = ",.0f" if (r.get("images_per_sec") or 0) >= 100 else ".3g"
  mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") is not None else "-"
  config = f"{r['config']} ({r['xla_flags']})" if r.get("xla_flags") else r["config"]
  return (f"| {r['framework']} | {config} | {r['dtype']} | {r.get('batch', '-')} "
          f"| {number('images_per_sec', speed)} | {number('step_ms', '.2f')} "
          f"| {number('compile_seconds', '.1f')} | {number('forward_gmacs_per_image', '.3f')} "
          f"| {mfu} | {r['status']} |")


def profile_lines(r: dict) -> list[str]:
  """A row's profile: its busiest lane's kernels by kind, and by XLA op where the trace names
  them; or why there is none."""
  if "profile" not in r:
    return []
  title = f"{r['framework']} {r['config']} {r['dtype']} profile"
  if isinstance(r["profile"], str):
    return [f"{title}: {r['profile']}"]
  lines = [f"{title} (a step: {r['step_ms']:.2f} ms):"]
  for lane in r["profile"][:1]:
    lines.append(f"  {lane['lane']}: {lane['ms_per_step']:.2f} ms busy a step")
    for view in ("kinds", "xla_ops"):
      lines += [f"    {ms:8.3f} ms  {calls:6g} calls  {name}"
                for name, ms, calls in lane.get(view, [])]
  return lines


def ratios(rows) -> list[str]:
  """kp-jax over the faster PyTorch row of each (config, dtype)."""
  lines = []
  for r in rows:
    if r["framework"] != "kp-jax" or r["status"] != "ok":
      continue
    peers = [p for p in rows if p["framework"] != "kp-jax" and p["status"] == "ok"
             and (p["config"], p["dtype"]) == (r["config"], r["dtype"])]
    if peers:
      best = max(peers, key=lambda p: p["images_per_sec"])
      lines.append(f"{r['config']} {r['dtype']}: kp-jax / {best['framework']} = "
                   f"{r['images_per_sec'] / best['images_per_sec']:.2f}")
  return lines


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--configs", nargs="+",
                      default=["coco_vitpose_b", "coco_hrnet_w32", "coco_person",
                               "resnet18_heatmap", "default", "seed"])
  parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"])
  parser.add_argument("--frameworks", nargs="+", choices=FRAMEWORKS, default=list(FRAMEWORKS))
  parser.add_argument("--batch_size", type=int, help="global; default: see ACCELERATOR_BATCH")
  parser.add_argument("--keypoints", type=int, help="for configs whose source does not say")
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--budget_s", type=float, default=float("inf"),
                      help="start no row that could end after this many seconds")
  parser.add_argument("--row_timeout_s", type=float, default=600.0)
  parser.add_argument("--platform", help="jax platform (gpu, tpu, cpu); default: JAX's choice")
  parser.add_argument("--peak_tflops", type=float, help="per device, when not in PEAK_TFLOPS")
  parser.add_argument("--compilation_cache_dir",
                      help="default: kp_jax.compilation_cache's; '' turns it off")
  parser.add_argument("--xla_flags", help="added to the rows' XLA_FLAGS, e.g. "
                      "--xla_gpu_autotune_level=0")
  parser.add_argument("--json", help="append each row here as a JSON line")
  parser.add_argument("--counts_from", help="an earlier run's --json file: its configs' "
                      "multiply-adds are taken from it instead of counted again")
  parser.add_argument("--log", help="append each row process's output to this file")
  parser.add_argument("--profile_steps", type=int, default=0,
                      help="kp-jax rows: trace this many more steps and list their kernels")
  parser.add_argument("--skip", nargs="+", default=[], metavar="CONFIG:DTYPE",
                      help="combinations not to run, e.g. resnet18_heatmap:bfloat16")
  parser.add_argument("--row", nargs=3, metavar=("CONFIG", "DTYPE", "FRAMEWORK"),
                      help=argparse.SUPPRESS)  # one row, in this process
  args = parser.parse_args(argv)
  if args.row:
    run_row(args, lambda result: print(ROW_PREFIX + json.dumps(result), flush=True))
    return
  import jax  # noqa: PLC0415
  jax.config.update("jax_platforms", "cpu")  # for the counts: the rows get the accelerator
  deadline = time.monotonic() + args.budget_s
  print(HEADER, flush=True)
  rows = []
  counted = earlier_counts(args.counts_from)
  for spec in args.configs:
    try:
      counts = counted.get(spec) or count_macs(spec, args.keypoints)
    except Exception as e:  # noqa: BLE001 -- the rows still run, without MFU
      print(f"{spec}: multiply-adds not counted: {e!r}", flush=True)
      counts = {}
    for dtype in args.dtypes:
      if f"{short_name(spec)}:{dtype}" in args.skip:
        continue
      for framework in args.frameworks:
        left = deadline - time.monotonic()
        base = {"framework": framework, "config": spec, "dtype": dtype,
                **({"xla_flags": args.xla_flags} if args.xla_flags else {})}
        if left < MIN_ROW_SECONDS:
          result = {"status": f"not started: {args.budget_s:.0f} s budget spent"}
          output = ""
        else:
          result, output = run_in_process(args, spec, dtype, framework,
                                          min(args.row_timeout_s, left))
        row = finish_row({**base, **result}, counts, args.peak_tflops)
        rows.append(row)
        print(table_line(row), flush=True)
        if args.json:
          with open(args.json, "a") as f:
            f.write(json.dumps(row) + "\n")
        if args.log and output:
          with open(args.log, "a") as f:
            f.write(f"\n===== {framework} {spec} {dtype}: {row['status']}\n{output}")
  print("\n" + "\n".join(ratios(rows) + [line for r in rows for line in profile_lines(r)]))


if __name__ == "__main__":
  main()
