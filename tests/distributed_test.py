"""A multi-process run: 2 processes over 127.0.0.1 (jax.distributed, gloo CPU collectives), each
with 2 simulated devices, against one process with 4 devices on the same config and data."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import tiny_config
from kp_jax import train
from train_test import final_params


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def launch_two_processes(workdir, data_dir) -> list[str]:
  port = free_port()
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  processes = [subprocess.Popen(
      [sys.executable, "train.py", "--config=configs/tiny.py", f"--workdir={workdir}",
       f"--config.data.data_dir={data_dir}", "--config.data.input_shards=2",
       f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}"],
      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
  logs = [p.communicate(timeout=600)[0] for p in processes]
  for i, (p, log) in enumerate(zip(processes, logs)):
    assert p.returncode == 0, f"process {i} failed:\n{log[-4000:]}"
  return logs


def test_two_processes_train_save_and_restore_like_one_process(data_dir, tmp_path):
  config = tiny_config(data_dir)
  config.data.input_shards = 2  # the same global batches for 1 or 2 processes
  one_workdir, two_workdir = str(tmp_path / "one"), str(tmp_path / "two")
  one = train.train_and_evaluate(config, one_workdir)  # 1 process, 4 devices (pmap)
  assert jax.device_count() == 4

  logs = launch_two_processes(two_workdir, data_dir)
  assert "pmap on 4 devices" in logs[0]
  # The 2-process checkpoint, restored in this single process, holds the same parameters.
  step_one, params_one, _ = final_params(config, one_workdir)
  step_two, params_two, _ = final_params(config, two_workdir)
  assert step_one == step_two == 20
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               params_two, params_one)
  # Only process 0 wrote the outputs; its evaluation counted every example once.
  with open(os.path.join(two_workdir, "summary.json")) as f:
    two = json.load(f)
  assert two["num_examples"] == one["num_examples"] == 21
  assert two["nme"] == pytest.approx(one["nme"], rel=1e-4)

  # Run again: both processes restore the step-20 checkpoint and only re-evaluate.
  logs = launch_two_processes(two_workdir, data_dir)
  assert all("Resuming from the checkpoint at step 20" in log for log in logs)

  # Restored by one process on one device (saved from 4 devices on 2 processes): same metrics.
  result = subprocess.run(
      [sys.executable, "train.py", "--config=configs/tiny.py", f"--workdir={two_workdir}",
       f"--config.data.data_dir={data_dir}", "--config.data.input_shards=2"],
      env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"},
      capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-4000:]
  assert "Resuming from the checkpoint at step 20" in result.stderr
  assert "jit on 1 devices" in result.stderr
  with open(os.path.join(two_workdir, "summary.json")) as f:
    assert json.load(f)["nme"] == pytest.approx(one["nme"], rel=1e-4)
