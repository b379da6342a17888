"""Faults tried and survived: kill -9 between checkpoints and in the middle of a checkpoint save,
SIGTERM, truncated checkpoints, a planted NaN batch, a workdir of an incompatible config.

The faults that need a process boundary (kill -9, a real SIGTERM) hit train.py subprocesses on
configs/tiny.py (20 steps, a checkpoint every 10) in this test process's environment (4
simulated devices, the same compiler settings), so they compile the same program as this
process: each interrupted run is resumed here, by the training loop, and must end with exactly
the parameters of the session's uninterrupted run of the same config (conftest's `trained`).
"""

import copy
import errno
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from kp_jax import checkpoint, runs, train
from kp_jax.data import pipeline


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 20  # configs/tiny.py's; checkpoints at 10 and 20

# Runs train.py, optionally SIGKILLing itself when Orbax finalises the state of the checkpoint
# at step KILL_AT_SAVE (after its files are written, before the step directory is committed).
LAUNCHER = """
import os, runpy, signal, sys
kill_step = os.environ.get("KILL_AT_SAVE")
if kill_step:
  from orbax.checkpoint._src.handlers import standard_checkpoint_handler as handler
  finalize = handler.StandardCheckpointHandler.finalize
  def dying_finalize(self, directory):
    if f"/{kill_step}.orbax-checkpoint-tmp" in str(directory):
      os.kill(os.getpid(), signal.SIGKILL)
    return finalize(self, directory)
  handler.StandardCheckpointHandler.finalize = dying_finalize
sys.argv = ["train.py"] + sys.argv[1:]
runpy.run_path(os.path.join(%r, "train.py"), run_name="__main__")
""" % ROOT


def command(workdir, data_dir, *overrides):
  return [sys.executable, "-c", LAUNCHER, "--config=" + os.path.join(ROOT, "configs/tiny.py"),
          f"--workdir={workdir}", f"--config.data.data_dir={data_dir}", *overrides]


def environment(**extra):
  # conftest's: 4 simulated devices, fast compiles, the run's compilation cache
  return {**os.environ, "CUDA_VISIBLE_DEVICES": "", **extra}


def run(workdir, data_dir, *overrides, **env):
  return subprocess.run(command(workdir, data_dir, *overrides), capture_output=True, text=True,
                        env=environment(**env), timeout=600)


def logged_step(workdir) -> int:
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return 0
  with open(path) as f:
    return max((json.loads(line)["step"] for line in f if line.strip()), default=0)


def start_and_signal(workdir, data_dir, at_step: int, signum,
                     *overrides) -> subprocess.CompletedProcess:
  """Starts a run and sends `signum` once its metrics log reaches `at_step`."""
  process = subprocess.Popen(command(workdir, data_dir, *overrides), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=environment())
  while process.poll() is None and logged_step(workdir) < at_step:
    time.sleep(0.05)
  process.send_signal(signum)
  out, err = process.communicate(timeout=300)
  return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def final_params(workdir):
  return runs.load_run(workdir, step=STEPS).state.params


def resume(config, workdir, caplog) -> str:
  """Runs `config` in `workdir` in this process (resuming); returns what it logged."""
  caplog.clear()
  with caplog.at_level(logging.INFO):
    assert train.train_and_evaluate(copy.deepcopy(config), workdir)["steps"] == STEPS
  return caplog.text


def assert_same(params, reference):
  jax.tree.map(np.testing.assert_array_equal, params, reference)


def test_kill_9_between_checkpoints_resumes_to_the_same_parameters(trained, tmp_path, caplog):
  config, reference, _ = trained
  workdir = str(tmp_path / "run")
  killed = start_and_signal(workdir, config.data.data_dir, 15, signal.SIGKILL)  # between
  assert killed.returncode == -signal.SIGKILL  # checkpoints: the steps since the last are redone
  # Saves run in the background: the step-10 save may not have been committed by step 15 (and
  # on a loaded machine the kill may land late, after step 20's).
  committed = [int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit()]
  assert set(committed) <= {10, 20}
  logged = resume(config, workdir, caplog)
  if committed:
    assert f"Resuming from the checkpoint at step {max(committed)}" in logged
  assert_same(final_params(workdir), final_params(reference))


def test_kill_9_during_a_checkpoint_save_resumes_from_the_previous_one(trained, tmp_path,
                                                                          caplog):
  config, reference, _ = trained
  workdir = str(tmp_path / "run")
  killed = run(workdir, config.data.data_dir, KILL_AT_SAVE="20")
  assert killed.returncode == -signal.SIGKILL
  leftovers = os.listdir(os.path.join(workdir, "checkpoints"))
  assert "10" in leftovers and "20" not in leftovers  # step 20 never committed
  assert "Resuming from the checkpoint at step 10" in resume(config, workdir, caplog)
  assert_same(final_params(workdir), final_params(reference))


