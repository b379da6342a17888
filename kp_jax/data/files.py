"""Datasets read from files (COCO-format JSON, CSV): checked records -> tf.data raw examples.

The annotation files are parsed and checked in Python before training starts, so bad data
fails at once with the file and record at fault (or, with `data.bad_records = "skip"`, is
skipped and counted); images are then read and decoded by tf.data.
"""

import collections
import dataclasses
import functools
import hashlib
import os
import time

import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image

from kp_jax.data import transforms
from kp_jax.data.keypoints import KeypointSpec, flip_pairs_from_names
from kp_jax.data.source import Images, Source, process_shard

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


def exif_orientation(image: Image.Image) -> int:
  """An opened image's EXIF orientation (1 where it has none), read without decoding it: a
  PNG's counts where it comes before the pixels, as PIL writes it (PIL would decode the
  pixels to look after them)."""
  if image.format == "PNG" and "exif" not in image.info:
    return 1
  return image.getexif().get(transforms.EXIF_ORIENTATION_TAG, 1)


# Pillow's names of the formats training decodes (transforms.decode_image); MPO: the JPEGs of
# phones that keep several pictures.
DECODED_FORMATS = ("JPEG", "MPO", "PNG", "GIF", "BMP", "WEBP", "TIFF")


class ImageChecker:
  """Sizes of image files, each opened once; with `decode`, fully decoded to catch truncation.
  With `upright`, each is seen as viewers show it: its size and, in `orientations`, the EXIF
  orientation (2 to 8) of each file stored turned or mirrored (`transforms.upright`)."""

  def __init__(self, decode: bool, upright: bool = True):
    self.decode, self.upright, self.sizes, self.orientations = decode, upright, {}, {}

  @classmethod
  def for_config(cls, data_config):
    return cls(decode=data_config.verify_images,
               upright=data_config.get("upright", True))  # absent in older runs

  def size(self, path: str) -> tuple[int, int]:
    """(width, height); raises ValueError saying what is wrong with the file."""
    if path not in self.sizes:
      if not os.path.exists(path):
        raise ValueError(f"image file {path} not found")
      try:
        with Image.open(path) as image:
          if image.format not in DECODED_FORMATS:
            raise ValueError(f"a {image.format} file, which training does not decode; convert "
                             f"it to one of {', '.join(DECODED_FORMATS[:1] + DECODED_FORMATS[2:])}")
          if self.decode:
            image.load()
          width, height = image.size
          orientation = exif_orientation(image) if self.upright else 1
      except (OSError, ValueError, SyntaxError) as e:
        raise ValueError(f"cannot read image {path}: {e}") from None
      if orientation != 1 and orientation in transforms.EXIF_ORIENTATIONS:
        self.orientations[path] = orientation
        if transforms.EXIF_ORIENTATIONS[orientation][0]:  # transposed
          width, height = height, width
      self.sizes[path] = width, height
    return self.sizes[path]

  def log_summary(self, where: str):
    if self.orientations:
      logging.info("%s: %d of %d images are stored turned or mirrored (EXIF orientation; "
                   "first: %s): read upright, as viewers show them and labelling tools label "
                   "them (config.data.upright = False reads the stored pixels).", where,
                   len(self.orientations), len(self.sizes), next(iter(self.orientations)))


OUTSIDE_KEYPOINT_POLICIES = ("keep", "invisible", "error")


def keypoints_outside(keypoints, visible, width: int, height: int) -> list[int]:
  """Indices of labelled keypoints outside the image [-0.5, size - 0.5]."""
  outside = ((keypoints < -0.5) | (keypoints > np.array([width, height]) - 0.5)).any(-1)
  return np.flatnonzero(outside & (visible > 0)).tolist()


