"""Runs a model written by `kp_jax.export` with only its runtime installed: NumPy, Pillow and
one of jax (StableHLO), TensorFlow (SavedModel), onnxruntime (ONNX) or ai-edge-litert (TFLite).
Nothing else of kp-jax is imported, so an analysis machine can copy this one file.

  python -m kp_jax.exported MODEL.onnx frame1.png frame2.png [--out keypoints.json]
  python -m kp_jax.exported MODEL.onnx session1.mp4        # -> session1_keypoints.json

Each image is fitted whole into the model input (aspect kept), or with `--box x,y,w,h` that
box is cropped (a person detector's, for a model trained on COCO's boxes), as `kp_jax.predict`
does, and the keypoints are mapped back to the image's pixels; the JSON is
{image: {keypoint name: [x, y, likelihood]}}, x and y null under the run's likelihood cutoff.
A two-stage model of several instances a frame gives every instance slot with its score; the
runner keeps the instances `kp_jax.predict` keeps (the run's score threshold, then OKS-NMS:
kp_jax/poses.py, NumPy only, which such a model needs beside this file), and the JSON maps each
image to a list of instances, best first: [{"score", "keypoints": {name: [x, y, likelihood]}}].
A video's frames (decoded by PyAV: pip install av) are each fitted or cropped alike and run in
batches; beside --out go `<video name>_keypoints.json`, the record kp_jax.predict writes of a
video (`on_video`), which `kp-jax pick-frames --predictions` reads, and `_keypoints.csv` in
DeepLabCut's analysis layout (`video_csv`), as predict writes it, and with --overlay
`_labeled.mp4`, the frames with their keypoints drawn as predict draws them (kp_jax/visualize.py,
Pillow only, which it then needs beside this file); a model of several instances a frame
follows them from frame to frame as predict does (track ids, by the boxes it exports:
kp_jax/poses.py).
"""

import argparse
import collections
import concurrent.futures
import csv
import functools
import io
import json
import os
import time
from fractions import Fraction
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps


def read_image(file, channels: int, upright: bool = True) -> np.ndarray:
  """uint8 pixels [h, w, channels] of an image file (a path or a file object) as kp-jax reads
  pictures everywhere (`kp_jax.predict`, this runner, and training for the formats
  TensorFlow does not decode, such as TIFF): with `upright`, turned as viewers show it by its
  EXIF orientation; 16-bit samples by their high byte, as libpng, TensorFlow and OpenCV make 8
  bits of them (PIL alone clips 16-bit grey at 255); one channel of colour as PIL's grey."""
  with Image.open(file) as image:
    if upright:
      ImageOps.exif_transpose(image, in_place=True)  # in place: no copy of an upright one
    if image.mode.startswith("I;16"):  # 16-bit grey
      image = Image.fromarray((np.asarray(image) >> 8).astype(np.uint8))
    return in_channels(image, channels)


def in_channels(image: Image.Image, channels: int) -> np.ndarray:
  """uint8 pixels [h, w, channels] of a PIL image: one channel of colour is PIL's grey (ITU-R
  601-2 luma), as training reads pictures."""
  image = image.convert("L" if channels == 1 else "RGB")
  return np.asarray(image).reshape(image.height, image.width, channels)


VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg")


def is_video(path: str) -> bool:
  return path.lower().endswith(VIDEO_EXTENSIONS)


def quarter_turns(frame) -> int:
  """Counterclockwise quarter turns that show a decoded frame as players do: a phone stores
  portrait video as landscape frames and a rotation in the stream's display matrix, which
  players and OpenCV's VideoCapture apply."""
  return round(frame.rotation / 90) % 4


def frame_pixels(frame, pixel_format: str, upright: bool) -> np.ndarray:
  """A decoded frame's pixels [h, w, C] in PyAV's `pixel_format` ("rgb24", "gray"), with
  `upright` as players show it (`quarter_turns`)."""
  pixels = frame.to_ndarray(format=pixel_format)
  turns = quarter_turns(frame) if upright else 0
  return np.ascontiguousarray(np.rot90(pixels, turns)) if turns else pixels


