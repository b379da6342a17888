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
    ground_truth: split -> a function returning (COCO ground truth, category id) for COCO
      evaluation, for splits read from COCO files; the others get one built from the examples.
    annotations: `split -> tf.data.Dataset` of the whole split's `keypoints`, `visible` and
      `box` as `load` gives them, without reading an image, for sources that hold their
      labels apart from the images (files); None where only `load` can tell.
    images: for sources whose images hold several instances, the image-level view (`load`
      gives one example per instance); None: `load`'s examples are the images.
    load_encoded: as `load`, with each image's file bytes as `encoded` [] (tf.string) in
      place of `image` (and, where some files are stored turned or mirrored, each file's EXIF
      `orientation` [] int32, 1 to 8: `transforms.upright` gives the pixels its labels are
      in), for sources that read image files: training decodes only the window
      its crop reads (transforms.decode_window) unless it decodes whole images once for their
      instances (`Images.files`). None: `load` only.
  """
  name: str
  spec: KeypointSpec
  split_sizes: dict[str, int]
  channels: int
  image_hw: tuple[int, int] | None
  load: Callable[[str, int, int], tf.data.Dataset]
  ground_truth: dict[str, Callable[[], tuple[dict, int]]] = dataclasses.field(
      default_factory=dict)
  annotations: Callable[[str], tf.data.Dataset] | None = None
  images: "Images | None" = None
  load_encoded: Callable[[str, int, int], tf.data.Dataset] | None = None


@dataclasses.dataclass(frozen=True)
class Images:
  """Every labelled instance of an image together: what a model that finds instances learns.

  Attributes:
    split_sizes: number of images in each split.
    load: `(split, process_index, process_count) -> tf.data.Dataset` of this process's share
      of the split's images: uint8 `image` [h, w, C], float32 `keypoints` [N, K, 2],
      `visible` [N, K], `box` [N, 4] and `norm` [N] (each instance's, as `Source.load` gives
      them), int64 `image_id` []; N varies from image to image. Optionally `ignore` [N]: 1
      for a region that is neither an instance nor background (COCO's crowds and unlabelled
      people, boxes without keypoints).
    files: as `load`, with each image's file path as `path` [] (tf.string) in place of
      `image` (and its EXIF `orientation`, as `Source.load_encoded` has it), and only its
      labelled instances (no `ignore`): nothing is read, so training
      crops shuffle and skip images by their labels, then decode each once for all its
      instances. None where the images are not files.
  """
  split_sizes: dict[str, int]
  load: Callable[[str, int, int], tf.data.Dataset]
  files: Callable[[str, int, int], tf.data.Dataset] | None = None


def _mapped(load, op):
  if load is None:
    return None
  return lambda split, index, count: load(split, index, count).map(
      op, num_parallel_calls=tf.data.AUTOTUNE)


def map_labels(source: Source, op, **changes) -> Source:
  """`source` with `op` (example -> example, on its labels only) applied to every example of
  `load` and `load_encoded` alike, and `changes` made."""
  return dataclasses.replace(source, load=_mapped(source.load, op),
                             load_encoded=_mapped(source.load_encoded, op), **changes)


def map_images(images: Images, op) -> Images:
  """`images` with `op` (image -> image, on its instances' labels only) applied to every image
  of `load` and `files` alike."""
  return dataclasses.replace(images, load=_mapped(images.load, op),
                             files=_mapped(images.files, op))


def one_instance_images(source: Source) -> Images:
  """The image-level view of a source whose every example is an image with one instance."""
  if source.images is not None:
    return source.images
  def as_image(example):
    return {**example, **{k: example[k][None] for k in ("keypoints", "visible", "box", "norm")}}
  load = source.load
  return Images(source.split_sizes, lambda split, index, count: load(split, index, count).map(
      as_image, num_parallel_calls=tf.data.AUTOTUNE))


def whole_image_box(image):
  """The box (x, y, w, h) of a whole [h, w, C] image."""
  shape = tf.cast(tf.shape(image), tf.float32)
  return tf.stack([0.0, 0.0, shape[1], shape[0]])


def process_shard(size: int, process_index: int, process_count: int) -> tuple[int, int]:
  """[start, end) of this process's contiguous share of `size` examples."""
  bounds = np.linspace(0, size, process_count + 1).round().astype(int)
  return int(bounds[process_index]), int(bounds[process_index + 1])


def tfds_split_size(builder, split: str) -> int:
  """Examples in a (possibly sliced) TFDS split; counted when the builder lacks split metadata
  (as under `tfds.testing.mock_data`)."""
  try:
    return builder.info.splits[split].num_examples
  except KeyError:
    return int(builder.as_dataset(split=split).reduce(0, lambda count, _: count + 1))


def tfds_shard(builder, split: str, process_index: int, process_count: int,
               decoders: dict | None = None):
  """(image id, example) pairs of this process's share of a prepared TFDS split (which may be
  a slice such as "train[:90%]"), its features decoded by TFDS unless `decoders` says
  otherwise. Ids are unique over processes: the process index in the high bits, the position
  in its share in the low ones."""
  shard = tfds.even_splits(split, n=process_count, drop_remainder=False)[process_index]
  return builder.as_dataset(split=shard, shuffle_files=False, decoders=decoders).enumerate(
      process_index << 32)
