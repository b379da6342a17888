"""Workdir I/O goes through file-system-aware libraries (etils.epath, Orbax, TensorFlow), so a
workdir on gs:// or any file system they reach works; kp-jax itself makes no local-only call
(builtin `open`, `os.makedirs`, `shutil`, a library writing to a local path) on it.

No remote file system is reachable offline, and Orbax's TensorStore, TensorFlow's gfile and
epath would each need their own fake one, so the test watches instead: Python's audit hooks
see every file open, mkdir, rename, listing and removal; one under the workdir whose call
stack reaches kp-jax's code before any file-system-aware library is a local-only call.
"""

import json
import os
import sys

import numpy as np
from PIL import Image

from conftest import tiny_config
from kp_jax import evaluation, export, predict, train
from kp_jax.data import faces

FILE_EVENTS = {"open", "os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir",
               "os.listdir", "os.scandir", "os.truncate", "shutil.move", "shutil.copyfile",
               "shutil.rmtree"}
FILESYSTEM_AWARE = tuple(f"{os.sep}{name}{os.sep}" for name in
                         ("etils", "orbax", "tensorflow", "tensorstore", "clu", "tensorboard"))
KP_JAX = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "kp_jax")


class LocalCallWatch:
  """Records file events under `root` that kp-jax made without a file-system-aware library."""

  def __init__(self):
    self.root, self.local_calls, self.events = None, [], 0
    sys.addaudithook(self)  # hooks cannot be removed: it stays idle once `root` is None

  def __call__(self, event, args):
    if self.root is None or event not in FILE_EVENTS or not args:
      return
    path = args[0]
    if not isinstance(path, (str, bytes, os.PathLike)):
      return
    path = os.path.abspath(os.fsdecode(path))
    if not path.startswith(self.root):
      return
    self.events += 1
    frame = sys._getframe(1)
    while frame is not None:
      filename = frame.f_code.co_filename
      if any(name in filename for name in FILESYSTEM_AWARE):
        return
      if filename.startswith(KP_JAX):
        self.local_calls.append(f"{event} {path} from {filename}:{frame.f_lineno}")
        return
      frame = frame.f_back


WATCH = LocalCallWatch()


def test_workdir_io_goes_through_epath(data_dir, tmp_path):
  workdir = str(tmp_path / "run")
  config = tiny_config(data_dir)
  config.num_train_steps = 10
  image_path = str(tmp_path / "face.png")
  Image.fromarray(faces.render_example(np.random.default_rng(0), 32)["image"][..., 0]).save(
      image_path)
  WATCH.root = workdir
  try:
    train.train_and_evaluate(config, workdir)
    config.num_train_steps = 20  # resumes: reads the checkpoint and metrics.jsonl back
    train.train_and_evaluate(config, workdir)
    evaluation.evaluate_run(workdir, "validation")
    predict.predict_files(workdir, [image_path])
    export.export(workdir, "stablehlo")
  finally:
    WATCH.root = None
  assert WATCH.local_calls == []
  assert WATCH.events > 20  # the watch saw the run's files (via the libraries)
  for name in ("summary.json", "predictions.png", "config.json", "eval/validation/metrics.json",
               "predictions/face_keypoints.png", "export/model.stablehlo"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  assert [r["step"] for r in records if r["split"] == "validation"] == [10, 20]
