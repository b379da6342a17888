"""Where each labelled instance is, for the two stages of find-then-refine.

An instance's centre is the centre of its labelled keypoints' bounding box, or of a chosen
few of them (`anchor`: one is SLEAP's `anchor_part`, a stable body part such as the thorax;
several leave out a rarely labelled, far-off one), or the centre of the source's own box
(`data.instances.centre = "box"`, for COCO files whose boxes were drawn). Its size is that
bounding box's width and height times `1 + margin` (the source's box as it is).

  data.instances.stage = "centre"  the whole frame; the example's "keypoints" [M, 2] are the
                                   centres of its instances (M = `max_instances`, the unused
                                   ones invisible), its `size` [M, 2] their (width, height)
                                   and `ignore` [M] marks regions (centre, size) that are
                                   neither (COCO's crowds): what the centre model learns
                                   (stage 1).
  data.instances.stage = "crop"    a fixed-size crop (`crop_size`, source pixels) about each
                                   instance's centre: what the keypoint model sees (stage 2).

Both stages compute the centre with `instance_centre`, so the crop that stage 2 trains on is
the crop that stage 1's prediction places. Pure tf ops on raw examples (source pixels), so the
augmentation that follows moves the centre like any keypoint and scales the size.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from kp_jax.data.keypoints import KeypointSpec
from kp_jax.data.source import Source, map_labels, one_instance_images, whole_image_box

CENTRE_FROM = ("keypoints", "box")


def centre_spec(max_instances: int) -> KeypointSpec:
  """The centre model's "keypoints": one slot per instance, interchangeable (no flip pairs)."""
  names = (("centre",) if max_instances == 1
           else tuple(f"centre_{i}" for i in range(max_instances)))
  return KeypointSpec(names, normaliser="instance size sqrt(w * h)")


def _extent(keypoints, labelled):
  """(low [..., 2], high [..., 2], any labelled [...]) of the labelled keypoints [..., K, 2]."""
  big = tf.float32.max
  low = tf.reduce_min(tf.where(labelled[..., None], keypoints, big), -2)
  high = tf.reduce_max(tf.where(labelled[..., None], keypoints, -big), -2)
  return low, high, tf.reduce_any(labelled, -1)


def instance_centre(keypoints, visible, box, anchor, margin: float,
                    centre_from: str = "keypoints"):
  """(centre [..., 2], size [..., 2], found [...]) of instances (`keypoints` [..., K, 2],
  `visible` [..., K], `box` [..., 4]), source pixels.

  The centre is the middle of the labelled `anchor` keypoints' extent (indices; None: all
  keypoints), so one anchor is that keypoint; the size is every labelled keypoint's extent
  times 1 + margin. The extent counts pixels (+1): a single point is 1 x 1. `found` is 0 when
  no anchor keypoint is labelled; then the centre is the box's.
  """
  box = tf.cast(box, tf.float32)
  box_centre = box[..., :2] + box[..., 2:] / 2 - 0.5
  if centre_from == "box":
    return box_centre, box[..., 2:], tf.ones(tf.shape(box)[:-1])
  labelled = visible > 0
  low, high, any_labelled = _extent(keypoints, labelled)
  size = tf.where(any_labelled[..., None], high - low + 1, box[..., 2:]) * (1 + margin)
  if anchor is not None:
    low, high, any_labelled = _extent(tf.gather(keypoints, anchor, axis=-2),
                                      tf.gather(labelled, anchor, axis=-1))
  centre = tf.where(any_labelled[..., None], (low + high) / 2, box_centre)
  return centre, size, tf.cast(any_labelled, tf.float32)


def crop_reach(keypoints, visible, centre, margin: float):
  """The (width, height) of the smallest crop about `centre` holding every labelled keypoint
  (pixels counted, +1), times 1 + margin."""
  labelled = visible > 0
  offset = tf.where(labelled[:, None], tf.abs(keypoints - centre), 0.0)
  return (2 * tf.reduce_max(offset, 0) + 1) * (1 + margin)


@dataclasses.dataclass(frozen=True)
class Instances:
  """`config.data.instances`, resolved against a source's keypoints."""
  stage: str  # "", "centre" or "crop"
  anchor: tuple[int, ...] | None  # the keypoints whose extent's middle is the centre; all
  margin: float
  centre_from: str
  crop_size: tuple[float, float] | None  # (height, width) in source pixels
  max_instances: int  # the centre model's instance slots per image

  def centre(self, example):
    return instance_centre(example["keypoints"], example["visible"], example["box"],
                           self.anchor, self.margin, self.centre_from)


