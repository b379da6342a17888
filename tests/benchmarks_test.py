"""benchmarks/accelerator.py on the CPU: what a bare accelerator machine would run."""

import argparse
import json
import os
import subprocess
import sys

import pytest

from benchmarks import accelerator, profile_step
from flops_test import default_forward_macs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# As on a machine with only jax, flax, optax and ml_collections: these imports fail in the
# benchmark and in every row process it starts (sitecustomize runs in each).
BLOCKED = ("tensorflow", "tensorflow_datasets", "clu", "orbax", "orbax.checkpoint", "torch")


def run_accelerator(tmp_path, *args, blocked=BLOCKED):
  site = tmp_path / "site"
  site.mkdir(exist_ok=True)
  (site / "sitecustomize.py").write_text(
      "import sys\nfor name in %r:\n  sys.modules[name] = None\n" % (blocked,))
  env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{ROOT}",
         "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
         # With a compilation cache, every program is written, however short its compile.
         "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
  run = subprocess.run([sys.executable, "benchmarks/accelerator.py", "--platform", "cpu",
                        "--batch_size", "4", "--steps", "2", *args],
                       cwd=ROOT, capture_output=True, text=True, env=env)
  assert run.returncode == 0, run.stderr[-3000:]
  return run.stdout


def rows_of(path):
  return [json.loads(line) for line in path.read_text().splitlines()]


def test_accelerator_benchmark_rows(tmp_path):
  out, cache = tmp_path / "rows.jsonl", tmp_path / "cache"
  common = ["--peak_tflops", "0.5", "--json", str(out), "--compilation_cache_dir", str(cache)]
  stdout = run_accelerator(
      tmp_path, "--configs", "seed", "configs/default.py", "--dtypes", "float32", "bfloat16",
      "--frameworks", "kp-jax", "pytorch", "--skip", "default:bfloat16", *common)
  rows = rows_of(out)
  assert [(r["framework"], r["config"], r["dtype"]) for r in rows] == [
      ("kp-jax", "seed", "float32"), ("pytorch", "seed", "float32"),
      ("kp-jax", "seed", "bfloat16"), ("pytorch", "seed", "bfloat16"),
      ("kp-jax", "configs/default.py", "float32"), ("pytorch", "configs/default.py", "float32")]
  for r in rows[::2]:
    assert r["status"] == "ok" and r["batch"] == 4 and r["device"] == "2 x cpu (cpu)"
    assert r["images_per_sec"] == pytest.approx(4 / (r["step_ms"] / 1e3), rel=1e-6)
    assert r["mfu"] == pytest.approx(
        2e9 * r["train_gmacs_per_image"] * r["images_per_sec"] / 0.5e12, rel=1e-6)
    # The train step's tracing, lowering and XLA compile, all within its first call.
    stages = [r["trace_seconds"], r["lower_seconds"], r["xla_seconds"]]
    assert min(stages) > 0 and sum(stages) <= r["compile_seconds"] + r["step_ms"] / 1e3
  # A row that fails (here: no torch) is a row saying why; the next row still runs.
  for r in rows[1::2]:
    assert r["status"].startswith("crashed (exit 1): ModuleNotFoundError: import of torch")
  forward, _ = default_forward_macs()
  assert rows[4]["forward_gmacs_per_image"] == pytest.approx(forward / 1e9, rel=1e-12)
  assert "| kp-jax | seed | bfloat16 | 4 |" in stdout
  # The same row again: its programs come from the compilation cache the first run wrote.
  # Then it traces two more steps: its profile.
  log = tmp_path / "rows.log"
  stdout = run_accelerator(tmp_path, "--configs", "configs/default.py", "--dtypes", "float32",
                           "--frameworks", "kp-jax", "--profile_steps", "2", "--log", str(log),
                           *common)
  first, again = rows[4], rows_of(out)[-1]
  assert again["status"] == "ok"
  # At least its train step and the program making its batch besides what the seed rows
  # before it had already written (small programs both share).
  assert again["cache_hits"] >= first["cache_hits"] + 2
  # On the CPU the lanes are host threads; the step's own call is in one of them, once a step.
  calls = {name: n for lane in again["profile"] for name, _, n in lane["ops"]}
  assert calls["PjitFunction(train_step)"] >= 1
  assert "kp-jax configs/default.py float32 profile (a step:" in stdout
  # Its step's compile stages, printed as they ended (what a row killed in XLA's compile keeps).
  assert 'STAGE {"trace_seconds": ' in log.read_text()


def test_accelerator_benchmark_keeps_a_row_whose_profile_fails(tmp_path):
  out = tmp_path / "rows.jsonl"
  run_accelerator(tmp_path, "--configs", "seed", "--dtypes", "float32", "--frameworks",
                  "kp-jax", "--profile_steps", "1", "--json", str(out),
                  blocked=(*BLOCKED, "profile_step"))
  row, = rows_of(out)
  assert row["status"] == "ok" and row["step_ms"] > 0 and row["compile_seconds"] >= 0
  assert row["profile"].startswith(
      "crashed (exit 1): ModuleNotFoundError: import of profile_step halted")