def read_video(path: str, upright: bool = True) -> tuple[float, Iterator[np.ndarray]]:
  """(frames per second, an iterator of RGB uint8 frames [h, w, 3]) of a video file, with
  `upright` as players show them (`config.data.upright`), as kp-jax reads videos everywhere.
  PyAV decodes them; its wheels bundle FFmpeg's libraries (no system ffmpeg needed)."""
  try:
    import av  # noqa: PLC0415 -- only videos need it
  except ImportError:
    raise ImportError(f"{path}: reading videos needs PyAV: pip install av") from None
  try:
    container = av.open(path)
    stream = container.streams.video[0]
  except (av.FFmpegError, IndexError, OSError) as e:
    raise ValueError(f"Cannot read video {path}: {e}") from None
  fps = float(stream.average_rate or stream.guessed_rate or 30)

  def frames():
    with container:
      for frame in container.decode(stream):
        yield frame_pixels(frame, "rgb24", upright)
  return fps, frames()


# x264's preset for overlay videos, in place of its default (medium), whose encoding was much
# of predict's time on a video; veryfast's files are no larger (docs/usage.md, "Deploying a
# model"). Frames to be predicted on keep the default's quality.
OVERLAY_PRESET = "veryfast"


class VideoWriter:
  """An H.264 MP4 of RGB frames (padded to even sizes, as yuv420p needs), with x264's
  `preset`. Frames are drawn (when given as callables) and encoded on a thread of their own,
  at most `ahead` behind the caller, so a video's next frames are decoded and predicted while
  the last ones are drawn and encoded."""

  def __init__(self, path: str, fps: float, preset: str = "medium", ahead: int = 16):
    import av  # noqa: PLC0415 -- only videos need it

    self.container = av.open(path, "w")
    self.stream = self.container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
    self.stream.pix_fmt = "yuv420p"
    self.stream.options = {"crf": "20", "preset": preset}
    self.av, self.size = av, None
    self.thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="VideoWriter")
    self.pending, self.ahead = collections.deque(), ahead

  def write(self, frame):
    """Adds a uint8 frame [h, w, 3], or a callable that returns one (called on the writer's
    thread; the frame is encoded later, so it must not be changed after); an error of an
    earlier frame is raised here."""
    self.pending.append(self.thread.submit(self._encode, frame))
    while len(self.pending) > self.ahead:
      self.pending.popleft().result()

  def _encode(self, frame):
    frame = frame() if callable(frame) else frame
    h, w = frame.shape[:2]
    if self.size is None:  # the stream's size is set by the first frame
      self.size = h + h % 2, w + w % 2
      self.stream.height, self.stream.width = self.size
    frame = np.pad(frame, ((0, self.size[0] - h), (0, self.size[1] - w), (0, 0)))
    for packet in self.stream.encode(self.av.VideoFrame.from_ndarray(frame, format="rgb24")):
      self.container.mux(packet)

  def close(self):
    try:
      while self.pending:
        self.pending.popleft().result()
      for packet in self.stream.encode():
        self.container.mux(packet)
    finally:
      self.thread.shutdown(cancel_futures=True)
      self.container.close()


def box_matrix(box, input_hw, padding: float = 1.0, udp: bool = False) -> np.ndarray:
  """The source -> input matrix (pixel centres at integers) fitting `box` (x, y, w, h, COCO's
  convention) into the input, aspect kept, scaled by `padding`, with `udp` onto the input's
  first and last pixel centres: kp_jax.data.transforms.box_matrix in float64 NumPy."""
  x, y, w, h = (float(v) for v in box)
  out_h, out_w = input_hw
  width = max(max(w, h * out_w / out_h) * padding, 1e-6)
  scale_x, scale_y = ((out_w - 1) / width, (out_h - 1) / (width * out_h / out_w)) if udp else (
      (out_w / width,) * 2)
  tx = (out_w - 1) / 2 - scale_x * (x + w / 2 - 0.5)
  ty = (out_h - 1) / 2 - scale_y * (y + h / 2 - 0.5)
  return np.array([[scale_x, 0, tx], [0, scale_y, ty], [0, 0, 1]])


