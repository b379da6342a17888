"""Keypoints in CSV files, in the Kaggle Facial Keypoints layout: one row per image, a pair of
columns `<name>_x`, `<name>_y` per keypoint, and an image column holding either the pixels
(space-separated grayscale values of a square image, as Kaggle's `Image`) or an image file path.
An empty coordinate means the keypoint is not labelled (invisible).
"""

import csv
import math
import os

import numpy as np

from kp_jax.data import files
from kp_jax.data.keypoints import KeypointSpec
from kp_jax.data.source import Source


def keypoint_columns(header: list[str], path: str, image_column: str) -> list[str]:
  """Keypoint names from the header's `<name>_x` / `<name>_y` pairs, in column order."""
  if image_column not in header:
    raise ValueError(f"{path}: no image column {image_column!r} (config.data.image_column) in "
                     f"the header {header}.")
  names = [c[:-2] for c in header if c.endswith("_x")]
  unpaired = [c for c in header if c != image_column
              and not ((c.endswith("_x") and c[:-2] + "_y" in header)
                       or (c.endswith("_y") and c[:-2] + "_x" in header))]
  if unpaired or not names:
    raise ValueError(f"{path}: columns {unpaired or header} are not <name>_x / <name>_y pairs.")
  return names


def parse_pixels(value: str) -> np.ndarray | None:
  """A square grayscale image from space-separated values, or None if `value` is not that."""
  parts = value.split()
  if len(parts) < 4 or not all(p.isdigit() for p in parts[:4]):
    return None
  side = math.isqrt(len(parts))
  if side * side != len(parts):
    raise ValueError(f"{len(parts)} pixel values do not make a square image")
  pixels = np.array(parts, np.int64)
  if pixels.max() > 255:
    raise ValueError("pixel values above 255")
  return pixels.astype(np.uint8).reshape(side, side, 1)


def read_split(path: str, image_dir: str, data_config, images: files.ImageChecker,
               names_from_train: list[str] | None) -> tuple[list[str], files.Records]:
  if not os.path.exists(path):
    raise FileNotFoundError(f"CSV file {path} not found.")
  bad = files.BadRecords(data_config.bad_records, path)
  outside = files.OutsideKeypoints(data_config.outside_keypoints, path)
  records = files.Records.empty()
  with open(path, newline="") as f:
    reader = csv.reader(f)
    header = next(reader, None)
    if header is None:
      raise ValueError(f"{path} is empty.")
    names = keypoint_columns(header, path, data_config.image_column)
    if names_from_train is not None and names != names_from_train:
      raise ValueError(f"{path}: keypoints {names} differ from the train split's "
                       f"{names_from_train}.")
    spec = KeypointSpec(tuple(names))
    files.check_norm_keypoints(data_config.norm_keypoints, spec)
    x_columns = [header.index(n + "_x") for n in names]
    y_columns = [header.index(n + "_y") for n in names]
    image_index = header.index(data_config.image_column)
    for row in reader:
      record = f"line {reader.line_num}"
      if len(row) != len(header):
        bad.report(record, "wrong number of fields", f"{len(row)}, the header has {len(header)}")
        continue
      try:
        xs = np.array([float(row[i]) if row[i].strip() else np.nan for i in x_columns])
        ys = np.array([float(row[i]) if row[i].strip() else np.nan for i in y_columns])
      except ValueError as e:
        bad.report(record, "bad coordinate", str(e))
        continue
      if np.any(np.isnan(xs) != np.isnan(ys)):
        bad.report(record, "a keypoint has only one coordinate")
        continue
      visible = (~np.isnan(xs)).astype(np.float32)
      keypoints = np.nan_to_num(np.stack([xs, ys], 1))
      value = row[image_index]
      try:
        image = parse_pixels(value)
        if image is None:
          image = files.find_image(image_dir, value.strip())
          width, height = images.size(image)
        else:
          height, width = image.shape[:2]
      except ValueError as e:
        bad.report(record, "unreadable image", str(e))
        continue
      if isinstance(image, np.ndarray) and records.images and \
          image.shape != records.images[0].shape:
        bad.report(record, "image size differs", f"{image.shape} after {records.images[0].shape}")
        continue
      box = np.array([0.0, 0.0, width, height])
      labels = files.checked_labels(bad, outside, record, keypoints, visible, box, width,
                                    height, spec, data_config.norm_keypoints)
      if labels is None:
        continue
      visible, norm = labels
      records.append(image, keypoints, visible, norm, box, reader.line_num)
  bad.log_summary()
  outside.log_summary()
  return names, records


def source(data_config) -> Source:
  """The CSV files of `data_config.files` ({split: path}) as a `Source`."""
  images = files.ImageChecker.for_config(data_config)
  names, splits = files.read_splits(data_config, "a CSV file", read_split, images)
  try:
    pairs = files.flip_pairs(data_config.flip_pairs, names, where=data_config.files["train"])
    spec = KeypointSpec(tuple(names), pairs, (),
                        files.normaliser_name(data_config.norm_keypoints,
                                              "image size sqrt(w * h)"),
                        tuple(data_config.oks_sigmas))
  except ValueError as e:
    raise ValueError(f"config.data.flip_pairs / oks_sigmas: {e}") from None
  channels = 1 if splits["train"].in_memory else data_config.channels
  return files.records_source(f"csv/{os.path.basename(data_config.files['train'])}", spec,
                              splits, channels, orientations=images.orientations)