def stand_in_row(monkeypatch, code: str, limit: float, framework="kp-jax", profile_steps=0):
  """What `run_in_process` makes of a stand-in row process that runs `code` (Python, with sys
  and time imported) instead of a benchmark row."""
  monkeypatch.setattr(accelerator, "row_command",
                      lambda *_: [sys.executable, "-c", "import sys, time; " + code])
  args = argparse.Namespace(xla_flags=None, profile_steps=profile_steps)
  row, _ = accelerator.run_in_process(args, "seed", "float32", framework, limit)
  return row


def printed(prefix: str, **values) -> str:
  """Python code printing one of a row process's lines (`prefix` and `values` as JSON)."""
  return f"print({prefix + json.dumps(values)!r}, flush=True); "


@pytest.mark.parametrize("framework, profile_steps, key", [
    ("kp-jax", 3, "profile"), ("kp-jax", 0, "after_timings"), ("pytorch", 3, "after_timings")])
def test_a_row_that_fails_or_hangs_after_reporting_keeps_its_timings(monkeypatch, framework,
                                                                    profile_steps, key):
  """A row process that reports, then exits 3 or sleeps past its limit: the row is its
  report, with how it ended under "profile" where one was asked for."""
  report = printed(accelerator.ROW_PREFIX, seconds=0.25, batch=4)
  for then, limit, ended in [("sys.exit(3)", 60, "crashed (exit 3)"),
                             ("time.sleep(60)", 2, "timed out after 2 s")]:
    row = stand_in_row(monkeypatch, report + then, limit, framework, profile_steps)
    assert row == {"status": "ok", "seconds": 0.25, "batch": 4, key: ended}


def test_a_row_that_ends_before_reporting_says_how_far_its_compile_got(monkeypatch):
  """Stand-in row processes that print their step's compile stages as they end, then are
  killed in XLA's compile, or crash after it."""
  stage = lambda **seconds: printed(accelerator.STAGE_PREFIX, **seconds)
  for code, limit, status in [
      (stage(trace_seconds=1.25) + stage(trace_seconds=0.25) + stage(lower_seconds=0.5)
       + "time.sleep(60)", 2,
       "timed out after 2 s, in XLA's compile (train step: trace 1.5 s, lower 0.5 s)"),
      (stage(trace_seconds=1.5) + stage(lower_seconds=0.5) + stage(xla_seconds=30.0)
       + "sys.exit(3)", 60,
       "crashed (exit 3), after its compile (train step: trace 1.5 s, lower 0.5 s, xla 30.0 s)")]:
    row = stand_in_row(monkeypatch, code, limit)
    assert row.pop("status") == status
    assert row == {"trace_seconds": 1.5, "lower_seconds": 0.5,
                   **({"xla_seconds": 30.0} if "xla" in status else {})}


def test_trace_lanes_times_an_accelerators_lanes_by_kernel_and_kind():
  """Two steps' trace: a GPU's two streams and the host; only the device's lanes count."""
  meta = lambda pid, tid, kind, name: {"ph": "M", "pid": pid, "tid": tid, "name": kind,
                                       "args": {"name": name}}
  run = lambda tid, name, dur, pid=2, **args: {"ph": "X", "pid": pid, "tid": tid, "ts": 0.0,
                                               "name": name, "dur": dur, "args": args}
  events = [meta(1, None, "process_name", "/host:CPU"), meta(2, None, "process_name",
                                                                "/device:GPU:0 NVIDIA H200"),
            meta(2, 7, "thread_name", "Stream #7(Compute)"),
            meta(2, 9, "thread_name", "Stream #9(MemcpyD2D)"),
            run(5, "PjitFunction(train_step)", 90_000.0, pid=1),
            run(7, "loop_add_fusion_3", 1000.0, hlo_op="add_fusion.3"),
            run(7, "loop_add_fusion_12", 3000.0, hlo_op="add_fusion.12"),
            run(7, "sm90_xmma_fprop", 5000.0, hlo_op="cudnn-conv.1"),
            run(7, "sm90_xmma_fprop", 5000.0, kernel_annotation="cudnn-conv.2"),
            run(7, "loop_add_fusion", 500.0), run(9, "memcpy", 400.0)]
  compute, copies = profile_step.trace_lanes(events, num_steps=2, top=2)
  assert compute["lane"] == "/device:GPU:0 NVIDIA H200 Stream #7(Compute)"
  assert compute["ms_per_step"] == pytest.approx((1000 + 3000 + 10_000 + 500) / 2 / 1e3)
  assert compute["ops"] == [["sm90_xmma_fprop", 5.0, 1.0], ["loop_add_fusion_12", 1.5, 0.5]]
  assert compute["kinds"] == [["sm90_xmma_fprop", 5.0, 1.0], ["loop_add_fusion", 2.25, 1.5]]
  # The XLA ops the kernels ran for, where their events say: the last fusion's does not.
  assert compute["xla_ops"] == [["cudnn-conv", 5.0, 1.0], ["add_fusion", 2.0, 1.0]]
  assert copies == {"lane": "/device:GPU:0 NVIDIA H200 Stream #9(MemcpyD2D)",
                    "ms_per_step": 0.2, "ops": [["memcpy", 0.2, 0.5]],
                    "kinds": [["memcpy", 0.2, 0.5]]}