def fit_matrix(image_hw, input_hw, padding: float = 1.0) -> np.ndarray:
  """`box_matrix` of a whole image of `image_hw`."""
  return box_matrix((0, 0, image_hw[1], image_hw[0]), input_hw, padding)


def sampling(matrix: np.ndarray, image_hw, output_hw) -> tuple[np.ndarray, np.ndarray]:
  """How `warp` samples an image of `image_hw` through `matrix` (source -> output pixels):
  (flat source indices [4, h * w], bilinear weights [4, h * w], zero outside the image). A
  video's frames share them, so they are worked out once."""
  height, width = output_hw
  inverse = np.linalg.inv(matrix)
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
  sx = inverse[0, 0] * xx + inverse[0, 1] * yy + inverse[0, 2]
  sy = inverse[1, 0] * xx + inverse[1, 1] * yy + inverse[1, 2]
  x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
  indices, weights = [], []
  for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
    x, y = x0 + dx, y0 + dy
    weight = (1 - np.abs(sx - x)) * (1 - np.abs(sy - y))
    inside = (x >= 0) & (x < image_hw[1]) & (y >= 0) & (y < image_hw[0])
    indices.append(np.clip(y, 0, image_hw[0] - 1) * image_hw[1] + np.clip(x, 0, image_hw[1] - 1))
    weights.append(weight * inside)
  return np.stack(indices).reshape(4, -1), np.stack(weights).reshape(4, -1)


def warp(image: np.ndarray, matrix: np.ndarray, output_hw, sampled=None) -> np.ndarray:
  """`image` [h, w, C] seen through `matrix` (source -> output pixels): bilinear, zero
  outside, as the training pipeline's warp; of uint8 pixels, rounded pixels (as the pipeline
  gives). `sampled`: `sampling` of this image size and matrix, where it is known."""
  indices, weights = sampled or sampling(matrix, image.shape[:2], output_hw)
  flat = image.reshape(-1, image.shape[-1])
  out = sum(w[:, None] * flat[i].astype(np.float64) for i, w in zip(indices, weights))
  out = out.reshape(*output_hw, image.shape[-1]).astype(np.float32)
  return np.round(out) if image.dtype == np.uint8 else out


def to_source_pixels(points, matrix):
  """Points [..., K, 2] from input pixels back through `matrix` [..., 3, 3] (source -> input)."""
  inverse = np.linalg.inv(np.asarray(matrix, np.float64))
  points = np.asarray(points, np.float64)
  return points @ np.swapaxes(inverse[..., :2, :2], -1, -2) + inverse[..., None, :2, 2]


def _runtime(path: str, fmt: str, names):
  """A function float32 [N, H, W, C] -> the model's outputs, in the order of `names`
  (keypoints, likelihoods, and for several instances their scores)."""
  if fmt == "stablehlo":
    from jax import export
    with open(path, "rb") as f:
      call = export.deserialize(bytearray(f.read())).call
    return lambda x: [np.asarray(y) for y in call(x)]
  if fmt == "savedmodel":
    import tensorflow as tf
    signature = tf.saved_model.load(path).signatures["serving_default"]
    return lambda x: [signature(tf.constant(x))[k].numpy() for k in names]
  if fmt == "onnx":
    import onnxruntime
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})
  if fmt == "tflite":
    from ai_edge_litert.interpreter import Interpreter
    serve = Interpreter(model_path=path).get_signature_runner("serving_default")

    def run(x):
      outputs = serve(pixels=x)  # by name: the SavedModel's signature, kept by the converter
      return [outputs[k] for k in names]
    return run
  raise ValueError(f"{path}: unknown format {fmt!r}")


