"""Input pipeline: source -> process shard -> shuffle -> repeat -> augment -> batch -> NumPy.

The training stream is a pure function of (seed, shard, step): the training split is cut into
`data.input_shards` shards (default: one per process), epoch `e` of a shard is that shard
shuffled with seed (seed, shard, e), and its example at stream position `i` is augmented with
the stateless seed (seed, shard, i). Where image files hold several instances (COCO's people),
the shard's images are shuffled instead, each decoded once and augmented together for all its
instances (at the seed of the first one's position), which follow one another in the stream;
positions still count instances. Starting at a step therefore only skips undecoded records, a
resumed run sees exactly the batches an uninterrupted one would have seen, and with a fixed
`input_shards` the global batches do not depend on the number of processes.

Batches come out as NumPy arrays of this process's share of the global batch,
[global_batch / processes, ...], so the train loop never touches TensorFlow; the device layout
(`steps.Parallel.put_batch`) places them. Their images are uint8 pixels: the compiled steps
make the network's input (`pixels.model_input`).
"""

import atexit
import functools
import math
import os
import weakref
from typing import Iterator

import numpy as np
import tensorflow as tf
from absl import logging

from kp_jax.data import (coco, csv_keypoints, deeplabcut, files, instances, sleap, synthetic,
                         tfds_landmarks, transforms, video)
from kp_jax.data.keypoints import KeypointSpec
from kp_jax.data.source import Source, map_images, map_labels

SOURCES = {
    "synthetic_faces": synthetic.source,
    "coco": coco.source,
    "csv": csv_keypoints.source,
    "deeplabcut": deeplabcut.source,
    "sleap": sleap.source,
    "tfds": tfds_landmarks.source,
}


def get_source(data_config) -> Source:
  """The configured source, restricted to the keypoint subset `data.keypoints` names and seen
  as its stage of find-then-refine `data.instances` asks for (the one place both are resolved:
  everything downstream sees only the source's `spec`)."""
  if data_config.source not in SOURCES:
    raise ValueError(f"config.data.source={data_config.source!r} is not a known source; "
                     f"choose one of {sorted(SOURCES)}.")
  read = SOURCES["sleap" if sleap.reads(data_config) else data_config.source]
  source = keypoint_subset(read(data_config), data_config.keypoints)
  return instances.for_stage(source, data_config.get("instances"))  # absent in older runs


def keypoint_subset(source: Source, names) -> Source:
  """`source` with only the keypoints `names` (all when empty), in that order. A COCO file's
  own ground truth has every keypoint, so a subset is evaluated against its examples."""
  if not names:
    return source
  try:
    spec = source.spec.subset(list(names))
  except ValueError as e:
    raise ValueError(f"config.data.keypoints: {e}") from None
  select = transforms.select_keypoints([source.spec.index(n) for n in names])
  annotations, images = source.annotations, source.images
  return map_labels(
      source, select, spec=spec, ground_truth={},
      annotations=None if annotations is None else (
          lambda split: annotations(split).map(select)),
      images=None if images is None else map_images(images, select))


def input_shape(data_config, source: Source) -> tuple[int, int, int]:
  """The model input's (H, W, C): `data.input_size`, or the source's own fixed image size."""
  if data_config.input_size:
    return (*data_config.input_size, source.channels)
  if source.image_hw is None:
    raise ValueError(f"{source.name} has images of varying sizes: set config.data.input_size "
                     "to the (height, width) its boxes are cropped to.")
  return (*source.image_hw, source.channels)


def _compose(*ops):
  def apply(example):
    for op in ops:
      example = op(example)
    return example
  return apply


TRAIN_KEYS = ("image", "keypoints", "visible", "norm")
# The centre model's examples: each instance's (width, height), and the regions to ignore.
OPTIONAL_KEYS = ("size", "ignore")


def _keep(*keys):
  return lambda example: {k: example[k] for k in keys + OPTIONAL_KEYS
                          if k in keys or k in example}


EVAL_KEYS = TRAIN_KEYS + ("matrix", "image_id", "box")