class OutsideKeypoints:
  """What `config.data.outside_keypoints` does with labelled keypoints outside their image (a
  head top above the frame): "keep" them (MMPose's and DeepLabCut's choice, the default),
  make them "invisible", or report an "error"; kept and hidden ones are counted and logged."""

  def __init__(self, policy: str, path: str):
    if policy not in OUTSIDE_KEYPOINT_POLICIES:
      raise ValueError(f"config.data.outside_keypoints={policy!r}: choose one of "
                       f"{OUTSIDE_KEYPOINT_POLICIES}.")
    self.policy, self.path, self.count, self.first = policy, path, 0, ""

  def visible(self, bad: BadRecords, record: str, keypoints, visible, width: int, height: int,
              spec: KeypointSpec, where: str = ""):
    """The record's visibility under the policy, or None after reporting it to `bad`."""
    outside = keypoints_outside(keypoints, visible, width, height)
    if not outside:
      return visible
    detail = f"{[spec.names[i] for i in outside]}" + (f" in {width}x{height} image {where}"
                                                      if where else "")
    if self.policy == "error":
      bad.report(record, "keypoints outside the image", detail + " (config.data."
                 "outside_keypoints='keep' keeps them)")
      return None
    self.count += len(outside)
    self.first = self.first or f"{record}: {detail}"
    if self.policy == "invisible":
      visible = visible.copy()
      visible[outside] = 0
    return visible

  def log_summary(self):
    if self.count:
      logging.info("%s: %d labelled keypoints lie outside their images (first: %s); "
                   "config.data.outside_keypoints=%r.", self.path, self.count, self.first,
                   self.policy)


def find_image(image_dir: str, file_name: str) -> str:
  """The image a record's `file_name` names under `image_dir`: the path as given, else with
  its leading folders dropped one by one (exports often name "train2017/x.jpg" or
  "data/images/x.jpg" while `image_dir` is already that folder). Raises ValueError naming
  what was tried."""
  parts = [p for p in file_name.replace("\\", "/").split("/") if p]
  if os.path.isabs(file_name) and os.path.exists(file_name):
    return file_name
  tried = [os.path.join(image_dir, *parts[i:]) for i in range(len(parts))]
  for path in tried:
    if os.path.exists(path):
      return path
  raise ValueError(f"image file {tried[0]} not found" + (
      f" (nor {', '.join(tried[1:])})" if len(tried) > 1 else "")
      + "; set config.data.image_dirs to the folder the file names are relative to")


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
  # (image id, box) of the regions not trained on as instances (COCO's crowds and unlabelled
  # people): the centre model learns neither an instance nor background there.
  ignored: list = dataclasses.field(default_factory=list)

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

  def arrays(self, start: int, end: int, images: bool = True) -> dict:
    """The records [start, end) as arrays; with `images`, their `image`s or image `path`s."""
    image = {}
    if images:
      image = ({"image": np.stack(self.images[start:end])} if self.in_memory
               else {"path": np.array(self.images[start:end], dtype=object).astype(str)})
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


def checked_labels(bad: BadRecords, outside: OutsideKeypoints, record: str, keypoints, visible,
                   box, width: int, height: int, spec: KeypointSpec, norm_keypoints,
                   where: str = ""):
  """(visibility, normaliser) of a record under the outside-keypoints policy, or None after
  reporting it to `bad` (keypoints outside the image under "error", no usable normaliser)."""
  visible = outside.visible(bad, record, keypoints, visible, width, height, spec, where)
  if visible is None:
    return None
  norm = normaliser(keypoints, visible, box, spec, norm_keypoints)
  if norm is None or norm <= 0:
    bad.report(record, "no normaliser", f"config.data.norm_keypoints="
               f"{tuple(norm_keypoints)} not both labelled and apart")
    return None
  return visible, norm


def image_folder(data_config, split: str, annotation_file: str) -> str:
  """Where a split's image file names are relative to: `data.image_dirs[split]`, else the
  annotation file's folder - or, when that folder is named `annotations`, the dataset root
  above it (COCO's, PoseTrack's and several MMPose datasets' layout)."""
  folder = os.path.dirname(os.path.abspath(annotation_file))
  if os.path.basename(folder) == "annotations":
    folder = os.path.dirname(folder)
  return data_config.image_dirs.get(split) or folder


