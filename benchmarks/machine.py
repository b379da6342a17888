"""The machine a benchmark runs on: the line printed above its timings, as the docs quote it,
and scratch space it leaves as it found it."""

import atexit
import os
import platform
import shutil
import subprocess
import tempfile
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


def scratch_folder(prefix: str) -> str:
  """A new temporary folder, removed when the benchmark exits (its generated pictures, videos
  and runs can take hundreds of MB)."""
  folder = tempfile.mkdtemp(prefix=prefix)
  atexit.register(shutil.rmtree, folder, ignore_errors=True)
  return folder
