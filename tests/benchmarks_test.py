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
       "configs/resnet18_heatmap.py", "--dtypes", "float32", "bfloat16", "--batch_size", "4",
       "--steps", "2", "--peak_tflops", "0.5", "--json", str(out), "--skip",
       "resnet18_heatmap:bfloat16"],  # bf16 convolutions are slow on CPUs: one model shows it
      cwd=ROOT, capture_output=True, text=True,
      env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
  assert run.returncode == 0, run.stderr[-3000:]
  result = json.loads(out.read_text())
  assert result["device"] == "2 x cpu (cpu)"  # each step's batch split over both
  rows = result["rows"]
  assert [(r["config"], r["dtype"]) for r in rows] == [
      ("seed", "float32"), ("seed", "bfloat16"), ("resnet18_heatmap", "float32")]
  for r in rows:
    assert r["framework"] == "kp-jax" and r["batch"] == 4
    assert r["images_per_sec"] == pytest.approx(4 / (r["step_ms"] / 1e3), rel=1e-6)
    flops_per_sec = r["gflops_per_step"] * 1e9 / (r["step_ms"] / 1e3)
    assert r["mfu"] == pytest.approx(flops_per_sec / 0.5e12, rel=1e-6)
  # XLA's count (per device: 2 images each) against one by hand: a training step costs about
  # 3x its forward pass.
  hand = 3 * 2 * resnet18_heatmap_forward_flops()
  assert rows[2]["gflops_per_step"] * 1e9 == pytest.approx(hand, rel=0.2)  # measured: -13%
  assert "| kp-jax | seed | bfloat16 | 4 |" in run.stdout


def resnet18_heatmap_forward_flops() -> int:
  """configs/resnet18_heatmap.py's forward FLOPs for one 96x96x1 image, in the CPU form the
  CPU runs (models/kernels.py: each 4x4 stride-2 deconvolution as a 3x3 convolution to 4x the
  channels, then depth-to-space)."""
  def conv(side, cin, cout, k):  # multiply-adds of a convolution with `side`^2 outputs
    return side * side * cin * cout * k * k
  macs = conv(48, 1, 64, 7)  # stem (stride 2, then a stride-2 max-pool)
  for side, cin, cout in ((24, 64, 64), (12, 64, 128), (6, 128, 256), (3, 256, 512)):
    macs += conv(side, cin, cout, 3) + 3 * conv(side, cout, cout, 3)  # two basic blocks
    macs += conv(side, cin, cout, 1) if cin != cout else 0  # projection shortcut
  for side, cin in ((3, 512), (6, 256), (12, 256)):  # three deconvolutions to 256 channels
    macs += conv(side, cin, 4 * 256, 3)
  macs += conv(24, 256, 15, 1)  # heatmaps of the 15 keypoints
  return 2 * macs
