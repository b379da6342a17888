"""Datasets read from files (COCO-format JSON, CSV): checked records -> tf.data raw examples.

The annotation files are parsed and checked in Python before training starts, so bad data
fails at once with the file and record at fault (or, with `data.bad_records = "skip"`, is
skipped and counted); images are then read and decoded by tf.data.
"""

import collections
import dataclasses
import os

import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image

from kp_jax.data.keypoints import KeypointSpec, flip_pairs_from_names
from kp_jax.data.source import Source, process_shard

BAD_RECORD_POLICIES = ("error", "skip")


class BadRecords:
  """Raises on a bad record, or (policy "skip") counts it by reason and logs a summary."""

  def __init__(self, policy: str, path: str):
    if policy not in BAD_RECORD_POLICIES:
      raise ValueError(f"config.data.bad_records={policy!r}: choose one of "
                       f"{BAD_RECORD_POLICIES}.")
    self.policy, self.path = policy, path
    self.skipped = collections.Counter()

  def report(self, record: str, reason: str, detail: str = ""):
    message = f"{self.path}: {record}: {reason}{': ' + detail if detail else ''}"
    if self.policy == "error":
      raise ValueError(message + " (set config.data.bad_records='skip' to skip such records)")
    if not self.skipped:
      logging.warning("Skipping bad records, first: %s", message)
    self.skipped[reason] += 1

  def log_summary(self):
    if self.skipped:
      logging.warning("%s: skipped %d bad records: %s", self.path, sum(self.skipped.values()),
                      dict(self.skipped))


class ImageChecker:
  """Sizes of image files, each opened once; with `decode`, fully decoded to catch truncation."""

  def __init__(self, decode: bool):
    self.decode, self.sizes = decode, {}

  def size(self, path: str) -> tuple[int, int]:
    """(width, height); raises ValueError saying what is wrong with the file."""
    if path not in self.sizes:
      if not os.path.exists(path):
        raise ValueError(f"image file {path} not found")
      try:
        with Image.open(path) as image:
          if self.decode:
            image.load()
          self.sizes[path] = image.size
      except (OSError, ValueError, SyntaxError) as e:
        raise ValueError(f"cannot read image {path}: {e}") from None
    return self.sizes[path]


def keypoints_outside(keypoints, visible, width: int, height: int) -> list[int]:
  """Indices of labelled keypoints outside the image [-0.5, size - 0.5]."""
  outside = ((keypoints < -0.5) | (keypoints > np.array([width, height]) - 0.5)).any(-1)
  return np.flatnonzero(outside & (visible > 0)).tolist()


@dataclasses.dataclass
class Records:
  """A split's checked examples: image file paths, or the images themselves (uint8 arrays of
  one shape, as in CSV files that hold pixels)."""
  images: list  # paths or arrays
  keypoints: list
  visible: list
  norm: list
  box: list
  image_id: list

  @classmethod
  def empty(cls):
    return cls([], [], [], [], [], [])

  def append(self, image, keypoints, visible, norm, box, image_id):
    for field, value in zip((self.images, self.keypoints, self.visible, self.norm, self.box,
                             self.image_id), (image, keypoints, visible, norm, box, image_id)):
      field.append(value)

  def __len__(self):
    return len(self.images)

  @property
  def in_memory(self) -> bool:
    return bool(self.images) and isinstance(self.images[0], np.ndarray)

  def arrays(self, start: int, end: int) -> dict:
    images = self.images[start:end]
    image = ({"image": np.stack(images)} if self.in_memory
             else {"path": np.array(images, dtype=object).astype(str)})
    return {**image, "keypoints": np.array(self.keypoints[start:end], np.float32),
            "visible": np.array(self.visible[start:end], np.float32),
            "norm": np.array(self.norm[start:end], np.float32),
            "box": np.array(self.box[start:end], np.float32),
            "image_id": np.array(self.image_id[start:end], np.int64)}


def normaliser(keypoints, visible, box, spec: KeypointSpec, norm_keypoints) -> float | None:
  """The NME denominator: the distance between the two `norm_keypoints` (None when either is
  unlabelled), or without them the box size sqrt(w * h)."""
  if not norm_keypoints:
    return float(np.sqrt(box[2] * box[3]))
  i, j = (spec.index(n) for n in norm_keypoints)
  if not (visible[i] and visible[j]):
    return None
  return float(np.hypot(*(keypoints[i] - keypoints[j])))


def checked_normaliser(bad: BadRecords, record: str, keypoints, visible, box, width: int,
                       height: int, spec: KeypointSpec, norm_keypoints,
                       where: str = "") -> float | None:
  """The record's normaliser, or None after reporting it to `bad`: labelled keypoints outside
  the (width x height) image `where`, or no usable normaliser."""
  outside = keypoints_outside(keypoints, visible, width, height)
  if outside:
    bad.report(record, "keypoints outside the image",
               f"{[spec.names[i] for i in outside]}" + (f" in {width}x{height} image {where}"
                                                        if where else ""))
    return None
  norm = normaliser(keypoints, visible, box, spec, norm_keypoints)
  if norm is None or norm <= 0:
    bad.report(record, "no normaliser", f"config.data.norm_keypoints="
               f"{tuple(norm_keypoints)} not both labelled and apart")
    return None
  return norm


def image_folder(data_config, split: str, annotation_file: str) -> str:
  """Where a split's image file names are relative to: `data.image_dirs[split]`, else the
  annotation file's folder."""
  return data_config.image_dirs.get(split) or os.path.dirname(annotation_file)


def normaliser_name(norm_keypoints, without: str) -> str:
  """What `normaliser` measures, for the spec and the evaluation report."""
  if norm_keypoints:
    return f"distance {norm_keypoints[0]} - {norm_keypoints[1]}"
  return without


def flip_pairs(configured, names) -> tuple[tuple[str, str], ...]:
  """`config.data.flip_pairs`, or the pairs found from left/right names."""
  return tuple(tuple(p) for p in configured) or flip_pairs_from_names(names)


def check_norm_keypoints(norm_keypoints, spec: KeypointSpec):
  if norm_keypoints and (len(norm_keypoints) != 2
                         or any(n not in spec.names for n in norm_keypoints)):
    raise ValueError(f"config.data.norm_keypoints={tuple(norm_keypoints)} must be two of "
                     f"{spec.names}, or () for the box size.")


def records_source(name: str, spec: KeypointSpec, splits: dict[str, Records], channels: int,
                   annotation_files: dict[str, str] | None = None) -> Source:
  """A `Source` of the checked records, reading image files with tf.data."""
  for split, records in splits.items():
    if not len(records):
      raise ValueError(f"{name}: split {split!r} has no usable examples.")

  def read(example):
    if "path" not in example:
      return example
    image = tf.io.decode_image(tf.io.read_file(example.pop("path")), channels=channels,
                               expand_animations=False)
    return {**example, "image": image}

  def load(split, process_index, process_count):
    records = splits[split]
    start, end = process_shard(len(records), process_index, process_count)
    return tf.data.Dataset.from_tensor_slices(records.arrays(start, end)).map(
        read, num_parallel_calls=tf.data.AUTOTUNE)

  in_memory = splits["train"].in_memory
  image_hw = splits["train"].images[0].shape[:2] if in_memory else None
  return Source(name=name, spec=spec, split_sizes={s: len(r) for s, r in splits.items()},
                channels=channels, image_hw=image_hw, load=load,
                annotation_files=annotation_files or {})