def _select():
  """Raw example -> the keys the pipeline uses (its `image`, or its `encoded` file and that
  file's EXIF `orientation` where it has one)."""
  labels = _keep("keypoints", "visible", "norm", "box", "image_id")
  return lambda example: {**labels(example), **{k: example[k] for k in (
      "image", "encoded", "orientation") if k in example}}


def _start_geometry(data_config):
  """The crop to the object's box when `data.input_size` is set; otherwise the identity."""
  if data_config.input_size:
    return transforms.crop_to_box(tuple(data_config.input_size), data_config.box_padding,
                                  data_config.get("udp", False))
  return transforms.identity_matrix


def _eval_ops(data_config, input_hwc):
  ops = [_select(), _start_geometry(data_config)]
  if data_config.input_size:
    ops.append(transforms.warp_to_input(input_hwc[:2]))
  return _compose(*ops, _keep(*EVAL_KEYS))


def _geometric_op(data_config, spec: KeypointSpec, input_hwc):
  """(example, seed) -> the example warped into the model input by the training augmentation's
  geometry (half-body, crop, rotation, scale, shift, flip: one warp). The example may be
  several instances of one image (`transforms.warp`): each has its own draw from the seed."""
  aug = data_config.augment
  affine = transforms.random_affine(
      spec.flip_permutation(), aug.max_rotation_deg, tuple(aug.scale_range), aug.max_shift,
      aug.flip_probability, input_hwc[:2], input_hwc[2])
  start = _start_geometry(data_config)
  if not aug.half_body_probability:
    return lambda example, seed: affine(start(example), seed)
  upper = [spec.index(n) for n in aug.upper_body]
  lower = [i for i in range(spec.num_keypoints) if i not in upper]
  half_body = transforms.half_body(upper, lower, aug.half_body_probability,
                                   aug.half_body_min_keypoints, data_config.box_padding)

  def op(example, seed):
    half_body_seed, affine_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    return affine(start(half_body(example, half_body_seed)), affine_seed)
  return op


def _photometric_op(data_config):
  """(example, seed) -> the example's uint8 crop with colour jitter and blur, or None when the
  config has neither."""
  aug = data_config.augment
  photometric = []
  if aug.brightness or aug.contrast or aug.saturation:
    photometric.append(transforms.color_jitter(aug.brightness, aug.contrast, aug.saturation))
  if aug.blur_probability:
    photometric.append(transforms.random_blur(aug.blur_probability, aug.max_blur_sigma))
  return transforms.on_unit_float(*photometric) if photometric else None


def _check_augment_config(data_config, spec: KeypointSpec):
  aug = data_config.augment
  unpaired = sorted(set(spec.names) - {n for pair in spec.flip_pairs for n in pair})
  if aug.flip_probability and unpaired:
    logging.warning("Flip augmentation is on and keypoints %s have no left/right partner: "
                    "they must lie on the mirror axis (a nose, a tail), else set "
                    "config.data.flip_pairs or config.data.augment.flip_probability=0.",
                    unpaired)
  if aug.half_body_probability:
    if not data_config.input_size:
      raise ValueError("config.data.augment.half_body_probability needs boxes to crop: set "
                       "config.data.input_size.")
    unknown = [n for n in aug.upper_body if n not in spec.names]
    if unknown or not aug.upper_body:
      raise ValueError(f"config.data.augment.upper_body must name keypoints of {spec.names}; "
                       f"unknown: {unknown or 'none given'}.")


def check_batch_size(global_batch: int, process_count: int, local_devices: int,
                     key: str) -> int:
  """The per-process batch; raises naming `config.<key>` unless it splits over the devices."""
  if global_batch <= 0 or global_batch % (process_count * local_devices):
    raise ValueError(f"config.{key}={global_batch} must be a positive multiple of the number "
                     f"of devices ({process_count * local_devices}).")
  return global_batch // process_count


def _options() -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True
  options.experimental_optimization.map_parallelization = True
  # Parallel maps untuned, a call per core (TensorFlow caps this at its thread pool; its own
  # default, 16, would cap a larger host): tf.data's autotuning thread sleeps up to 60 s
  # between rounds, and closing an iterator sometimes waited that sleep out (23.5 s at the end
  # of a `make train`); crops/s were the same either way (docs/benchmarks.md).
  options.autotune.enabled = False
  options.autotune.initial_parallelism = os.cpu_count() or 1
  return options


