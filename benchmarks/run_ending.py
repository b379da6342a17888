"""The end of a training run as a newcomer sees it: seconds from the last validation line on
the console to the summary line, and what the console says in between, for one or more
checkouts of kp-jax in turn (for instance an older one and this one), in one run on one
machine.

  python benchmarks/run_ending.py [--config configs/default.py] [--checkouts OLD .]
      [--root workdirs/run_ending] [-- --config.field=value ...]

Each checkout trains `--config` (its own copy of it) with its own train.py, as `make train`
does, into ROOT/<n>; the console (absl's stderr, timestamped) is kept in ROOT/<n>.log.
"""

import argparse
import datetime
import os
import re
import shutil
import subprocess
import sys
import time

# absl's prefix: I1204 14:44:43.123456 ...
STAMP = re.compile(r"^[IWEF]\d{4} (\d\d:\d\d:\d\d\.\d+)")


def seconds(line: str) -> float:
  clock = datetime.datetime.strptime(STAMP.match(line).group(1), "%H:%M:%S.%f")
  return clock.hour * 3600 + clock.minute * 60 + clock.second + clock.microsecond / 1e6


def ending(log_lines: list[str]) -> tuple[float, list[str]]:
  """Seconds from the last validation line to the summary line, and the lines between."""
  stamped = [line for line in log_lines if STAMP.match(line)]
  last_validation = max(i for i, line in enumerate(stamped) if "validation/" in line)
  summary = next(i for i, line in enumerate(stamped) if "Summary:" in line)
  between = stamped[last_validation + 1:summary]
  return seconds(stamped[summary]) - seconds(stamped[last_validation]), between


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", default="configs/default.py",
                      help="Relative to each checkout.")
  parser.add_argument("--checkouts", nargs="+", default=["."])
  parser.add_argument("--root", default="workdirs/run_ending")
  parser.add_argument("extra", nargs="*", help="After --: flags for train.py.")
  args = parser.parse_args()
  os.makedirs(args.root, exist_ok=True)
  print(f"{len(args.checkouts)} checkouts, {args.config}, python {sys.executable}")
  for n, checkout in enumerate(args.checkouts):
    workdir = os.path.abspath(os.path.join(args.root, str(n)))
    shutil.rmtree(workdir, ignore_errors=True)
    start = time.time()
    run = subprocess.run([sys.executable, "train.py", f"--config={args.config}",
                          f"--workdir={workdir}", *args.extra], cwd=checkout,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.time() - start
    with open(workdir + ".log", "w") as f:
      f.write(run.stderr)
    if run.returncode:
      print(f"{checkout}: train.py failed; see {workdir}.log")
      continue
    quiet, between = ending(run.stderr.splitlines())
    print(f"\n{checkout}: whole run {wall:.0f} s; last validation line to summary {quiet:.1f} s, "
          f"{len(between)} lines between:")
    for line in between:
      print("  " + line[:160])


if __name__ == "__main__":
  main()