class ExportedModel:
  """An exported model and its metadata (`<model>.json`, written beside it)."""

  def __init__(self, path: str):
    meta_path = path.rstrip("/") + ".json"
    if not os.path.exists(meta_path):
      raise FileNotFoundError(f"{meta_path} not found: export the model with kp_jax.export, "
                              "which writes it beside the model.")
    with open(meta_path) as f:
      self.meta = json.load(f)
    self.names = tuple(self.meta["keypoint_names"])
    self.input_shape = tuple(self.meta["input_shape"])  # (H, W, C)
    self.batch = self.meta["batch"]  # an int, or None for any batch
    self.output_names = tuple(self.meta.get("output_names", ["keypoints", "likelihood"]))
    self._run = _runtime(path, self.meta["format"], self.output_names)
    self.selection = None
    if "instances" in self.meta:  # several instances a frame: chosen as kp_jax.predict does
      self._poses = _poses()
      self.selection = self._poses.Selection(**{**self.meta["instances"], "sigmas": tuple(
          self.meta["instances"]["sigmas"])})

  def on_inputs(self, pixels) -> tuple[np.ndarray, np.ndarray]:
    """(keypoints [N, K, 2] in input pixels, likelihoods [N, K]) of model-input-sized images
    [N, H, W, C], pixel values in [0, 255]; a fixed-batch model runs them in padded chunks."""
    pixels = np.asarray(pixels, np.float32)
    if self.batch is None:
      return tuple(self._run(pixels))
    n, outputs = len(pixels), []
    for start in range(0, n, self.batch):
      chunk = pixels[start:start + self.batch]
      padded = np.concatenate([chunk, np.zeros((self.batch - len(chunk), *chunk.shape[1:]),
                                               np.float32)])
      outputs.append([y[:len(chunk)] for y in self._run(padded)])
    return tuple(np.concatenate(parts) for parts in zip(*outputs))

  def _geometry(self, image_hw, box=None):
    """(the source -> input matrix, its `sampling`) of images of `image_hw`, or of their `box`,
    cropped as kp_jax.predict crops them."""
    box = (0, 0, image_hw[1], image_hw[0]) if box is None else box
    padding = self.meta.get("box_padding", self.meta.get("whole_image_padding"))  # older files
    matrix = box_matrix(box, self.input_shape[:2], padding, self.meta.get("udp", False))
    return matrix, sampling(matrix, image_hw, self.input_shape[:2])

  def _on_images(self, images, geometry) -> dict:
    """The model's outputs by name for uint8 images [N, h, w, C] of one size, seen through
    `geometry` (`_geometry`), keypoints and boxes in the images' pixels."""
    matrix, sampled = geometry
    pixels = np.stack([warp(image, matrix, self.input_shape[:2], sampled) for image in images])
    outputs = dict(zip(self.output_names, self.on_inputs(pixels)))
    outputs["keypoints"] = to_source_pixels(outputs["keypoints"], matrix)
    if "boxes" in outputs:  # x0, y0, x1, y1: two corners
      boxes = outputs["boxes"]
      outputs["boxes"] = to_source_pixels(boxes.reshape(*boxes.shape[:-1], 2, 2),
                                          matrix).reshape(boxes.shape)
    return outputs

  def _each(self, outputs: dict) -> list[dict]:
    """`_on_images`' outputs, image by image."""
    return [{k: v[i] for k, v in outputs.items()} for i in range(len(outputs["keypoints"]))]

  def _on_image(self, image: np.ndarray, box=None) -> dict:
    return self._each(self._on_images(image[None], self._geometry(image.shape[:2], box)))[0]

  def _frames(self, frames, box, batch_size: int):
    """`_on_image` of each of `frames` (one size: a video's), `batch_size` frames a call."""
    shape, geometry, batch = None, None, []
    for frame in frames:
      if shape is None:  # the crop's sampling, worked out once for the video's frame size
        shape, geometry = frame.shape, self._geometry(frame.shape[:2], box)
      if frame.shape != shape:
        raise ValueError(f"A frame of {frame.shape} among frames of {shape}: on_frames takes "
                         "one video's frames (one size); use on_image for pictures.")
      batch.append(frame)
      if len(batch) == batch_size:
        yield from self._each(self._on_images(np.stack(batch), geometry))
        batch = []
    if batch:
      yield from self._each(self._on_images(np.stack(batch), geometry))

  def on_image(self, image: np.ndarray, box=None) -> tuple[np.ndarray, np.ndarray]:
    """(keypoints [K, 2] in the image's pixels, likelihoods [K]) of an [h, w, C] uint8 image,
    or of the object in its `box` (x, y, w, h: a detector's, for a model trained on COCO's
    boxes), cropped as kp_jax.predict crops it: the best instance's, for a model of several."""
    self._check_box(box)
    out = self._on_image(image, box)
    if self.selection is None:
      return out["keypoints"], out["likelihood"]
    best = np.argmax(out["scores"])
    return out["keypoints"][best], out["likelihood"][best]

  def on_frames(self, frames, box=None, batch_size: int = 8):
    """(keypoints [K, 2] in the frames' pixels, likelihoods [K]) of each of `frames` (an
    iterable of [h, w, C] uint8 frames of one size: a video's), as `on_image` gives them,
    lazily, `batch_size` frames a model call."""
    self._check_box(box)
    if self.selection is not None:
      raise ValueError("This model finds several instances a frame: use tracked_frames.")
    for out in self._frames(frames, box, batch_size):
      yield out["keypoints"], out["likelihood"]

  def _check_box(self, box):
    if box is not None and self.meta.get("two_stage", self.selection is not None):
      raise ValueError("A two-stage model finds its instances in the whole frame: give no box.")

  def _instances(self, out: dict) -> list[dict]:
    kept, scores = self._poses.select(self.selection, out["keypoints"], out["likelihood"],
                                      out["scores"])
    return [{"score": float(scores[i]), "keypoints": out["keypoints"][i],
             "likelihood": out["likelihood"][i],
             **({"box": out["boxes"][i]} if "boxes" in out else {})} for i in kept]

  def instances(self, image: np.ndarray) -> list[dict]:
    """Every instance of an [h, w, C] uint8 image, best first ({"score", "keypoints" [K, 2],
    "likelihood" [K], "box" [4]: x0, y0, x1, y1, where the export has boxes}): the slots
    scoring at least the run's threshold, duplicates removed by OKS-NMS, as kp_jax.predict
    selects them."""
    if self.selection is None:
      raise ValueError("This model gives one instance a frame: use on_image.")
    return self._instances(self._on_image(image))

  def tracked_frames(self, frames, box=None, batch_size: int = 8):
    """Each frame's `instances` (of `frames`, as `on_frames`' own), each with the "track" it
    continues, followed from frame to frame as kp_jax.predict follows them (kp_jax.poses.track:
    by box overlap, with the run's two_stage.track_min_iou and track_max_age); lazily."""
    self._check_box(box)
    if self.selection is None:
      raise ValueError("This model gives one instance a frame: use on_frames.")
    if "tracking" not in self.meta:
      raise ValueError("This export has no instance boxes to follow (written before "
                       "2026-12-07): export the run again.")
    tracks = self._poses.Tracks()
    for index, out in enumerate(self._frames(frames, None, batch_size)):
      instances = self._instances(out)
      tracks, ids = self._poses.track(tracks, index, [x["box"] for x in instances],
                                      **self.meta["tracking"])
      yield [{"track": i, **x} for i, x in zip(ids, instances)]