def read_splits(data_config, kind: str, read_split, images: ImageChecker):
  """Every split of `data.files` ({split: path}; "train" first), each read by
  `read_split(path, image_folder, data_config, images, carried)` -> (carried, records), where
  `carried` is what the splits must share (the keypoints), None for the first. Returns the
  last `carried` and {split: records}."""
  if "train" not in data_config.files:
    raise ValueError(f"config.data.files needs a 'train' entry ({kind}); it has "
                     f"{sorted(data_config.files)}.")
  carried, splits = None, {}
  for split in ["train"] + sorted(set(data_config.files) - {"train"}):
    path = data_config.files[split]
    carried, splits[split] = read_split(path, image_folder(data_config, split, path),
                                        data_config, images, carried)
  images.log_summary(data_config.files["train"])
  return carried, splits


def normaliser_name(norm_keypoints, without: str) -> str:
  """What `normaliser` measures, for the spec and the evaluation report."""
  if norm_keypoints:
    return f"distance {norm_keypoints[0]} - {norm_keypoints[1]}"
  return without


def flip_pairs(configured, names, in_file=(), where: str = "") -> tuple[tuple[str, str], ...]:
  """`config.data.flip_pairs`, else the pairs the annotation file gives (`in_file`), else
  those found from the names (`flip_pairs_from_names`); logs which and what stays unpaired."""
  if configured:
    return tuple(tuple(p) for p in configured)
  pairs, origin = (tuple(in_file), "given in the file") if in_file else (
      flip_pairs_from_names(names), "found from the names")
  unpaired = sorted(set(names) - {n for pair in pairs for n in pair})
  logging.info("%s: flip pairs %s: %s; without a partner: %s (set config.data.flip_pairs to "
               "change them).", where, origin, list(pairs), unpaired)
  return pairs


def check_norm_keypoints(norm_keypoints, spec: KeypointSpec):
  if norm_keypoints and (len(norm_keypoints) != 2
                         or any(n not in spec.names for n in norm_keypoints)):
    raise ValueError(f"config.data.norm_keypoints={tuple(norm_keypoints)} must be two of "
                     f"{spec.names}, or () for the box size.")


def records_source(name: str, spec: KeypointSpec, splits: dict[str, Records], channels: int,
                   ground_truth: dict | None = None, orientations: dict | None = None) -> Source:
  """A `Source` of the checked records, reading image files with tf.data; those named in
  `orientations` (path -> EXIF orientation, `ImageChecker.orientations`) are turned upright,
  as their labels are."""
  for split, records in splits.items():
    if not len(records):
      raise ValueError(f"{name}: split {split!r} has no usable examples.")
  arrays = functools.partial(_arrays, orientations=orientations)

  def read(example):
    if "path" not in example:
      return example
    labels = {k: v for k, v in example.items() if k not in ("path", "orientation")}
    return {**labels, "image": decode_file(example["path"], channels, example.get("orientation"))}

  def read_encoded(example):
    return {**{k: v for k, v in example.items() if k != "path"},
            "encoded": tf.io.read_file(example["path"])}

  def loader(reader):
    def load(split, process_index, process_count):
      records = splits[split]
      start, end = process_shard(len(records), process_index, process_count)
      return tf.data.Dataset.from_tensor_slices(arrays(records, start, end)).map(
          reader, num_parallel_calls=tf.data.AUTOTUNE)
    return load

  def annotations(split):
    records = splits[split]
    return tf.data.Dataset.from_tensor_slices(records.arrays(0, len(records), images=False))

  first = splits.get("train") or next(iter(splits.values()))
  image_hw = first.images[0].shape[:2] if first.in_memory else None
  several = any(len(set(r.image_id)) < len(r) or r.ignored for r in splits.values())
  return Source(name=name, spec=spec, split_sizes={s: len(r) for s, r in splits.items()},
                channels=channels, image_hw=image_hw, load=loader(read),
                ground_truth=ground_truth or {}, annotations=annotations,
                images=_images_view(splits, arrays, read) if several else None,
                load_encoded=None if first.in_memory else loader(read_encoded))


def _arrays(records: Records, start: int, end: int, orientations: dict | None) -> dict:
  """`records.arrays(start, end)`, with each file's EXIF `orientation` where some are turned."""
  arrays = records.arrays(start, end)
  if orientations and "path" in arrays:
    arrays["orientation"] = np.array([orientations.get(path, 1) for path in arrays["path"]],
                                     np.int32)
  return arrays


