"""Memory soak: trains a config for a while and records the trainer's resident memory.

  python benchmarks/soak.py --minutes 20 [--config configs/default.py] [--out soak.csv]

Runs train.py in a subprocess (with evaluation and checkpoints every 500 steps, so every
periodic action repeats many times), samples its resident set size (VmRSS) every few seconds,
stops it with SIGTERM after --minutes (exercising the preemption save), and prints the growth
of the median RSS from the first to the last minute after the warm-up (--warmup_minutes:
compilation, the first cache fill and evaluation), and the peak after the warm-up.
"""

import argparse
import csv
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rss_mib(pid: int) -> float:
  with open(f"/proc/{pid}/status") as f:
    for line in f:
      if line.startswith("VmRSS:"):
        return int(line.split()[1]) / 1024
  raise RuntimeError(f"no VmRSS for process {pid}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default=os.path.join(ROOT, "configs/default.py"))
  parser.add_argument("--minutes", type=float, default=20)
  parser.add_argument("--warmup_minutes", type=float, default=3)
  parser.add_argument("--interval", type=float, default=5)
  parser.add_argument("--out", default="soak.csv")
  args = parser.parse_args()
  workdir = tempfile.mkdtemp(prefix="kp_soak_")
  trainer = subprocess.Popen(
      [sys.executable, os.path.join(ROOT, "train.py"), f"--config={args.config}",
       f"--workdir={workdir}", "--config.num_train_steps=1000000",
       "--config.eval_every_steps=500", "--config.checkpoint_every_steps=500",
       "--config.optimizer.warmup_steps=100"],
      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  start, samples = time.time(), []
  try:
    while time.time() - start < args.minutes * 60 and trainer.poll() is None:
      samples.append((time.time() - start, rss_mib(trainer.pid)))
      time.sleep(args.interval)
  finally:
    trainer.send_signal(signal.SIGTERM)
    trainer.wait(timeout=300)
  with open(args.out, "w", newline="") as f:
    csv.writer(f).writerows([("seconds", "rss_mib"), *samples])
  after = [(t, rss) for t, rss in samples if t >= args.warmup_minutes * 60]
  if len(after) < 2:
    sys.exit(f"The trainer stopped after {samples[-1][0] if samples else 0:.0f} s "
             f"(exit {trainer.returncode}); see {workdir}.")
  # Medians of the first and the last minute after warm-up: the trend, not single spikes.
  first = statistics.median(r for t, r in after if t < after[0][0] + 60)
  last = statistics.median(r for t, r in after if t > after[-1][0] - 60)
  peak = max(r for _, r in after)
  print("| minutes | warm-up min | RSS MiB, 1st minute after | last minute | growth | "
        "max after warm-up | trainer exit |\n|---|---|---|---|---|---|---|\n"
        f"| {samples[-1][0] / 60:.1f} | {args.warmup_minutes:g} | {first:.0f} | {last:.0f} | "
        f"{100 * (last - first) / first:+.1f}% | {peak:.0f} ({100 * (peak - first) / first:+.1f}%)"
        f" | {trainer.returncode} |")
  print(f"samples: {args.out}; workdir: {workdir}")


if __name__ == "__main__":
  main()