def input_shards(data_config, process_index: int, process_count: int) -> tuple[range, int]:
  """The training shards this process reads, and their total number.

  `data.input_shards` (0: one per process) fixes how the training split is cut; each process
  reads an equal run of shards. As the global batch is the concatenation of the shards' batches
  in shard order, the data stream does not depend on how many processes share the shards.
  """
  num_shards = data_config.input_shards or process_count
  if num_shards % process_count:
    raise ValueError(f"config.data.input_shards={num_shards} must be a multiple of the number "
                     f"of processes ({process_count}).")
  per_process = num_shards // process_count
  return range(process_index * per_process, (process_index + 1) * per_process), num_shards


def _epochs(items: tf.data.Dataset, count: int, seed: int, first_epoch: int,
            shuffle_buffer: int) -> tf.data.Dataset:
  """Epochs `first_epoch`, `first_epoch + 1`, ... of `items` (`count` of them), each shuffled
  with its own seed."""
  epochs = tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max)
  return epochs.flat_map(lambda epoch: items.shuffle(
      min(shuffle_buffer, count), seed=seed * 7919 + epoch, reshuffle_each_iteration=False))


def _empty_shard(source: Source, shard: int, num_shards: int):
  return ValueError(f"{source.name}: training shard {shard} of {num_shards} is empty.")


def _instances(config, source: Source, shard: int, num_shards: int, seed: int,
               start: int) -> tf.data.Dataset:
  """(stream position, example) of a training shard's instances, from position `start` on.
  Uncached crops of image files decode each JPEG only in the window its crop reads."""
  data = config.data
  encoded = not data.cache and data.input_size and source.load_encoded is not None
  load = source.load_encoded if encoded else source.load
  examples = load("train", shard, num_shards).map(_select(), num_parallel_calls=tf.data.AUTOTUNE)
  if data.cache:
    examples = examples.cache()
  size = int(examples.cardinality())
  if size <= 0:
    raise _empty_shard(source, shard, num_shards)
  first_epoch = start // size
  stream = _epochs(examples, size, seed, first_epoch, data.shuffle_buffer)
  return stream.enumerate(start=first_epoch * size).skip(start % size)


def _instance_count(photo):
  """How many instances a photo's labels (`Images.files`) hold, as int64."""
  return tf.cast(tf.shape(photo["box"])[0], tf.int64)


def _photo_reader(data_config, source: Source, photos: tf.data.Dataset):
  """photo -> uint8 pixels [h, w, C] of the `photos` (labels, paths and EXIF orientations,
  `Images.files`): decoded from their files, or read back from their copies in
  `data.decoded_copies`."""
  folder = data_config.get("decoded_copies")  # absent in older runs
  if not folder:
    return lambda photo: files.decode_file(photo["path"], source.channels,
                                           photo.get("orientation"))
  turns = photos.map(lambda photo: (photo["path"], photo.get("orientation", 1)))
  read_copy = files.decoded_copies({path.decode(): int(orientation) for path, orientation
                                    in turns.as_numpy_iterator()}, source.channels, folder)
  return lambda photo: read_copy(photo["path"])


def _decoded_photo(photo, read_image) -> dict:
  """A photo's labels and path (`Images.files`) -> its instances' labels ([N, ...]) with the
  image they share, whole (`read_image`: `_photo_reader`'s)."""
  return {**{k: photo[k] for k in ("keypoints", "visible", "norm", "box")},
          "image_id": tf.fill([_instance_count(photo)], photo["image_id"]),
          "image": read_image(photo)}