def decode_file(path, channels: int, orientation=None):
  """uint8 pixels [h, w, channels] of an image file (`transforms.decode_image`), turned upright
  by its EXIF `orientation` when given (`transforms.upright`)."""
  pixels = transforms.decode_image(tf.io.read_file(path), channels)
  return pixels if orientation is None else transforms.upright(pixels, orientation)


# A decoded copy (`data.decoded_copies`) is a photo's pixels as `decode_file` gives them after
# a header of its shape (three int32 in the host's byte order: the copies are local), named by
# the source file's path, size and modification time, the channels, the EXIF orientation it
# was turned by (where not 1) and this format, so an edited photo gets a fresh copy. Bump the
# format when `transforms.decode_image`'s pixels change.
DECODED_COPY_FORMAT = 1
_HEADER_BYTES = 12


def _copy_name(path: str, channels: int, orientation: int) -> str:
  stat = tf.io.gfile.stat(path)
  where = path if "://" in path else os.path.abspath(path)  # one folder, many projects
  turned = f"|turned {orientation}" if orientation != 1 else ""
  key = f"{where}|{stat.length}|{stat.mtime_nsec}|{channels}{turned}|{DECODED_COPY_FORMAT}"
  return hashlib.sha256(key.encode()).hexdigest()[:32] + ".pixels"


def _is_whole(copy: str) -> bool:
  """Whether `copy` exists with as many pixels as its header says (a machine that goes down
  while writing can leave a file cut short under its name)."""
  try:
    with open(copy, "rb") as f:
      header = f.read(_HEADER_BYTES)
      size = os.fstat(f.fileno()).st_size
  except FileNotFoundError:
    return False
  return (len(header) == _HEADER_BYTES
          and size == _HEADER_BYTES + int(np.prod(np.frombuffer(header, np.int32))))


def _write_decoded_copies(copies: dict[str, str], photos: dict[str, int], channels: int):
  """Decodes each image file (key) of `copies` into its copy (value), in parallel, turned by
  its EXIF orientation in `photos`."""
  paths = list(copies)
  logging.info("Decoding %d photos once into their copies in %s (config.data.decoded_copies); "
               "later epochs and runs read the copies instead.", len(paths),
               os.path.dirname(copies[paths[0]]))
  start, written = time.perf_counter(), 0
  decoded = tf.data.Dataset.from_tensor_slices((paths, [photos[p] for p in paths])).map(
      lambda path, orientation: decode_file(path, channels, orientation),
      num_parallel_calls=tf.data.AUTOTUNE)
  decoded = decoded.as_numpy_iterator()  # in the order of `paths`
  for path in paths:
    try:
      pixels = next(decoded)
    except tf.errors.OpError as e:  # its first line's end says why, after tf.data's context
      reason = e.message.split("\n")[0].rsplit(": ", 1)[-1]
      raise ValueError(f"cannot decode image {path} ({reason}) for its copy in "
                       "config.data.decoded_copies: replace or remove it; "
                       "config.data.verify_images = True checks every image first.") from None
    partial = f"{copies[path]}.{os.getpid()}.partial"  # whole copies only, under their names
    try:
      with open(partial, "wb") as f:
        f.write(np.array(pixels.shape, np.int32).tobytes())
        f.write(pixels.tobytes())
      os.replace(partial, copies[path])
    except OSError as e:
      if os.path.exists(partial):
        os.remove(partial)
      raise OSError(f"config.data.decoded_copies: cannot write {copies[path]} ({e}); free space "
                    "there, set another local folder, or set \"\" to decode every epoch.") from None
    written += pixels.nbytes
  logging.info("Decoded copies written: %.2f GB in %.0f s.", written / 1e9,
               time.perf_counter() - start)