def test_sigterm_saves_the_current_step_and_exits_cleanly(data_dir, tmp_path):
  # The real signal to the train.py process; the next test resumes from such a stop.
  workdir = str(tmp_path / "run")
  steps = 2 * STEPS  # so that the signal surely lands inside the training loop
  stopped = start_and_signal(workdir, data_dir, 13, signal.SIGTERM,
                             f"--config.num_train_steps={steps}")
  assert stopped.returncode == 0, stopped.stderr[-3000:]
  saved = [int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit()]
  step = max(saved)
  assert 13 <= step < steps  # where the signal landed (the next test pins the step)
  assert f"Preempted (SIGTERM): saved a checkpoint at step {step}" in stopped.stderr


def test_sigterm_mid_interval_saves_exactly_that_step_and_resumes_from_it(config, trained,
                                                                          tmp_path, monkeypatch):
  batches = pipeline.train_iterator

  def signalling(*args, start_step, **kwargs):
    for step, batch in enumerate(batches(*args, start_step=start_step, **kwargs),
                                 start_step + 1):
      if step == 13:  # arrives while step 13 runs, between scheduled checkpoints
        os.kill(os.getpid(), signal.SIGTERM)
      yield batch
  monkeypatch.setattr(pipeline, "train_iterator", signalling)
  workdir = str(tmp_path / "run")
  assert train.train_and_evaluate(config, workdir) == {"config": "tiny",
                                                       "preempted_at_step": 13}
  manager = checkpoint.create_manager(os.path.join(workdir, "checkpoints"), 2, 1)
  assert manager.all_steps() == [10, 13]
  assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is put back
  monkeypatch.setattr(pipeline, "train_iterator", batches)
  assert train.train_and_evaluate(config, workdir)["steps"] == 20  # from step 13
  # The same parameters as the uninterrupted run of the same config in this process.
  assert_same(final_params(workdir), final_params(trained[1]))


def test_checkpoints_are_written_in_the_background_and_waited_for_at_the_end(
    config, tmp_path, monkeypatch):
  # A slow commit (1 s) must not hold training up: steps go on while it is written, and the
  # run waits for the last one before returning.
  from orbax.checkpoint._src.handlers import standard_checkpoint_handler as handler
  finalize = handler.StandardCheckpointHandler.finalize

  def slow_finalize(self, directory):
    time.sleep(1.0)
    return finalize(self, directory)
  monkeypatch.setattr(handler.StandardCheckpointHandler, "finalize", slow_finalize)
  workdir = tmp_path / "run"
  batches, committed_at = pipeline.train_iterator, {}

  def watched(*args, start_step, **kwargs):
    for step, batch in enumerate(batches(*args, start_step=start_step, **kwargs),
                                 start_step + 1):
      committed_at[step] = sorted(int(p.name) for p in (workdir / "checkpoints").glob("*")
                                  if p.name.isdigit())
      yield batch
  monkeypatch.setattr(pipeline, "train_iterator", watched)
  train.train_and_evaluate(config, str(workdir))
  assert committed_at[11] == []  # step 11 started while step 10 was being written
  assert sorted(int(p.name) for p in (workdir / "checkpoints").glob("*")
                if p.name.isdigit()) == [10, 20]