def _instances_decoded_once(config, source: Source, shard: int, num_shards: int, seed: int,
                            start: int, augment) -> tf.data.Dataset:
  """As `_instances`, a photo at a time ((positions [N], examples [N, ...]) of its instances
  from `start` on), for uncached crops of image files that hold several instances, each
  through `augment(example, position)`: the images are shuffled by their labels, and each is
  read and decoded once, whole, for all its instances, which follow one another in the
  stream; `augment` takes them together (one warp call, one set of ops for all) at the first
  one's position. At COCO's 2.6 people a photo this costs less than an instance at a time
  (benchmarks/input_pipeline.py --coco_like)."""
  photos = source.images.files("train", shard, num_shards)  # labels and paths: nothing read
  size = int(photos.map(_instance_count).reduce(tf.constant(0, tf.int64), lambda a, b: a + b))
  if size <= 0:
    raise _empty_shard(source, shard, num_shards)
  first_epoch = start // size
  read_image = _photo_reader(config.data, source, photos)

  def instances(first, photo):  # those before `start` (a resumed run's first photo) dropped
    skip = tf.maximum(start - first, 0)
    examples = augment(_decoded_photo(photo, read_image), first)
    return (tf.range(first + skip, first + _instance_count(photo)),
            {k: v[skip:] for k, v in examples.items()})

  stream = _epochs(photos, int(photos.cardinality()), seed, first_epoch,
                   config.data.shuffle_buffer)
  # Each photo with the stream position of its first instance; those wholly before `start`
  # are passed over unread.
  stream = stream.scan(tf.constant(first_epoch * size, tf.int64),
                       lambda first, photo: (first + _instance_count(photo), (first, photo)))
  stream = stream.filter(lambda first, photo: first + _instance_count(photo) > start)
  return stream.map(instances, num_parallel_calls=tf.data.AUTOTUNE)


def _shard_batches(config, source: Source, shard: int, num_shards: int, batch_size: int,
                   start_step: int) -> tf.data.Dataset:
  """Endless augmented batches of one training shard, from `start_step` on."""
  data = config.data
  seed = config.seed * 1_000_003 + shard  # shards are shuffled and augmented independently
  decode_once = (data.get("decode_once_per_photo", True)  # absent in older runs
                 and not data.cache and data.input_size and source.images is not None
                 and source.images.files is not None)
  if data.get("decoded_copies") and not decode_once:
    raise ValueError(
        "config.data.decoded_copies keeps decoded copies of photos that are decoded once for "
        "all their instances (uncached crops of image files that hold several instances: "
        "data.cache = False, data.decode_once_per_photo = True, data.input_size set); "
        f"{source.name} here is read another way: set it to \"\".")
  geometric = _geometric_op(data, source.spec, input_shape(data, source))
  photometric = _photometric_op(data)

  def seeds(position):  # (geometric, photometric) seeds of the example at `position`
    return tf.unstack(tf.random.experimental.stateless_split(
        transforms.example_seed(seed, position), 2))

  def geometric_at(example, position):  # one instance, or several of one image
    return _keep(*TRAIN_KEYS)(geometric(example, seeds(position)[0]))

  def photometric_at(position, example):  # one instance: each its own draw
    return photometric(example, seeds(position)[1]) if photometric else example

  start = start_step * batch_size
  if decode_once:
    photos = _instances_decoded_once(config, source, shard, num_shards, seed, start,
                                     geometric_at)
    if not photometric:  # each photo's crops copied into the batch at once
      return photos.map(lambda positions, examples: examples).rebatch(batch_size,
                                                                       drop_remainder=True)
    stream = photos.unbatch().map(photometric_at, num_parallel_calls=tf.data.AUTOTUNE)
  else:  # the geometric and photometric draws in one map
    stream = _instances(config, source, shard, num_shards, seed, start).map(
        lambda position, example: photometric_at(position, geometric_at(example, position)),
        num_parallel_calls=tf.data.AUTOTUNE)
  return stream.batch(batch_size, drop_remainder=True)