def test_accelerator_benchmark_time_limits(tmp_path):
  out = tmp_path / "rows.jsonl"
  stdout = run_accelerator(tmp_path, "--configs", "seed", "--dtypes", "float32", "bfloat16",
                           "--frameworks", "kp-jax", "--row_timeout_s", "1", "--json", str(out))
  assert [r["status"] for r in rows_of(out)] == ["timed out after 1 s"] * 2
  # A row says which XLA flags it was given (the GPU session's bisection runs one config
  # under several).
  stdout = run_accelerator(tmp_path, "--configs", "seed", "--dtypes", "float32",
                           "--frameworks", "kp-jax", "--budget_s", "5", "--json", str(out),
                           "--xla_flags=--xla_gpu_autotune_level=0")
  assert "| kp-jax | seed (--xla_gpu_autotune_level=0) | float32 | - |" in stdout
  row = rows_of(out)[-1]
  assert (row["config"], row["xla_flags"], row["status"]) == (
      "seed", "--xla_gpu_autotune_level=0", "not started: 5 s budget spent")


def test_accelerator_benchmark_takes_the_counts_of_an_earlier_run(tmp_path, monkeypatch, capsys):
  earlier, out = tmp_path / "earlier.jsonl", tmp_path / "rows.jsonl"
  counts = {"forward_gmacs_per_image": 1.5, "train_gmacs_per_image": 4.0}
  earlier.write_text(json.dumps({"config": "seed", "status": "ok", **counts}) + "\n"
                     + json.dumps({"config": "default", "status": "crashed"}) + "\n")

  def count_macs(spec, keypoints):
    raise RuntimeError(f"counted {spec}")
  monkeypatch.setattr(accelerator, "count_macs", count_macs)
  accelerator.main(["--configs", "seed", "default", "--dtypes", "float32", "--frameworks",
                    "kp-jax", "--budget_s", "0", "--counts_from", str(earlier), "--json",
                    str(out)])
  rows = rows_of(out)
  assert [r["status"] for r in rows] == ["not started: 0 s budget spent"] * 2
  assert {k: rows[0][k] for k in counts} == counts  # seed's from the earlier run
  assert "default: multiply-adds not counted: RuntimeError('counted default')" in (
      capsys.readouterr().out)  # counted anew: the earlier row had none


@pytest.mark.parametrize("device, bf16, tf32", [
    ("1 x NVIDIA H100 80GB HBM3 (gpu)", 989.4, 494.7),  # SXM: NVIDIA's datasheet, halved
    ("1 x NVIDIA H100 PCIe (gpu)", 756.5, 378.0),       # (its figures count 2:4 sparsity)
    ("1 x NVIDIA H100 NVL (gpu)", 835.5, 417.5),
    ("1 x NVIDIA H200 (gpu)", 989.4, 494.7),
    ("1 x NVIDIA H200 NVL (gpu)", 835.5, 417.5),
    ("2 x cpu (cpu)", None, None)])
def test_peak_of_each_form_of_a_gpu(device, bf16, tf32):
  assert accelerator.peak_tflops(device, "bfloat16", None) == bf16
  assert accelerator.peak_tflops(device, "float32", None) == tf32
  assert accelerator.peak_tflops(device, "bfloat16", 7.0) == 7.0


# resnet18_heatmap's peer is torchvision's ResNet-18 (torchvision is not a test requirement).
@pytest.mark.parametrize("spec", ["seed", "default", "coco_person", "coco_hrnet_w32",
                                  "coco_vitpose_b"])
def test_pytorch_peers_make_every_tensor_on_their_device(spec):
  """Each PyTorch peer's training step on the "meta" device (shapes only; a tensor made on the
  CPU fails it, as one did on CUDA before: `torch.arange` in peers.py), every parameter
  reached by the loss's gradient."""
  torch = pytest.importorskip("torch")
  config = accelerator.config_of(spec)
  step, network = accelerator.torch_train_step(
      accelerator.short_name(spec), config, "float32", 2,
      accelerator.keypoint_count(config.data, None), "meta", compiled=False)
  step()
  grads = [(p.shape, p.grad) for p in network.parameters()]
  assert grads and all(g is not None and g.device == torch.device("meta") and g.shape == shape
                       for shape, g in grads)
