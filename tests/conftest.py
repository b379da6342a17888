"""Shared test setup: 4 simulated CPU devices, fast compiles, a tiny synthetic dataset."""

import csv
import importlib.util
import os
import shutil
import tempfile

# Must precede the first import of jax anywhere in the test session.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=4")
# Many tests compile the same tiny programs, in this process, in the other xdist workers and in
# the train.py subprocesses they start: one persistent compilation cache for the whole run
# compiles each once. It is made by the first process to load this file (pytest itself, before
# it starts the workers, which inherit the environment) and removed by it at the end. Set
# through the environment, like the fast compiles, so subprocesses get both.
OWNS_CACHE = "KP_JAX_TEST_XLA_CACHE" not in os.environ
if OWNS_CACHE:
  os.environ["KP_JAX_TEST_XLA_CACHE"] = tempfile.mkdtemp(prefix="kp_jax_test_xla_cache_")
os.environ.update(JAX_COMPILATION_CACHE_DIR=os.environ["KP_JAX_TEST_XLA_CACHE"],
                  JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                  JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
                  JAX_DISABLE_MOST_OPTIMIZATIONS="true")  # compile-heavy tests stay fast

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

from configs import tiny  # noqa: E402
from kp_jax import evaluation, export, train  # noqa: E402
from kp_jax.data import pipeline  # noqa: E402


# Tests that start several processes run first: started last, one would keep its worker busy
# after the others have finished.
MULTI_PROCESS_MODULES = ("distributed_test.py", "reliability_test.py", "benchmarks_test.py")


def pytest_collection_modifyitems(items):
  items.sort(key=lambda item: item.path.name not in MULTI_PROCESS_MODULES)  # stable


def pytest_sessionfinish(session, exitstatus):
  if OWNS_CACHE:
    shutil.rmtree(os.environ["KP_JAX_TEST_XLA_CACHE"], ignore_errors=True)


tf.config.set_visible_devices([], "GPU")

NUM_DEVICES = 4


def tiny_config(data_dir: str):
  """configs/tiny.py (seconds: 32x32 faces, a BatchNorm ResNet, 20 steps) in `data_dir`."""
  config = tiny.get_config()
  config.data.data_dir = data_dir
  return config


def file_source_config(data_dir: str, source: str, **data):
  """tiny_config reading a file source (32x32 crops, no cache) with `data` fields set."""
  config = tiny_config(data_dir)
  config.data.source = source
  config.data.input_size = (32, 32)
  config.data.cache = False
  for key, value in data.items():
    config.data[key] = value
  return config


# A test "animal": three labelled dots about its centre (offsets in pixels), on a bright body.
ANIMAL_OFFSETS = np.array([[0.0, -5.0], [-4.0, 3.0], [4.0, 3.0]])


# PIL's transposes undoing each EXIF orientation's turn (PIL's own ImageOps.exif_transpose
# makes the turn).
_UNDO_ORIENTATION = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                     4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                     6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
                     8: Image.Transpose.ROTATE_270}


def installed_export_formats() -> list[str]:
  """kp_jax.export's formats whose converter and runtime are installed here."""
  needs = {"onnx": ("jax2onnx", "onnxruntime"), "tflite": ("ai_edge_litert",)}
  return [fmt for fmt in export.FORMATS
          if all(importlib.util.find_spec(name) for name in needs.get(fmt, ()))]


def save_turned(pixels, orientation: int, path, **save):
  """Saves uint8 `pixels` [h, w] or [h, w, 3] to `path` stored as a camera held otherwise would
  store them, tagged with that EXIF `orientation` (1 to 8; 1: as they are, untagged): a
  viewer, and PIL's exif_transpose, shows `pixels`. `save`: PIL's save options (a lossy
  format shows them only roughly)."""
  image, exif = Image.fromarray(pixels), Image.Exif()
  if orientation != 1:
    image, exif[0x0112] = image.transpose(_UNDO_ORIENTATION[orientation]), orientation
  image.save(path, exif=exif, **save)
  with Image.open(path) as saved:
    return np.asarray(ImageOps.exif_transpose(saved))


def animals_frame(frame_hw, centres) -> np.ndarray:
  """A dark RGB frame with a bright 11x11 body about each centre and darker dots at its
  keypoints (centre + ANIMAL_OFFSETS)."""
  image = np.full((*frame_hw, 3), 20, np.uint8)
  for centre in centres:
    cx, cy = np.round(centre).astype(int)
    image[cy - 5:cy + 6, cx - 5:cx + 6] = 200
    for x, y in np.round(centre + ANIMAL_OFFSETS).astype(int):
      image[y, x] = 90
  return image