def _clip_op(data_config, input_hwc, teacher_view: bool):
  """(uint8 clip [T, h, w, C], seed) -> {"unlabelled": uint8 [T, H, W, C],
  "unlabelled_matrix": [3, 3]}: every frame of the clip fitted into the input as the labelled
  frames are and moved by one draw of the geometric augmentation, so the frames stay
  comparable. Without flips: a flip swaps left and right keypoints, which a loss on the
  clip's own predictions cannot undo. `teacher_view`: a second, independent draw of the same
  frames for the EMA teacher (`teacher`, `teacher_matrix`)."""
  aug = data_config.augment
  input_hw = input_hwc[:2]

  def view(clip, seed):
    shape = tf.cast(tf.shape(clip), tf.float32)
    frame = transforms.box_matrix(tf.stack([0.0, 0.0, shape[2], shape[1]]), input_hw,
                                  data_config.box_padding, data_config.get("udp", False))
    augment, _ = transforms.draw_affine(seed, aug.max_rotation_deg, tuple(aug.scale_range),
                                        aug.max_shift, 0.0, input_hw)
    matrix = augment @ frame
    return transforms.warp_clip(clip, matrix, input_hw), matrix

  def op(clip, seed):
    student_seed, teacher_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    frames, matrix = view(clip, student_seed)
    out = {"unlabelled": frames, "unlabelled_matrix": matrix}
    if teacher_view:
      out["teacher"], out["teacher_matrix"] = view(clip, teacher_seed)
    return out
  return op


def _clip_batches(config, input_hwc, process_index: int, process_count: int,
                  local_devices: int) -> tf.data.Dataset:
  """This process's share of `data.unlabelled_batch_size` clips a step from the unlabelled
  videos (kp_jax/data/video.py): the videos split over the processes where there are enough
  of them, else every process reads them all from its own random offsets."""
  data = config.data
  per_process = check_batch_size(data.unlabelled_batch_size, process_count, local_devices,
                                 "data.unlabelled_batch_size")
  if not data.input_size:
    raise ValueError("Unlabelled clips are fitted into config.data.input_size: set it (a "
                     "whole-frame model's input, e.g. configs/lightning_pose.py:whole_frame).")
  paths = video.find_videos(data)
  if not paths:
    raise ValueError(f"config.data.unlabelled_batch_size={data.unlabelled_batch_size} but no "
                     "unlabelled videos: set config.data.unlabelled_videos (or put them in the "
                     "project's videos/ folder).")
  if len(paths) >= process_count:
    paths = paths[process_index::process_count]
  seed = config.seed * 1_000_003 + process_index
  teacher_view = bool(config.unsupervised.consistency.weight)
  clip_op = _clip_op(data, input_hwc, teacher_view)
  clips = video.clip_stream(paths, data.clip_length, input_hwc[2], seed,
                            data.get("upright", True)).enumerate()  # absent in older runs
  clips = clips.map(lambda i, clip: clip_op(clip, transforms.example_seed(seed, i)),
                    num_parallel_calls=tf.data.AUTOTUNE)
  return clips.shuffle(data.clip_shuffle_buffer, seed=seed).batch(per_process,
                                                                 drop_remainder=True)


# tf.data's threads still running when the interpreter exits abort its exit ("terminate called
# without an active exception") or hang it; training streams never end, so the iterators left
# open are closed first (their datasets are freed with them).
_OPEN_ITERATORS = weakref.WeakSet()


@atexit.register
def _close_open_iterators():
  for iterator in list(_OPEN_ITERATORS):
    iterator.close()


def _closed_at_exit(generator_function):
  """`generator_function`, whose generators are closed at exit if still open."""
  @functools.wraps(generator_function)
  def start(*args, **kwargs):
    generator = generator_function(*args, **kwargs)
    _OPEN_ITERATORS.add(generator)
    return generator
  return start


