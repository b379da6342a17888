"""Reproduces the XLA:CPU collectives deadlock that `kp_jax.steps.one_in_flight` avoids.

  python benchmarks/cpu_collectives.py [--trials 5] [--steps 3000]

Each trial is a fresh process with 4 simulated CPU devices running a jit step whose output is
all-gathered (batch-sharded in, replicated out, as kp-jax's evaluation step), `--steps` times,
while two busy-loop processes load the CPU. Without waiting for each step, several steps are in
flight at once and, on a 2-core host, one device can miss the rendezvous: XLA aborts the
process ("Termination timeout for `all gather ...`"; the timeout is cut to 10 s here). With
`one_in_flight`, every trial finishes. Prints one line per trial and mode.
"""

import argparse
import os
import subprocess
import sys

TRIAL = r"""
import os, sys
os.environ["XLA_FLAGS"] = ("--xla_force_host_platform_device_count=4"
                           " --xla_cpu_collective_call_terminate_timeout_seconds=10")
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from kp_jax import steps
mesh = Mesh(np.array(jax.devices()), ("data",))
replicated = NamedSharding(mesh, PartitionSpec())
split = NamedSharding(mesh, PartitionSpec("data"))
step = jax.jit(lambda w, x: jnp.tanh(x @ w), out_shardings=replicated)
if sys.argv[1] == "one_in_flight":
  step = steps.one_in_flight(step)
w = jax.device_put(np.full((64, 64), 1 / 64, np.float32), replicated)
rng = np.random.default_rng(0)
for _ in range(int(sys.argv[2])):
  y = step(w, jax.make_array_from_process_local_data(split, rng.random((32, 64), np.float32)))
jax.block_until_ready(y)
"""


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--trials", type=int, default=5)
  parser.add_argument("--steps", type=int, default=3000)
  args = parser.parse_args()
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  load = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
  try:
    for mode in ("async", "one_in_flight"):
      for trial in range(args.trials):
        run = subprocess.run([sys.executable, "-c", TRIAL, mode, str(args.steps)], cwd=root,
                             capture_output=True, text=True, timeout=600)
        aborted = "Termination timeout" in run.stderr
        print(f"{mode:14s} trial {trial}: exit {run.returncode}"
              f"{' (collective deadlock: XLA aborted)' if aborted else ''}", flush=True)
  finally:
    for process in load:
      process.kill()


if __name__ == "__main__":
  main()
