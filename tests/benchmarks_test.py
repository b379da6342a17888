"""benchmarks/accelerator.py on the CPU: what a bare accelerator machine would run."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# As on a machine with only jax, flax, optax and ml_collections: these imports must fail.
WITHOUT_TENSORFLOW = """
import runpy, sys
for name in ("tensorflow", "tensorflow_datasets", "clu", "orbax", "orbax.checkpoint", "torch"):
  sys.modules[name] = None
sys.argv = ["accelerator.py", *sys.argv[1:]]
sys.path.insert(0, "benchmarks")  # as `python benchmarks/accelerator.py` has it
runpy.run_path("benchmarks/accelerator.py", run_name="__main__")
"""


def test_accelerator_benchmark_runs_without_tensorflow(tmp_path):
  out = tmp_path / "rows.json"
  run = subprocess.run(
      [sys.executable, "-c", WITHOUT_TENSORFLOW, "--platform", "cpu", "--configs", "seed",
       "configs/default.py", "--dtypes", "float32", "bfloat16", "--batch_size", "4",
       "--steps", "2", "--peak_tflops", "0.5", "--json", str(out), "--skip",
       "default:bfloat16"],  # bf16 convolutions are slow on CPUs: one model shows it
      cwd=ROOT, capture_output=True, text=True,
      env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
  assert run.returncode == 0, run.stderr[-3000:]
  result = json.loads(out.read_text())
  assert result["device"] == "2 x cpu (cpu)"  # each step's batch split over both
  rows = result["rows"]
  assert [(r["config"], r["dtype"]) for r in rows] == [
      ("seed", "float32"), ("seed", "bfloat16"), ("default", "float32")]
  for r in rows:
    assert r["framework"] == "kp-jax" and r["batch"] == 4
    assert r["images_per_sec"] == pytest.approx(4 / (r["step_ms"] / 1e3), rel=1e-6)
    flops_per_sec = r["gflops_per_step"] * 1e9 / (r["step_ms"] / 1e3)
    assert r["mfu"] == pytest.approx(flops_per_sec / 0.5e12, rel=1e-6)
  # XLA's count (per device: 2 images each) against one by hand: a training step costs about
  # 3x its forward pass.
  hand = 3 * 2 * default_forward_flops()
  assert rows[2]["gflops_per_step"] * 1e9 == pytest.approx(hand, rel=0.2)  # measured: -12%
  assert "| kp-jax | seed | bfloat16 | 4 |" in run.stdout


def default_forward_flops() -> int:
  """configs/default.py's forward FLOPs for one 96x96x1 image, in the CPU form the CPU runs
  (models/kernels.py: each 4x4 stride-2 deconvolution as a 3x3 convolution to 4x the channels,
  then depth-to-space)."""
  def conv(side, cin, cout, k):  # multiply-adds of a convolution with `side`^2 outputs
    return side * side * cin * cout * k * k
  macs = conv(48, 1, 16, 7)  # stem (stride 2, then a stride-2 max-pool)
  for side, cin, cout in ((24, 16, 16), (12, 16, 32), (6, 32, 64), (3, 64, 128)):
    macs += conv(side, cin, cout, 3) + conv(side, cout, cout, 3)  # one basic block
    macs += conv(side, cin, cout, 1) if cin != cout else 0  # projection shortcut
  macs += conv(3, 128, 4 * 32, 3) + conv(6, 32, 4 * 32, 3)  # two deconvolutions to 32
  macs += conv(12, 32, 15, 1)  # the 15 keypoints' maps
  return 2 * macs