def test_a_truncated_latest_checkpoint_falls_back_to_the_previous(trained, tmp_path, caplog):
  config, reference, _ = trained
  workdir = str(tmp_path / "run")
  shutil.copytree(reference, workdir)
  state_dir = os.path.join(workdir, "checkpoints", str(STEPS), "state")
  files = [os.path.join(d, f) for d, _, names in os.walk(state_dir) for f in names]
  largest = max(files, key=os.path.getsize)
  with open(largest, "r+b") as f:
    f.truncate(os.path.getsize(largest) // 2)
  logged = resume(config, workdir, caplog)  # it redoes steps 11-20
  assert f"Checkpoint {STEPS} in" in logged and "cannot be read" in logged
  assert "Resuming from the checkpoint at step 10" in logged
  assert os.listdir(os.path.join(workdir, "checkpoints-unreadable"))  # set aside, not deleted
  assert_same(final_params(workdir), final_params(reference))


def test_a_planted_nan_batch_names_the_step_and_the_last_checkpoint(config, tmp_path,
                                                                    monkeypatch):
  batches = pipeline.train_iterator

  def poisoned(*args, start_step, **kwargs):
    for step, batch in enumerate(batches(*args, start_step=start_step, **kwargs),
                                 start_step + 1):
      if step == 13:
        batch = {**batch, "keypoints": np.full_like(batch["keypoints"], np.nan)}
      yield batch
  monkeypatch.setattr(pipeline, "train_iterator", poisoned)
  closed, create_manager = [], checkpoint.create_manager

  def recorded_manager(*args, **kwargs):
    manager = create_manager(*args, **kwargs)
    close = manager.close
    manager.close = lambda: (closed.append("manager"), close())
    return manager
  monkeypatch.setattr(checkpoint, "create_manager", recorded_manager)
  close_log = train.MetricsLog.close
  monkeypatch.setattr(train.MetricsLog, "close",
                      lambda self: (closed.append("metrics"), close_log(self)))
  handler = signal.getsignal(signal.SIGTERM)
  with pytest.raises(FloatingPointError, match=r"at step 13; the last good checkpoint is step "
                                               r"10\."):
    train.train_and_evaluate(config, str(tmp_path / "run"))
  # The stop released everything: the SIGTERM handler, the writers, the manager.
  assert signal.getsignal(signal.SIGTERM) is handler
  assert sorted(closed) == ["manager", "metrics"]
  manager = create_manager(str(tmp_path / "run" / "checkpoints"), 2, 1)
  assert manager.all_steps() == [10]
  manager.close()


def test_skipping_nonfinite_updates_counts_them_and_finishes(config, tmp_path, monkeypatch):
  batches = pipeline.train_iterator

  def poisoned(*args, start_step, **kwargs):
    for step, batch in enumerate(batches(*args, start_step=start_step, **kwargs),
                                 start_step + 1):
      yield ({**batch, "keypoints": np.full_like(batch["keypoints"], np.nan)} if step == 13
             else batch)
  monkeypatch.setattr(pipeline, "train_iterator", poisoned)
  config.optimizer.max_skipped_nonfinite = 3
  workdir = str(tmp_path / "run")
  summary = train.train_and_evaluate(config, workdir)
  assert summary["steps"] == 20 and np.isfinite(summary["nme"])
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    skipped = [r["skipped_updates"] for r in map(json.loads, f) if r["split"] == "train"]
  # Running totals averaged over each 5 logged steps: 0 0 1 1 1 in steps 11-15, so the
  # step-13 update, and only it, was skipped.
  assert skipped == pytest.approx([0, 0, 0.6, 1])


def fill(path):
  """Writes `path` until the disk is full."""
  with open(path, "wb") as f:
    try:
      while True:
        f.write(b"\0" * 65536)
        f.flush()
    except OSError as e:
      assert e.errno == errno.ENOSPC


def test_a_full_disk_fails_the_save_loudly_and_keeps_the_previous_checkpoint(config, tmp_path,
                                                                             monkeypatch):
  disk = tmp_path / "small_disk"
  disk.mkdir()
  if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)],
                    capture_output=True).returncode:
    pytest.skip("cannot mount a small tmpfs here (needs root): the full-disk case is untested")
  try:
    workdir = tmp_path / "run"
    workdir.mkdir()
    (disk / "checkpoints").mkdir()
    os.symlink(disk / "checkpoints", workdir / "checkpoints")  # only checkpoints on the disk
    save = checkpoint.save

    def save_then_fill_the_disk(manager, step, *args, **kwargs):
      save(manager, step, *args, **kwargs)
      if step == 10:  # once step 10 is committed (saves run in the background)
        manager.wait_until_finished()
        fill(disk / "filler")
    monkeypatch.setattr(checkpoint, "save", save_then_fill_the_disk)
    with pytest.raises(Exception, match="No space left on device|ENOSPC"):
      train.train_and_evaluate(config, str(workdir))
    os.remove(disk / "filler")
    manager = checkpoint.create_manager(str(workdir / "checkpoints"), 2, 1)
    assert manager.all_steps() == [10]  # the failed save left no step behind
    manager.close()
    monkeypatch.setattr(checkpoint, "save", save)
    summary = train.train_and_evaluate(config, str(workdir))  # resumes from step 10
    assert summary["steps"] == 20
  finally:
    subprocess.run(["umount", str(disk)], check=True)


@pytest.mark.parametrize("change, message", [
    (lambda c: c.model.head.update(features=16), r"model: checkpoint .*'features': 8"),
    (lambda c: setattr(c.data, "keypoints", ("left_eye_center", "right_eye_center")),
     r"keypoint_names: checkpoint \['left_eye_center', 'right_eye_center', "
     r"'left_eye_inner_corner'"),
])
def test_a_workdir_of_an_incompatible_config_stops_before_training(trained, change, message):
  config, workdir, _ = trained  # a finished 20-step run, left as it is
  config = copy.deepcopy(config)
  change(config)
  config.num_train_steps = 30
  with pytest.raises(ValueError, match=rf"{workdir}/checkpoints holds a checkpoint \(step 20\) "
                                       rf"of an incompatible run: {message}"):
    train.train_and_evaluate(config, workdir)
  manager = checkpoint.create_manager(os.path.join(workdir, "checkpoints"), 2, 1)
  assert manager.all_steps() == [10, 20]  # nothing written