def decoded_copies(photos: dict[str, int], channels: int, folder: str):
  """A reader (path -> uint8 pixels [h, w, channels], as `decode_file`) of the image files
  `photos` (path -> EXIF orientation, 1 where stored upright) that reads each from its copy
  in the local `folder`, decoded and turned once: those missing or cut short are written
  first. Reading a 640x480 photo's copy takes a fraction of decoding its JPEG
  (benchmarks/input_pipeline.py --coco_like), for 0.9 MB of disk a photo."""
  if "://" in folder:
    raise ValueError(f"config.data.decoded_copies={folder!r} must be a local folder (the copies "
                     "are read back every epoch).")
  os.makedirs(folder, exist_ok=True)
  copies = {path: os.path.join(folder, _copy_name(path, channels, orientation))
            for path, orientation in photos.items()}
  missing = {path: copy for path, copy in copies.items() if not _is_whole(copy)}
  if missing:
    _write_decoded_copies(missing, photos, channels)
  table = tf.lookup.StaticHashTable(
      tf.lookup.KeyValueTensorInitializer(list(copies), list(copies.values())), "")

  def read(path):
    data = tf.io.decode_raw(tf.io.read_file(table.lookup(path)), tf.uint8)
    shape = tf.bitcast(tf.reshape(data[:_HEADER_BYTES], [3, 4]), tf.int32)
    pixels = tf.reshape(data[_HEADER_BYTES:], shape)
    return tf.ensure_shape(pixels, [None, None, channels])
  return read


def _images_view(splits: dict[str, Records], all_arrays, read) -> Images:
  """The records grouped by image (`image_id`), each image with all its instances
  (`all_arrays`: `_arrays` of a split's records)."""
  grouped = {}
  for split, records in splits.items():
    order = collections.defaultdict(list)  # image id -> its records, in order
    for index, image_id in enumerate(records.image_id):
      order[image_id].append(index)
    grouped[split] = list(order.values())

  def shard(split, process_index, process_count):
    start, end = process_shard(len(grouped[split]), process_index, process_count)
    return grouped[split][start:end]

  def per_image(split, groups, ignored: bool) -> tf.data.Dataset:
    """Each group's image (or path), its instances' labels and, with `ignored`, its ignored
    regions."""
    records = splits[split]
    arrays = all_arrays(records, 0, len(records))
    arrays["ignore"] = np.zeros(len(records), np.float32)
    regions = collections.defaultdict(list)
    for image_id, box in records.ignored if ignored else ():
      regions[image_id].append(box)
    labels, bounds = collections.defaultdict(list), [0]
    k = arrays["keypoints"].shape[1]
    for group in groups:  # each image's instances, then its ignored regions
      boxes = np.array(regions[records.image_id[group[0]]], np.float32).reshape(-1, 4)
      for key in ("keypoints", "visible", "norm", "box", "ignore"):
        labels[key].append(arrays[key][group])
      labels["keypoints"].append(np.zeros((len(boxes), k, 2), np.float32))
      labels["visible"].append(np.zeros((len(boxes), k), np.float32))
      labels["norm"].append(np.sqrt(boxes[:, 2] * boxes[:, 3]))
      labels["box"].append(boxes)
      labels["ignore"].append(np.ones(len(boxes), np.float32))
      bounds.append(bounds[-1] + len(group) + len(boxes))
    if not ignored:
      del labels["ignore"]
    labels = {k: tf.constant(np.concatenate(v)) for k, v in labels.items()}
    firsts = [group[0] for group in groups]
    images = {**{k: arrays[k][firsts] for k in ("image", "path", "orientation", "image_id")
                 if k in arrays},
              "first": np.array(bounds[:-1]), "end": np.array(bounds[1:])}

    def gather(image):
      rows = tf.range(image["first"], image["end"])
      return {**{k: v for k, v in image.items() if k not in ("first", "end")},
              **{k: tf.gather(v, rows) for k, v in labels.items()}}
    return tf.data.Dataset.from_tensor_slices(images).map(gather,
                                                          num_parallel_calls=tf.data.AUTOTUNE)

  def load(split, process_index, process_count):
    return per_image(split, shard(split, process_index, process_count), True).map(
        read, num_parallel_calls=tf.data.AUTOTUNE)

  def files(split, process_index, process_count):
    return per_image(split, shard(split, process_index, process_count), False)

  in_memory = next(iter(splits.values())).in_memory
  return Images({split: len(groups) for split, groups in grouped.items()}, load,
                files=None if in_memory else files)