@_closed_at_exit
def train_iterator(config, source: Source, *, start_step: int, local_devices: int,
                   process_index: int = 0, process_count: int = 1) -> Iterator[dict]:
  """Endless augmented training batches of this process, starting at `start_step`; with
  `data.unlabelled_batch_size`, each also holds that share of clips of unlabelled video."""
  check_batch_size(config.batch_size, process_count, local_devices, "batch_size")
  _check_augment_config(config.data, source.spec)
  shards, num_shards = input_shards(config.data, process_index, process_count)
  if config.batch_size % num_shards:
    raise ValueError(f"config.batch_size={config.batch_size} must be divisible by "
                     f"config.data.input_shards ({num_shards}).")
  streams = tuple(_shard_batches(config, source, shard, num_shards,
                                 config.batch_size // num_shards, start_step) for shard in shards)
  stream = tf.data.Dataset.zip(streams).map(
      lambda *batches: {k: tf.concat([b[k] for b in batches], 0) for k in batches[0]})
  if config.data.get("unlabelled_batch_size"):
    clips = _clip_batches(config, input_shape(config.data, source), process_index,
                          process_count, local_devices)
    stream = tf.data.Dataset.zip(stream, clips).map(lambda batch, more: {**batch, **more})
  stream = stream.prefetch(config.data.prefetch)
  yield from stream.with_options(_options()).as_numpy_iterator()


def check_split(source: Source, split: str):
  """A split to evaluate: one the source has, with examples in it."""
  if split not in source.split_sizes:
    raise ValueError(f"{source.name} has no split {split!r}; it has {sorted(source.split_sizes)}.")
  if source.split_sizes[split] == 0:
    raise ValueError(f"{source.name}: split {split!r} is empty.")


def num_eval_batches(source: Source, split: str, global_batch: int) -> int:
  """Batches per process: enough for the largest process shard, the same on every process."""
  check_split(source, split)
  return math.ceil(source.split_sizes[split] / global_batch)


@_closed_at_exit
def eval_iterator(config, source: Source, split: str, *, local_devices: int,
                  process_index: int = 0, process_count: int = 1) -> Iterator[dict]:
  """One pass over `split`, unaugmented, padded to whole batches with a `mask` (1 = real)."""
  local_batch = check_batch_size(config.eval_batch_size, process_count, local_devices,
                                  "eval_batch_size")
  num_batches = num_eval_batches(source, split, config.eval_batch_size)
  ops = _eval_ops(config.data, input_shape(config.data, source))
  ds = source.load(split, process_index, process_count).map(
      ops, num_parallel_calls=tf.data.AUTOTUNE)
  batches = ds.batch(local_batch).prefetch(2).with_options(_options()).as_numpy_iterator()
  template = None
  for _ in range(num_batches):
    batch = next(batches, None)
    if batch is None:  # this process ran out before the others: a fully masked batch
      batch = {k: v[:0] for k, v in template.items()}
    template = batch
    real = len(batch["image"])
    padded = {k: np.concatenate([v, np.zeros((local_batch - real, *v.shape[1:]), v.dtype)])
              for k, v in batch.items()}
    padded["mask"] = (np.arange(local_batch) < real).astype(np.float32)
    yield padded


def device_batch(batch: dict) -> dict:
  """The keys the compiled evaluation step uses (the rest identify the source examples)."""
  return {k: batch[k] for k in (*TRAIN_KEYS, *OPTIONAL_KEYS, "matrix", "box", "mask")
          if k in batch}


def training_mean_shape(data_config, source: Source) -> np.ndarray:
  """Mean training keypoints [K, 2] in model input pixels (each over the examples where it is
  visible): the baseline predictor's output."""
  spec = source.spec
  input_hw = input_shape(data_config, source)[:2]
  start = _compose(_keep("keypoints", "visible", "box"), _start_geometry(data_config))

  def points(example):
    example = start(example)
    return transforms.move_keypoints(example["keypoints"], example["visible"],
                                     example["matrix"], input_hw)
  # From the labels alone where the source has them apart (no image read or decoded).
  labels = (source.load("train", 0, 1) if source.annotations is None
            else source.annotations("train"))
  ds = labels.map(points, num_parallel_calls=tf.data.AUTOTUNE)
  total, count = 0.0, 0.0
  for keypoints, visible in ds.batch(4096).as_numpy_iterator():
    total = total + (keypoints * visible[..., None]).sum(0, dtype=np.float64)
    count = count + visible.sum(0, dtype=np.float64)
  mean = total / np.maximum(count, 1)[:, None]
  never = count == 0
  if never.any():  # the baseline is a report: place such keypoints at the others' centre
    centre = mean[~never].mean(0) if (~never).any() else np.array(input_hw[::-1]) / 2 - 0.5
    mean[never] = centre
    logging.warning("%s: keypoints %s are never labelled in the train split: the model gets no "
                    "signal for them, and the mean-shape baseline puts them at the centre of "
                    "the others.", source.name, [spec.names[i] for i in np.flatnonzero(never)])
  return mean.astype(np.float32)
