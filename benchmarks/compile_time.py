"""Where a training step's start-up goes before its first step: tracing, lowering, compiling.

  python benchmarks/compile_time.py [--configs coco_hrnet_w32 coco_person coco_vitpose_b]
      [--dtype bfloat16] [--kernels xla] [--compile [--cache_dir DIR] | --state | --init]
      [--rounds 2]

Tracing (Python: the flax modules, autodiff, the optax update) and lowering to StableHLO are
paid by every run, on every backend, also when XLA's executable comes back from the persistent
compilation cache: they are what a warm accelerator run's `compile_seconds`
(benchmarks/accelerator.py) is made of. Each row traces the config's jit train step anew (state
and batch abstract: nothing is initialised or run) in a fresh process, as a run starts,
`--rounds` times; `--compile` adds XLA's compile for this machine's CPU, without the persistent
cache, or with it in `--cache_dir` (an empty folder: the first round compiles and writes, later
rounds read the program back, as a warm run does). `--kernels xla` (the default) traces the
layers accelerators run, not kernels.py's CPU forms. `--state` times what a fresh run does
before that instead: making its training state (`steps.create_train_state`: initialisation,
EMA, optimiser state) on this CPU, wall seconds and the programs XLA compiled for it, without
the persistent cache. `--init` times the network's initialisation alone both ways,
`jax.jit(model.init)` and flax's eager `lazy_init`, each in a fresh process, and says whether
their values are the same.
"""

import argparse
import hashlib
import json
import re
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from accelerator import COMPILE_STAGES
from config_shapes import input_shape, keypoint_count, load_config
from machine import machine_line
from kp_jax import compilation_cache, steps
from kp_jax.data import pixels
from kp_jax.models import create_model

BATCH = 2  # tracing and lowering do not depend on it


def abstract_step(config, keypoints: int):
  """(the config's train step, abstract state, abstract batch)."""
  shape = input_shape(config.data)
  model, head = create_model(config.model, keypoints, shape[:2])
  state = steps.state_shapes(config, model, shape)
  batch = {"image": jax.ShapeDtypeStruct((BATCH, *shape), jnp.uint8),
           "keypoints": jax.ShapeDtypeStruct((BATCH, keypoints, 2), jnp.float32),
           "visible": jax.ShapeDtypeStruct((BATCH, keypoints), jnp.float32),
           "norm": jax.ShapeDtypeStruct((BATCH,), jnp.float32)}

  def step(state, batch):
    return steps.train_step(state, batch, head=head,
                            image_stats=pixels.normalisation(config.data, shape[2]))
  return step, state, batch


def time_row(step, state, batch, compile_: bool) -> dict:
  start = time.perf_counter()
  traced = jax.jit(step).trace(state, batch)
  traced_at = time.perf_counter()
  lowered = traced.lower()
  lowered_at = time.perf_counter()
  row = {"trace_s": traced_at - start, "lower_s": lowered_at - traced_at,
         "stablehlo_ops": len(re.findall(r"\bstablehlo\.\w+", lowered.as_text()))}
  if compile_:
    lowered.compile()
    row["compile_s"] = time.perf_counter() - lowered_at
  return row


def state_row(config, keypoints: int) -> dict:
  shape = input_shape(config.data)
  model, _ = create_model(config.model, keypoints, shape[:2])
  compiles = []
  jax.monitoring.register_event_duration_secs_listener(
      lambda event, seconds, **_: compiles.append(seconds)
      if event == COMPILE_STAGES["xla_seconds"] else None)
  start = time.perf_counter()
  state = jax.block_until_ready(steps.create_train_state(config, model, shape,
                                                         jax.random.key(0)))
  return {"params": len(jax.tree.leaves(state.params)), "state_s": time.perf_counter() - start,
          "compiles": len(compiles), "compile_s": sum(compiles)}


def init_row(config, keypoints: int, how: str) -> dict:
  """Seconds to make the network's variables `how`: "jit" (`create_train_state`'s way: one
  program, each array's random draw compiled apart) or "eager" (flax's `lazy_init`, no
  forward pass: each distinct initialiser program compiled once, reused for every array of
  its shape); with a digest of the values, to show the two equal."""
  shape = input_shape(config.data)
  model, _ = create_model(config.model, keypoints, shape[:2])
  image = jax.ShapeDtypeStruct((1, *shape), jnp.float32)
  start = time.perf_counter()
  if how == "jit":
    variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros(image.shape, image.dtype))
  else:
    variables = model.lazy_init(jax.random.key(0), image)
  leaves = jax.block_until_ready(jax.tree.leaves(variables))
  seconds = time.perf_counter() - start
  digest = hashlib.sha256(b"".join(np.asarray(leaf).tobytes() for leaf in leaves))
  return {"init_s": seconds, "arrays": len(leaves), "digest": digest.hexdigest(),
          "shapes": len({(leaf.shape, leaf.dtype) for leaf in leaves})}