def _poses():
  """kp_jax.poses (how predict selects instances), from the package or a copy beside this."""
  try:
    from kp_jax import poses  # noqa: PLC0415
  except ImportError:
    import poses  # noqa: PLC0415
  return poses


def keypoint_values(points, likelihood, cutoff: float) -> list:
  """[[x, y, likelihood], ...]; x and y are None (missing) under the cutoff."""
  return [[float(x), float(y), float(p)] if p >= cutoff else [None, None, float(p)]
          for (x, y), p in zip(points, likelihood)]


def instance_record(names, instance: dict, cutoff: float, **extra) -> dict:
  """{**extra, "score", "keypoints": {name: [x, y, likelihood]}} of an instance ({"score",
  "keypoints" [K, 2], "likelihood" [K]}), as kp_jax.predict's JSON records it."""
  return {**extra, "score": instance["score"], "keypoints": dict(zip(
      names, keypoint_values(instance["keypoints"], instance["likelihood"], cutoff)))}


def deeplabcut_csv(names, frames_values, scorer: str = "kp-jax", individuals=None,
                   index=None) -> str:
  """DeepLabCut's analysis CSV: rows scorer / bodyparts / coords (multi-animal: scorer /
  individuals / bodyparts / coords, `individuals` naming each group of body parts), then one
  row per frame (its index, then x, y, likelihood per body part, of each individual in turn;
  x and y empty when missing). `index`: each row's index cells in place of the frame number,
  e.g. ("labeled-data", video, "img042.png") as DeepLabCut (2.3+) indexes labelled frames."""
  groups = individuals or [None]
  index = index or [(i,) for i in range(len(frames_values))]
  pad = [""] * (len(index[0]) - 1 if index else 0)
  text = io.StringIO(newline="")
  writer = csv.writer(text)
  writer.writerow(["scorer"] + pad + [scorer] * 3 * len(names) * len(groups))
  if individuals:
    writer.writerow(["individuals"] + pad
                    + [i for i in individuals for _ in range(3 * len(names))])
  writer.writerow(["bodyparts"] + pad + [n for n in names for _ in range(3)] * len(groups))
  writer.writerow(["coords"] + pad + ["x", "y", "likelihood"] * len(names) * len(groups))
  for cells, values in zip(index, frames_values):
    writer.writerow([*cells] + ["" if v is None else f"{v:.4f}" for triple in values
                                for v in triple])
  return text.getvalue()