def write_deeplabcut_labels(path, bodyparts, rows, index_columns: int = 1, individuals=None):
  """A DeepLabCut CollectedData CSV: the scorer / bodyparts / coords header rows (after
  `index_columns` index columns), then `rows` (index cells, then x, y per body part). With
  `individuals`, the multi-animal layout: an individuals row after scorer, and x, y per body
  part of each individual in turn."""
  pad = [""] * (index_columns - 1)
  groups = individuals or [None]
  header = [["scorer"] + pad + ["Me"] * 2 * len(bodyparts) * len(groups),
            ["bodyparts"] + pad + [b for b in bodyparts for _ in "xy"] * len(groups),
            ["coords"] + pad + ["x", "y"] * len(bodyparts) * len(groups)]
  if individuals:
    header.insert(1, ["individuals"] + pad + [i for i in individuals
                                              for _ in range(2 * len(bodyparts))])
  with open(path, "w", newline="") as f:
    csv.writer(f).writerows(header + rows)


def ground_truth_rows(config, source, split, noise=0.0):
  """Evaluation rows (`evaluation.stack_rows`) whose predictions are the true keypoints (plus
  Gaussian noise of `noise` model-input pixels)."""
  rng = np.random.default_rng(0)
  collected = []
  for batch in pipeline.eval_iterator(config, source, split, local_devices=1):
    pred = batch["keypoints"] + rng.normal(0, noise, batch["keypoints"].shape)
    collected.append((pred, np.ones(pred.shape[:2]), batch))
  return evaluation.stack_rows(collected)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tensorflow_datasets"))


@pytest.fixture
def config(data_dir):
  return tiny_config(data_dir)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, data_dir):
  """One uninterrupted tiny run, shared by the tests that read its outputs (not to be changed:
  copy its config)."""
  config = tiny_config(data_dir)
  workdir = str(tmp_path_factory.mktemp("run"))
  summary = train.train_and_evaluate(config, workdir)
  return config, workdir, summary


def relative_difference(a, b) -> float:
  """||a - b|| / ||a|| over all leaves of two pytrees of arrays (float64 sums)."""
  leaves = list(zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  diff = sum(np.sum((np.float64(x) - np.float64(y)) ** 2) for x, y in leaves)
  norm = sum(np.sum(np.float64(x) ** 2) for x, _ in leaves)
  return float(np.sqrt(diff / norm))


def bilinear_reference(image, matrix, output_hw) -> np.ndarray:
  """Float64 bilinear sampling of an [h, w, C] image through `matrix` (source -> output
  pixels, centres at integers), zero outside: what kp-jax's warps approximate."""
  image = np.asarray(image, np.float64)
  h, w = image.shape[:2]
  inverse = np.linalg.inv(np.asarray(matrix, np.float64))
  yy, xx = np.mgrid[0:output_hw[0], 0:output_hw[1]]
  source = np.stack([xx, yy, np.ones_like(xx)], -1) @ inverse.T
  x0, y0 = np.floor(source[..., 0]).astype(int), np.floor(source[..., 1]).astype(int)
  fx, fy = (source[..., 0] - x0)[..., None], (source[..., 1] - y0)[..., None]

  def pixel(y, x):
    inside = ((y >= 0) & (y < h) & (x >= 0) & (x < w))[..., None]
    return np.where(inside, image[np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)], 0.0)
  return ((1 - fy) * ((1 - fx) * pixel(y0, x0) + fx * pixel(y0, x0 + 1))
          + fy * ((1 - fx) * pixel(y0 + 1, x0) + fx * pixel(y0 + 1, x0 + 1)))


def opencv_warp_tolerance(image) -> float:
  """How far OpenCV's bilinear warp (kp-jax's pipeline warp) may be from the exact one: it
  samples at positions rounded to 1/32 px, off by at most 1/64 px along each axis, which moves
  a value by at most 1/64 of the largest step between neighbouring pixels (the zero outside
  included) along x plus along y; 1e-5 more for float32 rounding."""
  padded = np.pad(np.asarray(image, np.float64), ((1, 1), (1, 1), (0, 0)))
  step_x = np.abs(np.diff(padded, axis=1)).max()
  step_y = np.abs(np.diff(padded, axis=0)).max()
  return (step_x + step_y) / 64 + 1e-5
