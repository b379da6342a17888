"""What a benchmark needs of a config without reading its data (no TensorFlow): the config
itself (a name in configs/ or a path), its model input shape and its keypoint count."""

import importlib
import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isdir(os.path.join(ROOT, "kp_jax")):  # a clone (installed: kp-jax bench)
  sys.path.insert(0, ROOT)

KEYPOINTS_OF_SOURCE = {"synthetic_faces": 15, "coco": 17}


def load_config(name: str):
  if os.path.exists(name):
    spec = importlib.util.spec_from_file_location("config", name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
  else:
    module = importlib.import_module(f"configs.{name}")
  return module.get_config()


def config_name(name: str) -> str:
  return os.path.splitext(os.path.basename(name))[0]


def input_shape(data) -> tuple[int, int, int]:
  """(height, width, channels) of the model input: `data.input_size`, else the images' own
  size (the synthetic faces' image_size, grayscale)."""
  height, width = tuple(data.input_size) or (data.image_size, data.image_size)
  return height, width, 1 if data.source == "synthetic_faces" else data.channels


def keypoint_count(data, override: int | None = None) -> int:
  if override:
    return override
  if data.keypoints:
    return len(data.keypoints)
  if data.source not in KEYPOINTS_OF_SOURCE:
    raise ValueError(f"config.data.source={data.source!r}: pass --keypoints N")
  return KEYPOINTS_OF_SOURCE[data.source]