def track_name(track_id) -> str:
  """A track's name wherever kp-jax writes one (DeepLabCut's individuals, SLEAP's tracks), so
  that a CSV, a SLEAP file and the frames picked from them name an animal alike."""
  return f"track{track_id}"


def track_rows(frames, names, ids) -> list:
  """Tracked frames ([{"track", "keypoints": {name: [x, y, likelihood]}}, ...] each) as rows
  of [x, y, likelihood] triples, the keypoints of track `ids[0]`, then `ids[1]`, ...; None
  where a frame lacks the track."""
  missing = [[None, None, None]] * len(names)
  rows = []
  for frame in frames:
    by_track = {x["track"]: [x["keypoints"][n] for n in names] for x in frame}
    rows.append([v for i in ids for v in by_track.get(i, missing)])
  return rows


def tracked_record(frames) -> dict:
  """{"tracks": the track ids, "frames"} of tracked frames ([{"track", ...}, ...] each), as a
  video's record holds them."""
  return {"tracks": sorted({x["track"] for frame in frames for x in frame}), "frames": frames}


def video_csv(record: dict) -> str:
  """`deeplabcut_csv` of a video's record (`on_video`'s, predict's JSON): one animal's
  keypoints a frame, or with "tracks" each track an individual, `track<id>`."""
  names = record["keypoints"]
  if "tracks" not in record:
    return deeplabcut_csv(names, record["frames"])
  return deeplabcut_csv(names, track_rows(record["frames"], names, record["tracks"]),
                        individuals=[track_name(i) for i in record["tracks"]])


def _visualize():
  """kp_jax.visualize (how predict draws), from the package or a copy beside this."""
  try:
    from kp_jax import visualize  # noqa: PLC0415
  except ImportError:
    import visualize  # noqa: PLC0415
  return visualize


