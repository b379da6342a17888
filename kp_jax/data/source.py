"""What every dataset source provides to the pipeline."""

import dataclasses
from typing import Callable

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from kp_jax.data.keypoints import KeypointSpec


@dataclasses.dataclass(frozen=True)
class Source:
  """A dataset as raw examples, before cropping and augmentation.

  Attributes:
    name: for messages and summaries.
    spec: the keypoints' names, flip pairs, skeleton, OKS sigmas and normaliser.
    split_sizes: number of examples in each split.
    channels: image channels (1 grayscale, 3 RGB).
    image_hw: the (height, width) of every image, or None when sizes vary (then the config's
      `data.input_size` says what each example's box is cropped to).
    load: `(split, process_index, process_count) -> tf.data.Dataset` of this process's share
      of the split, in a fixed order, of raw examples: uint8 `image` [h, w, C], float32
      `keypoints` [K, 2] and `visible` [K] in that image's pixels, `norm` [] (the NME
      normaliser, in the same pixels), `box` [4] (x, y, w, h, COCO convention: the object to
      crop; the whole image where there is none) and int64 `image_id` [].
    annotation_files: split -> COCO keypoint JSON the split was read from, the ground truth
      for COCO evaluation; splits without one get ground truth built from the examples.
  """
  name: str
  spec: KeypointSpec
  split_sizes: dict[str, int]
  channels: int
  image_hw: tuple[int, int] | None
  load: Callable[[str, int, int], tf.data.Dataset]
  annotation_files: dict[str, str] = dataclasses.field(default_factory=dict)


def whole_image_box(image):
  """The box (x, y, w, h) of a whole [h, w, C] image."""
  shape = tf.cast(tf.shape(image), tf.float32)
  return tf.stack([0.0, 0.0, shape[1], shape[0]])


def process_shard(size: int, process_index: int, process_count: int) -> tuple[int, int]:
  """[start, end) of this process's contiguous share of `size` examples."""
  bounds = np.linspace(0, size, process_count + 1).round().astype(int)
  return int(bounds[process_index]), int(bounds[process_index + 1])


def tfds_shard(builder, split: str, process_index: int, process_count: int, **as_dataset_kw):
  """(index in `split`, example) pairs of this process's share of a prepared TFDS split.

  `split` may be a TFDS slice ("train[:90%]"); the index becomes the examples' `image_id`.
  """
  size = builder.info.splits[split].num_examples
  start, end = process_shard(size, process_index, process_count)
  subsplit = tfds.core.ReadInstruction.from_spec(split)
  # Slices of a slice are written as absolute example ranges of the underlying split.
  absolute = subsplit.to_absolute(builder.info.splits)[0]
  first = absolute.from_ or 0
  instruction = tfds.core.ReadInstruction(absolute.splitname, from_=first + start,
                                          to=first + end, unit="abs")
  ds = builder.as_dataset(split=instruction, shuffle_files=False, **as_dataset_kw)
  return ds.enumerate(start)
