"""Training throughput and input wait against the number of devices.

  python benchmarks/scaling.py [--config configs/default.py] [--steps 300] [--devices 1,2,4,8]

Each row is a fresh `train.py` run of the config for --steps steps in its own workdir under
workdirs/scaling/ (the dataset must fit the config; it is prepared on first use), on N devices:
the first N of a GPU/TPU host, or N simulated CPU devices
(XLA_FLAGS=--xla_force_host_platform_device_count=N) when there is no accelerator. Simulated
devices share the same CPU cores, so on a CPU the rows show the overhead of splitting the
batch, not a speed-up. Prints a Markdown table from each run's summary.json:
images/s (compilation excluded) and the fraction of that time the loop waited for input.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys


def run(config: str, steps: int, devices: int, mode: str) -> dict:
  workdir = os.path.join("workdirs", "scaling", f"{devices}_{mode}")
  shutil.rmtree(workdir, ignore_errors=True)
  env = dict(os.environ)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "")
                      + f" --xla_force_host_platform_device_count={devices}")
  env.setdefault("CUDA_VISIBLE_DEVICES", ",".join(str(i) for i in range(devices)))
  subprocess.run([sys.executable, "train.py", f"--config={config}", f"--workdir={workdir}",
                  f"--config.num_train_steps={steps}", f"--config.parallel={mode}",
                  f"--config.eval_every_steps={steps}", f"--config.checkpoint_every_steps={steps}",
                  "--config.eval_batch_size=200"],  # divisible by 1, 2, 4 and 8 devices
                 env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  with open(os.path.join(workdir, "summary.json")) as f:
    return json.load(f)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default="configs/default.py")
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--devices", default="1,2,4,8")
  parser.add_argument("--modes", default="auto", help="comma-separated: auto, jit, pmap")
  args = parser.parse_args()
  print("| devices | mode | global batch | img/s | input wait |")
  print("|---|---|---|---|---|")
  for devices in (int(d) for d in args.devices.split(",")):
    for mode in args.modes.split(","):
      s = run(args.config, args.steps, devices, mode)
      print(f"| {s['devices']} | {s['parallel']} | {s['batch_size']} | "
            f"{s['train_images_per_sec']:.0f} | {100 * s['input_wait_fraction']:.1f}% |",
            flush=True)


if __name__ == "__main__":
  main()