def resolve(instances_config, spec: KeypointSpec) -> Instances:
  """`config.data.instances` checked against `spec`, raising errors naming the key."""
  stage = instances_config.stage
  if stage not in ("", "centre", "crop"):
    raise ValueError(f"config.data.instances.stage={stage!r}: choose '' (the source's boxes), "
                     "'centre' (the centre model's whole frames) or 'crop' (crops about each "
                     "instance's centre).")
  anchor = instances_config.anchor
  anchor = (anchor,) if isinstance(anchor, str) else tuple(anchor)
  unknown = [name for name in anchor if name not in spec.names]
  if unknown:
    raise ValueError(f"config.data.instances.anchor={instances_config.anchor!r}: {unknown} are "
                     f"not keypoints of {spec.names}.")
  if instances_config.centre not in CENTRE_FROM:
    raise ValueError(f"config.data.instances.centre={instances_config.centre!r}: choose one of "
                     f"{CENTRE_FROM}.")
  max_instances = instances_config.get("max_instances", 1)  # absent in older runs: one
  if stage == "centre" and max_instances < 1:
    raise ValueError(f"config.data.instances.max_instances={max_instances}: set the most "
                     "instances an image holds (kp_jax.two_stage derives it from the labels).")
  crop_size = tuple(float(v) for v in instances_config.crop_size) or None
  if stage == "crop" and (crop_size is None or len(crop_size) != 2 or min(crop_size) <= 0):
    raise ValueError(f"config.data.instances.crop_size={instances_config.crop_size}: crops need "
                     "a positive (height, width) in source pixels (kp_jax.two_stage derives it "
                     "from the labels).")
  return Instances(stage, tuple(spec.index(name) for name in anchor) or None,
                   float(instances_config.margin), instances_config.centre, crop_size,
                   max_instances)


def crop_box(centre, crop_size):
  """The box (x, y, w, h, COCO convention) of a crop of (height, width) about `centre`."""
  size = tf.constant(crop_size[::-1], tf.float32)
  return tf.concat([centre + 0.5 - size / 2, size], 0)


def centre_source(source: Source, instances: Instances) -> Source:
  """Stage 1's examples: whole images whose keypoints are their instances' centres, with their
  `size`, in `max_instances` slots (the unused ones invisible)."""
  slots = instances.max_instances

  def to_centres(image):
    centre, size, found = instances.centre(image)
    count = tf.shape(centre)[0]
    check = tf.debugging.assert_less_equal(count, slots, message=(
        f"{source.name}: an image holds more instances than config.data.instances."
        f"max_instances={slots}; raise it"))
    with tf.control_dependencies([check]):
      count = tf.identity(count)
    pad = lambda x: tf.pad(x, [[0, slots - count]] + [[0, 0]] * (len(x.shape) - 1))
    ignore = image.get("ignore", tf.zeros([count]))
    found = found * (1 - ignore)
    centre, size, found, ignore = pad(centre), pad(size), pad(found), pad(ignore)
    # Each instance's size is its NME normaliser; the example's is their mean.
    sizes = tf.sqrt(size[:, 0] * size[:, 1])
    norm = tf.reduce_sum(sizes * found) / tf.maximum(tf.reduce_sum(found), 1.0)
    return {"image": image["image"], "keypoints": tf.ensure_shape(centre, [slots, 2]),
            "visible": tf.ensure_shape(found, [slots]), "norm": norm,
            "size": tf.ensure_shape(size, [slots, 2]),
            "ignore": tf.ensure_shape(ignore, [slots]),
            "box": whole_image_box(image["image"]), "image_id": image["image_id"]}
  images = one_instance_images(source)
  # The whole-image box needs the image, so the labels-only view is not available.
  return dataclasses.replace(
      source, name=f"{source.name} (instance centres)", spec=centre_spec(slots),
      split_sizes=images.split_sizes, ground_truth={}, annotations=None, images=None,
      load=lambda split, index, count: images.load(split, index, count).map(
          to_centres, num_parallel_calls=tf.data.AUTOTUNE), load_encoded=None)


def crop_source(source: Source, instances: Instances) -> Source:
  """Stage 2's examples: the source's, each boxed by a `crop_size` crop about its centre."""
  def to_crop(example):
    centre, _, _ = instances.centre(example)
    return {**example, "box": crop_box(centre, instances.crop_size)}
  annotations = source.annotations
  return map_labels(
      source, to_crop, ground_truth={}, images=None,  # the file's own boxes are not the crops
      annotations=None if annotations is None else (
          lambda split: annotations(split).map(to_crop)))


def for_stage(source: Source, instances_config) -> Source:
  """`source` as the configured stage sees it (unchanged for ordinary runs)."""
  if instances_config is None:  # a run from before the two stages
    return source
  instances = resolve(instances_config, source.spec)
  if instances.stage == "centre":
    return centre_source(source, instances)
  if instances.stage == "crop":
    return crop_source(source, instances)
  return source


def largest_crop(source: Source, instances_config, split: str = "train") -> np.ndarray:
  """The (height, width) in source pixels of the smallest crop about each instance's centre
  that holds all its labelled keypoints with the margin, the largest over `split`; from the
  labels alone where the source holds them apart from the images."""
  instances = resolve(instances_config, source.spec)
  labels = (source.load(split, 0, 1) if source.annotations is None
            else source.annotations(split))

  def reach(example):
    return crop_reach(example["keypoints"], example["visible"], instances.centre(example)[0],
                      instances.margin)
  sizes = labels.map(reach, num_parallel_calls=tf.data.AUTOTUNE)
  largest = np.zeros(2)
  for batch in sizes.batch(4096).as_numpy_iterator():
    largest = np.maximum(largest, batch.max(0))
  return largest[::-1]  # (width, height) -> (height, width)


def most_instances(source: Source, split: str = "train") -> int:
  """The most labelled instances one image of `split` holds (1 where each example is one)."""
  if source.images is None:
    return 1
  counts = source.images.load(split, 0, 1).map(lambda image: tf.shape(image["visible"])[0],
                                               num_parallel_calls=tf.data.AUTOTUNE)
  return int(counts.reduce(tf.constant(1), tf.maximum))
