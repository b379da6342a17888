"""The machine a benchmark ran on: the line printed above its timings, as the docs quote it."""

import os
import platform
import subprocess
import time


def cpu_model() -> str:
  """lscpu's "Model name" (how docs/benchmarks.md names a CPU), else Python's processor name
  (a machine without lscpu)."""
  try:
    lines = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
  except FileNotFoundError:
    lines = []
  names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("Model name")]
  return names[0] if names else platform.processor()


def machine_line() -> str:
  """'CPU: <model>, <n> cores; <date>'."""
  return f"CPU: {cpu_model()}, {os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}"