def on_video(model: ExportedModel, path: str, box=None, batch_size: int = 8,
             overlay: str | None = None) -> dict:
  """The keypoints of every frame of the video at `path`, as kp_jax.predict records them in
  its `<video>_keypoints.json` (which `kp-jax pick-frames` reads): {"video", "keypoints"
  (names), "fps", "likelihood_cutoff", "run_likelihood_cutoff", "upright", "frames"}, the
  frames [[[x, y, likelihood], ...] per frame] (x and y None under the cutoff), or for a model
  of several instances a frame, lists of {"track", "score", "keypoints": {name: [x, y,
  likelihood]}} per frame, with "tracks" the track ids. With `overlay`, the frames with their
  keypoints drawn as predict draws them are written there as an MP4."""
  upright, channels = model.meta.get("upright", True), model.input_shape[-1]
  fps, frames = read_video(path, upright)
  in_flight = collections.deque()  # the frames the model has taken, to draw on (a batch)

  def model_frames():
    for frame in frames:
      in_flight.append(frame)
      yield in_channels(Image.fromarray(frame), channels)  # as predict's
  cutoff, skeleton = model.meta["likelihood_cutoff"], model.meta.get("skeleton", [])
  draw, writer = ((_visualize(), VideoWriter(overlay, fps, OVERLAY_PRESET)) if overlay
                  else (None, None))
  frames_values = []
  if model.selection is None:
    for points, likelihood in model.on_frames(model_frames(), box, batch_size):
      frame = in_flight.popleft()
      frames_values.append(keypoint_values(points, likelihood, cutoff))
      if writer:
        writer.write(functools.partial(draw.draw_frame, frame, points, likelihood, model.names,
                                       skeleton, cutoff))
    record = {"frames": frames_values}
  else:
    for instances in model.tracked_frames(model_frames(), box, batch_size):
      frame = in_flight.popleft()
      frames_values.append([instance_record(model.names, x, cutoff, track=x["track"])
                            for x in instances])
      if writer:
        writer.write(functools.partial(
            draw.draw_instances, frame,
            [(x["track"], x["keypoints"], x["likelihood"]) for x in instances], skeleton, cutoff))
    record = tracked_record(frames_values)
  if writer:
    writer.close()
  if not record["frames"]:
    raise ValueError(f"{path} has no video frames.")
  return {"video": path, "keypoints": list(model.names), "fps": fps,
          "likelihood_cutoff": cutoff, "run_likelihood_cutoff": cutoff, "upright": upright,
          **record}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("model", help="an exported model (kp_jax.export)")
  parser.add_argument("inputs", nargs="+", help="image files and videos")
  parser.add_argument("--out", default="keypoints.json", help="the images' keypoints; each "
                      "video's go beside it, in <video name>_keypoints.json")
  parser.add_argument("--overlay", action="store_true", help="also write each video's frames "
                      "with their keypoints drawn, <video name>_labeled.mp4 beside --out, as "
                      "kp_jax.predict does (needs kp_jax/visualize.py: the package, or a copy "
                      "beside this file)")
  parser.add_argument("--box", type=lambda v: [float(x) for x in v.split(",")],
                      help="x,y,w,h of the object in every image (COCO convention), as "
                      "kp_jax.predict's --box; default: the whole image")
  args = parser.parse_args(argv)
  if args.box is not None and len(args.box) != 4:
    parser.error(f"--box {args.box}: give x,y,w,h.")
  model = ExportedModel(args.model)
  cutoff, results = model.meta["likelihood_cutoff"], {}
  for path in (p for p in args.inputs if is_video(p)):
    start = time.perf_counter()
    stem = os.path.join(os.path.dirname(args.out), os.path.splitext(os.path.basename(path))[0])
    try:
      record = on_video(model, path, args.box, overlay=args.overlay and f"{stem}_labeled.mp4")
    except ValueError as e:  # an unreadable video, or an export too old to follow instances
      parser.error(str(e))
    out = f"{stem}_keypoints.json"
    with open(out, "w") as f:
      json.dump(record, f)
    with open(out[:-len(".json")] + ".csv", "w", newline="") as f:  # as predict's, beside it
      f.write(video_csv(record))
    frames = len(record["frames"])
    print(f"{path}: {frames} frames, {frames / (time.perf_counter() - start):.1f} frames/s "
          f"-> {out}" + (f" and {stem}_labeled.mp4" if args.overlay else ""))
  for path in (p for p in args.inputs if not is_video(p)):  # as the run read its pictures
    array = read_image(path, model.input_shape[-1], model.meta.get("upright", True))
    if model.selection is None:
      points, likelihood = model.on_image(array, args.box)
      results[path] = dict(zip(model.names, keypoint_values(points, likelihood, cutoff)))
    else:
      results[path] = [instance_record(model.names, x, cutoff) for x in model.instances(array)]
  if results:
    with open(args.out, "w") as f:
      json.dump(results, f, indent=2)
    print(f"{len(results)} images -> {args.out}")


if __name__ == "__main__":
  main()