def run_row(args) -> dict:
  config = load_config(args.row)
  config.model.dtype, config.model.kernels = args.dtype, args.kernels
  keypoints = keypoint_count(config.data, args.keypoints)
  if args.state:
    return state_row(config, keypoints)
  if args.init:
    return init_row(config, keypoints, args.how)
  step, state, batch = abstract_step(config, keypoints)
  return {"params": len(jax.tree.leaves(state.params)),
          **time_row(step, state, batch, args.compile)}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--configs", nargs="+",
                      default=["coco_hrnet_w32", "coco_person", "coco_vitpose_b"])
  parser.add_argument("--dtype", default="bfloat16")
  parser.add_argument("--kernels", default="xla", help="config.model.kernels")
  parser.add_argument("--compile", action="store_true", help="also XLA's compile, for the CPU")
  parser.add_argument("--cache_dir", default="",
                      help="with --compile: JAX's persistent compilation cache here")
  parser.add_argument("--state", action="store_true",
                      help="time a fresh training state's creation instead")
  parser.add_argument("--init", action="store_true",
                      help="time the network's initialisation alone, jit and eager, instead")
  parser.add_argument("--rounds", type=int, default=2)
  parser.add_argument("--keypoints", type=int, help="for configs whose source does not say")
  parser.add_argument("--row", help=argparse.SUPPRESS)  # one config, in this process
  parser.add_argument("--how", choices=["jit", "eager"], help=argparse.SUPPRESS)  # --init's
  args = parser.parse_args()
  jax.config.update("jax_platforms", "cpu")
  compilation_cache.enable(args.cache_dir)  # "": XLA's own compile, when timed
  if args.row:
    print(json.dumps(run_row(args)))
    return
  print(f"{machine_line()}; jax {jax.__version__}; batch {BATCH}, {args.dtype}, "
        f"kernels {args.kernels}\n")
  if args.state:
    print("| config | params | state s | XLA compiles | their compile s |\n|---|---|---|---|---|")
  elif args.init:
    print("| config | variable arrays | distinct shapes | jit(model.init) s | eager lazy_init s "
          "| same values |\n|---|---|---|---|---|---|")
  else:
    print("| config | params | StableHLO ops | trace s | lower s | trace + lower s |"
          + (" CPU compile s |" if args.compile else "")
          + "\n|---|---|---|---|---|---|" + ("---|" if args.compile else ""))

  def fresh_process_row(name, *flags):
    command = [sys.executable, __file__, "--row", name, "--dtype", args.dtype,
               "--kernels", args.kernels, "--cache_dir", args.cache_dir,
               *(["--compile"] if args.compile else []),
               *(["--state"] if args.state else []), *flags,
               *(["--keypoints", str(args.keypoints)] if args.keypoints else [])]
    return json.loads(subprocess.run(command, check=True, capture_output=True,
                                     text=True).stdout.splitlines()[-1])

  for _ in range(args.rounds):  # alternating, so all see the machine alike
    for name in args.configs:
      if args.init:
        jit, eager = (fresh_process_row(name, "--init", "--how", how) for how in ("jit", "eager"))
        print(f"| `{name}` | {jit['arrays']} | {jit['shapes']} | {jit['init_s']:.1f} | "
              f"{eager['init_s']:.1f} | {jit['digest'] == eager['digest']} |", flush=True)
        continue
      row = fresh_process_row(name)
      if args.state:
        print(f"| `{name}` | {row['params']} arrays | {row['state_s']:.1f} | {row['compiles']} | "
              f"{row['compile_s']:.1f} |", flush=True)
        continue
      compiled = f" {row['compile_s']:.1f} |" if args.compile else ""
      print(f"| `{name}` | {row['params']} arrays | {row['stablehlo_ops']:,} | "
            f"{row['trace_s']:.2f} | {row['lower_s']:.2f} | "
            f"{row['trace_s'] + row['lower_s']:.2f} |{compiled}", flush=True)


if __name__ == "__main__":
  main()
