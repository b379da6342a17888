"""Predicts keypoints on image files and videos with the best checkpoint of a training run.

  python -m kp_jax.predict --workdir workdirs/default face1.png face2.jpg
  python -m kp_jax.predict --workdir workdirs/reaching video.mp4
  python -m kp_jax.predict --workdir workdirs/reaching frames/   # its images and videos

Into --output_dir (default WORKDIR/predictions), in each image's own pixels:
  images  `keypoints.json` ({image path: {keypoint name: [x, y, likelihood]}}) and an overlay
          per image, `<name>_keypoints.jpg` of a JPEG, else `<name>_keypoints.png`
          (`--nooverlay`: none);
  videos  `<name>_keypoints.csv` (DeepLabCut's analysis layout: scorer / bodyparts / coords
          header rows, then x, y, likelihood per body part and frame), `<name>_keypoints.json`
          ({"keypoints": names, "fps", "frames": [[[x, y, likelihood], ...], ...], the
          "likelihood_cutoff" used, the run's own "run_likelihood_cutoff" and whether frames
          were turned "upright"}) and the overlay
          video `<name>_labeled.mp4` (`--nooverlay`: none); `kp-jax pick-frames` picks
          frames to label from it.
A two-stage model of several instances per image (data.instances.max_instances > 1) finds every
instance scoring at least --score_threshold (default the run's two_stage.score_threshold),
duplicates removed by OKS-NMS (kp_jax.poses):
  images  `keypoints.json` maps each image to a list of instances, best first:
          [{"score": s, "keypoints": {name: [x, y, likelihood]}}, ...]; each drawn in its colour
          with its number;
  videos  instances followed from frame to frame (track ids by box overlap,
          kp_jax.poses.track): the CSV in
          DeepLabCut's multi-animal layout (an `individuals` header row, one individual per
          track), the JSON's frames lists of {"track", "score", "keypoints"}, and the overlay
          with each track in its colour.
A run trained on SLEAP labels (a .slp file) also writes each video's predictions as
SLEAP does, `<name>.predictions.slp` (kp_jax/data/sleap.py), for proofreading in SLEAP.
Keypoints whose likelihood is under the cutoff (--likelihood_cutoff, default the run's
`config.likelihood_cutoff`) are written as missing (null / empty) and not drawn.
"""

import collections
import concurrent.futures
import functools
import json
import os
import sys
import tempfile
import time

import numpy as np
from absl import app, flags, logging
from etils import epath
from PIL import Image

from kp_jax import cli, poses, smoothing, startup, two_stage, visualize
from kp_jax.data import sleap
from kp_jax.exported import (OVERLAY_PRESET, VIDEO_EXTENSIONS, VideoWriter, deeplabcut_csv,
                             in_channels, instance_record, is_video, keypoint_values, read_image,
                             read_video, tracked_record, video_csv)
from kp_jax.runs import Predictor


def open_predictor(workdir: str, likelihood_cutoff: float | None = None,
                   score_threshold: float | None = None, scale: float = 1.0):
  """The predictor of a one- or two-stage workdir (`scale`: two stages only, the frames'
  magnification against the labelled ones)."""
  if two_stage.is_find_refine(workdir):
    return two_stage.FindRefinePredictor(workdir, likelihood_cutoff, score_threshold, scale)
  if scale != 1.0:
    raise ValueError("--scale: a one-model run sees each image fitted into its input; the "
                     "frames' magnification matters to two-stage runs (find, then refine).")
  return Predictor(workdir, likelihood_cutoff)


def _draw_instances(predictor, frame, instances, ids) -> np.ndarray:
  return visualize.draw_instances(
      frame, [(i, x["keypoints"], x["likelihood"]) for i, x in zip(ids, instances)],
      predictor.skeleton, predictor.cutoff)


def predict_files(workdir: str, paths, output_dir: str | None = None, box=None,
                  likelihood_cutoff: float | None = None, score_threshold: float | None = None,
                  batch_size: int = 8, scale: float = 1.0, overlay: bool = True) -> dict:
  """`workdir`'s best checkpoint on image files (`predict_images`)."""
  return predict_images(open_predictor(workdir, likelihood_cutoff, score_threshold, scale),
                        paths, output_dir or str(epath.Path(workdir) / "predictions"), box,
                        batch_size, overlay)


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def input_files(paths) -> list[str]:
  """The files to predict on: each file given, and each folder's images and videos (by their
  extensions, sorted; not its sub-folders'). Raises ValueError for a folder holding none."""
  files = []
  for path in paths:
    if not os.path.isdir(path):
      files.append(path)
      continue
    found = sorted(os.path.join(path, name) for name in os.listdir(path)
                   if name.lower().endswith(IMAGE_EXTENSIONS) or is_video(name))
    if not found:
      raise ValueError(f"{path}: a folder without images or videos (files ending in "
                       f"{', '.join(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)}).")
    files += found
  return files


def _decoded(paths, channels: int, upright: bool, pool, ahead: int):
  """(path, uint8 pixels or the error that stopped it) of each file in order, read as training
  reads pictures (`exported.read_image`; with `upright`, as viewers show them) by `pool`'s
  threads `ahead` files in advance (Pillow's decoders release the GIL)."""
  def load(path):
    try:
      return read_image(path, channels, upright)
    except Exception as e:  # noqa: BLE001 -- whatever Pillow raises on a bad file: it is skipped
      return ValueError(f"Cannot read image {path}: {e}")
  pending = collections.deque()
  for path in paths:
    pending.append((path, pool.submit(load, path)))
    if len(pending) > ahead:
      path, future = pending.popleft()
      yield path, future.result()
  while pending:
    path, future = pending.popleft()
    yield path, future.result()


def _batches(decoded, batch_size: int, skipped: list):
  """Runs of at most `batch_size` consecutive images of one size, [(path, image), ...];
  unreadable files are named (a warning) and left out, into `skipped`."""
  batch = []
  for path, image in decoded:
    if isinstance(image, Exception):
      logging.warning("Skipped: %s", image)
      skipped.append(path)
      continue
    if batch and (len(batch) == batch_size or batch[0][1].shape != image.shape):
      yield batch
      batch = []
    batch.append((path, image))
  if batch:
    yield batch


def predict_images(predictor, paths, output_dir: str, box=None, batch_size: int = 8,
                   overlay: bool = True) -> dict:
  """Keypoints of each image file: writes `keypoints.json` and, with `overlay`, an overlay per
  image into `output_dir` (module docstring); returns what the JSON holds, in `paths`' order.
  Files are decoded and overlays drawn and written by a pool of threads while the compiled
  predictor runs on batches of `batch_size` images of one size; an unreadable file is named and
  skipped; long lists print their progress."""
  multi = getattr(predictor, "multi_instance", False)
  output_dir = epath.Path(output_dir)
  output_dir.mkdir(parents=True, exist_ok=True)
  results, skipped, writes = {}, [], []
  progress = Progress(len(paths), "images")

  def save(path, drawing):
    stem, extension = os.path.splitext(os.path.basename(path))
    # A photo's overlay a JPEG as the photo (as MMPose's), others a PNG quickly compressed:
    # PIL's default PNG level took 103 ms a 832x747 frame, level 1 29 ms for 13% more bytes
    # (benchmarks/predict_speed.py --encodings).
    if extension.lower() in (".jpg", ".jpeg"):
      name, options = f"{stem}_keypoints.jpg", {"format": "JPEG", "quality": 95}
    else:
      name, options = f"{stem}_keypoints.png", {"format": "PNG", "compress_level": 1}
    with (output_dir / name).open("wb") as f:
      Image.fromarray(drawing()).save(f, **options)

  with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:
    decoded = _decoded(paths, predictor.image_shape[-1], predictor.upright, pool,
                       ahead=2 * batch_size)
    for batch in _batches(decoded, batch_size, skipped):
      images = np.stack([image for _, image in batch])
      if multi:
        for (path, image), instances in zip(batch, predictor.instances(
            predictor.on_frames(images))):
          results[path] = [instance_record(predictor.names, x, predictor.cutoff)
                           for x in instances]
          if overlay:
            writes.append(pool.submit(save, path, functools.partial(
                _draw_instances, predictor, image, instances, range(1, len(instances) + 1))))
      else:
        points, likelihood = predictor.on_images(
            images, predictor.crop_matrix(images.shape[1:3], box))
        for (path, image), p, l in zip(batch, points, likelihood):
          results[path] = dict(zip(predictor.names, keypoint_values(p, l, predictor.cutoff)))
          if overlay:
            writes.append(pool.submit(save, path,
                                      functools.partial(predictor.overlay, image, p, l)))
      progress.update(len(batch))
    for write in writes:
      write.result()  # an overlay that could not be written stops here, named
  (output_dir / "keypoints.json").write_text(json.dumps(results, indent=2))
  return results


class Progress:
  """A line on stderr every few seconds of a long job: how far, how fast."""

  def __init__(self, total: int, unit: str, every_seconds: float = 5.0):
    self.total, self.unit, self.every = total, unit, every_seconds
    self.done, self.start = 0, time.perf_counter()
    self.last = self.start

  def update(self, count: int):
    self.done += count
    now = time.perf_counter()
    if now - self.last >= self.every and self.done < self.total:
      self.last = now
      print(f"{self.done} / {self.total} {self.unit}, {self.rate():.1f} {self.unit}/s",
            file=sys.stderr, flush=True)

  def rate(self) -> float:
    return self.done / max(time.perf_counter() - self.start, 1e-9)


def write_deeplabcut_csv(path: str, names, frames_values, **layout):
  """`exported.deeplabcut_csv` (DeepLabCut's analysis layout) written to `path` (any file
  system etils reaches)."""
  epath.Path(path).write_text(deeplabcut_csv(names, frames_values, **layout))


def trajectory(frames_values) -> np.ndarray:
  """[[[x, y, likelihood], ...], ...] per frame (None where missing) -> float [F, K, 3], NaN
  where missing."""
  return np.array([[[np.nan if v is None else v for v in triple] for triple in frame]
                   for frame in frames_values], np.float64).reshape(len(frames_values), -1, 3)


def frames_values(trajectory_array) -> list:
  """`trajectory`'s inverse: float [F, K, 3] (NaN where missing) -> [[[x, y, likelihood], ...],
  ...] per frame, None where missing."""
  return [[[None if np.isnan(v) else float(v) for v in triple] for triple in frame]
          for frame in trajectory_array]


class _SingleVideo:
  """One instance per frame: the frame's keypoints, DeepLabCut's single-animal CSV; with
  `smooth`, the smoothed trajectory beside it (kp_jax/smoothing.py)."""

  def __init__(self, predictor, smooth: str | None = None):
    self.predictor, self.values, self.smooth = predictor, [], smooth

  def add(self, frames, images, matrix):
    predictor = self.predictor
    points, likelihood = predictor.on_images(images, matrix)
    for frame, p, l in zip(frames, points, likelihood):
      self.values.append(keypoint_values(p, l, predictor.cutoff))
      yield functools.partial(predictor.overlay, frame, p, l)

  def write(self, out: dict, header: dict):
    names = self.predictor.names
    write_deeplabcut_csv(out["csv"], names, self.values)
    raw = trajectory(self.values)
    extra = {}
    if self.smooth:
      smoothed = frames_values(smoothing.smooth(raw, self.smooth))
      write_deeplabcut_csv(out["smoothed_csv"], names, smoothed)
      extra = {"smoothing": self.smooth, "smoothed_frames": smoothed}
    epath.Path(out["json"]).write_text(json.dumps({**header, "frames": self.values, **extra}))
    return raw

  def instances(self) -> list:
    """Each frame's instance as (track, score, keypoints [K, 2] NaN where missing, likelihoods
    [K]): no track, the mean likelihood its score."""
    return [[(None, float(np.mean(t[:, 2])), t[:, :2], t[:, 2])]
            for t in trajectory(self.values)]


class _TrackedVideo:
  """Every instance of every frame, followed by its track id (kp_jax.poses.track)."""

  def __init__(self, predictor):
    self.predictor, self.frames, self.tracks = predictor, [], poses.Tracks()

  def add(self, frames, images, matrix):
    del matrix
    predictor = self.predictor
    for frame, instances in zip(frames, predictor.instances(predictor.on_frames(images))):
      self.tracks, ids = poses.track(self.tracks, len(self.frames),
                                     [x["box"] for x in instances], **predictor.tracking)
      self.frames.append([instance_record(predictor.names, x, predictor.cutoff, track=i)
                          for i, x in zip(ids, instances)])
      yield functools.partial(_draw_instances, predictor, frame, instances, ids)

  def write(self, out: dict, header: dict):
    record = {**header, **tracked_record(self.frames)}
    epath.Path(out["csv"]).write_text(video_csv(record))
    epath.Path(out["json"]).write_text(json.dumps(record))

  def instances(self) -> list:
    """Each frame's instances as (track, score, keypoints [K, 2] NaN where missing,
    likelihoods [K])."""
    names = self.predictor.names

    def one(instance):
      points = trajectory([[instance["keypoints"][n] for n in names]])[0]
      return instance["track"], instance["score"], points[:, :2], points[:, 2]
    return [[one(x) for x in frame] for frame in self.frames]


def predict_video(predictor: "Predictor | two_stage.FindRefinePredictor", path: str,
                  output_dir: str, batch_size: int = 8, box=None, smooth: str | None = None,
                  jump_px: float = 20.0, overlay: bool = True) -> dict:
  """Keypoints of every frame of `path`: writes the CSV, JSON and with `overlay` the overlay
  video (module docstring); returns {"frames", "fps", "frames_per_second", "csv", "json"} (and
  "video" with `overlay`, "slp" for a run on SLEAP labels) and, for one instance a frame,
  "jumps": per keypoint the share of frames where it moved more than `jump_px` from the frame
  before (kp_jax.smoothing.jumps), with `smooth` ("median" or "kalman") also "smoothed_csv"
  and "smoothed_jumps"."""
  multi_instance = getattr(predictor, "multi_instance", False)
  if smooth and multi_instance:
    raise ValueError("--smooth smooths one animal's trajectory: this run tracks several "
                     "instances a frame (data.instances.max_instances > 1).")
  if smooth and smooth not in smoothing.METHODS:
    raise ValueError(f"--smooth {smooth!r}: choose one of {smoothing.METHODS}.")
  fps, frames = read_video(path, predictor.upright)
  epath.Path(output_dir).mkdir(parents=True, exist_ok=True)
  stem = os.path.splitext(os.path.basename(path))[0]
  suffixes = {"csv": "keypoints.csv", "json": "keypoints.json",
              **({"video": "labeled.mp4"} if overlay else {})}
  out = {kind: str(epath.Path(output_dir) / f"{stem}_{suffix}")
         for kind, suffix in suffixes.items()}
  if smooth:
    out["smoothed_csv"] = str(epath.Path(output_dir) / f"{stem}_keypoints_{smooth}.csv")
  video = _TrackedVideo(predictor) if multi_instance else _SingleVideo(predictor, smooth)
  matrix, batch, count = None, [], 0
  start = time.perf_counter()
  # The encoder writes a local file (MP4 seeks back to finish it), copied to output_dir after.
  with tempfile.TemporaryDirectory() as local:
    local_video = os.path.join(local, "labeled.mp4")
    writer = VideoWriter(local_video, fps, OVERLAY_PRESET) if overlay else None

    def flush():
      channels = predictor.image_shape[-1]  # a grey model's frames: PIL's grey, as training's
      images = np.stack([in_channels(Image.fromarray(frame), channels) for frame in batch])
      for drawing in video.add(batch, images, matrix):  # drawn on the writer's thread
        if writer:
          writer.write(drawing)
      batch.clear()

    for frame in frames:
      if matrix is None:
        matrix = predictor.crop_matrix(frame.shape[:2], box)
      batch.append(frame)
      count += 1
      if len(batch) == batch_size:
        flush()
    if batch:
      flush()
    if writer:
      writer.close()
      epath.Path(local_video).copy(out["video"], overwrite=True)
  seconds = time.perf_counter() - start
  if not count:
    raise ValueError(f"{path} has no video frames.")
  raw = video.write(out, {"video": path, "keypoints": list(predictor.names), "fps": fps,
                          "likelihood_cutoff": predictor.cutoff,
                          "run_likelihood_cutoff": predictor.run_cutoff,
                          "upright": predictor.upright})
  if sleap.reads(predictor.config.data):  # predictions SLEAP opens, as its labels came
    if sleap.installed():
      out["slp"] = str(epath.Path(output_dir) / f"{stem}.predictions.slp")
      sleap.write_predictions(out["slp"], path, predictor.config.data.project,
                              predictor.names, predictor.skeleton, video.instances())
    else:  # a machine that predicts without having trained: the CSV and JSON are written
      logging.warning("%s: no %s.predictions.slp for SLEAP: sleap-io is not installed here "
                      "(pip install sleap-io==0.9.5).", path, stem)
  result = {**out, "frames": count, "fps": fps, "frames_per_second": count / seconds}
  if raw is not None:
    names = list(predictor.names)
    result["jumps"] = dict(zip(names, smoothing.jumps(raw, jump_px).tolist()))
    if smooth:
      smoothed = smoothing.smooth(raw, smooth)
      result["smoothed_jumps"] = dict(zip(names, smoothing.jumps(smoothed, jump_px).tolist()))
  return result


def jitter_table(result: dict, jump_px: float) -> str:
  """The share of frames where each keypoint moved more than `jump_px` from the frame before,
  raw (and smoothed), as a Markdown table with the mean over keypoints last."""
  series = [result["jumps"]] + ([result["smoothed_jumps"]] if "smoothed_jumps" in result else [])
  header = f"| keypoint | frames moving > {jump_px:g} px, raw |" + (
      " smoothed |" if len(series) > 1 else "")
  lines = [header, "|---" * (len(series) + 1) + "|"]
  percent = lambda v: "-" if np.isnan(v) else f"{100 * v:.1f}%"
  for name in result["jumps"]:
    lines.append(f"| {name} | " + " | ".join(percent(s[name]) for s in series) + " |")
  values = [np.array(list(s.values())) for s in series]
  means = [v[np.isfinite(v)].mean() if np.isfinite(v).any() else np.nan for v in values]
  lines.append("| **mean** | " + " | ".join(percent(m) for m in means) + " |")
  if any(np.isnan(v).any() for v in values):
    lines.append("(-: not above the likelihood cutoff in two frames running; "
                 "--likelihood_cutoff lowers it)")
  return "\n".join(lines)


def main(argv):
  if len(argv) < 2:
    raise app.UsageError("Give one or more image or video files, or folders of them.")
  args = flags.FLAGS
  cli.quiet_console(args.verbose)
  startup.for_run(args.workdir)
  box = [float(v) for v in args.box] if args.box else None
  paths = input_files(argv[1:])
  images = [p for p in paths if not is_video(p)]
  videos = [p for p in paths if is_video(p)]
  output_dir = args.output_dir or str(epath.Path(args.workdir) / "predictions")
  predictor = open_predictor(args.workdir, args.likelihood_cutoff, args.score_threshold,
                             args.scale)
  if images:
    start = time.perf_counter()
    results = predict_images(predictor, images, output_dir, box, args.batch_size, args.overlay)
    seconds = time.perf_counter() - start
    if args.json:
      print(json.dumps(results, indent=2))
    skipped = len(images) - len(results)
    print(f"{len(results)} images in {seconds:.1f} s ({len(results) / seconds:.1f} images/s, "
          f"compilation included) -> {epath.Path(output_dir) / 'keypoints.json'}"
          + (f" and an overlay each in {output_dir}" if args.overlay else "")
          + (f"; {skipped} unreadable, skipped" if skipped else ""))
  if videos:
    epath.Path(output_dir).mkdir(parents=True, exist_ok=True)
    for path in videos:
      result = predict_video(predictor, path, output_dir, box=box, smooth=args.smooth,
                             jump_px=args.jump_px, overlay=args.overlay)
      written = [result[kind] for kind in ("csv", "video", "smoothed_csv") if kind in result]
      print(f"{path}: {result['frames']} frames at {result['frames_per_second']:.1f} frames/s "
            f"(decoding, prediction{', drawing and encoding' if args.overlay else ''}) -> "
            f"{', '.join(written)}")
      if "jumps" in result:
        print(jitter_table(result, args.jump_px))


if __name__ == "__main__":  # flags only for the command, so the module imports anywhere
  flags.DEFINE_string("workdir", None, "A training run's workdir.", required=True)
  flags.DEFINE_string("output_dir", None, "Default: WORKDIR/predictions.")
  flags.DEFINE_list("box", None, "x,y,w,h of the object in every image (COCO convention); "
                    "default: the whole image.")
  flags.DEFINE_float("likelihood_cutoff", None, "Keypoints under this likelihood are written "
                     "as missing and not drawn; default: the run's config.likelihood_cutoff.")
  flags.DEFINE_enum("smooth", None, list(smoothing.METHODS), "Videos: also write the "
                    "keypoints smoothed over time (median filter, or a Kalman smoother that "
                    "trusts confident detections and bridges short gaps) to "
                    "<name>_keypoints_<method>.csv.")
  flags.DEFINE_float("jump_px", 20.0, "Videos: the jitter figure counts frames where a "
                     "keypoint moves more than this (the frames' pixels) from the frame before.")
  flags.DEFINE_integer("batch_size", 8, "Images of one size predicted together.")
  flags.DEFINE_float("scale", 1.0, "Two-stage runs: how much larger the animals look here than "
                     "in the labelled frames (2: zoomed in twice as far); both stages then see "
                     "them at their training size.")
  flags.DEFINE_bool("json", False, "Also print the images' keypoints (keypoints.json) on "
                    "stdout.")
  flags.DEFINE_bool("overlay", True, "Draw the keypoints: an overlay per image, and per video "
                    "<name>_labeled.mp4 (DeepLabCut's create_labeled_video). --nooverlay "
                    "writes the keypoints alone, as DeepLabCut's analyze_videos: drawing and "
                    "encoding the overlay video is most of predict's time on a large video.")
  flags.DEFINE_bool("verbose", False, "Show the libraries' (TensorFlow, XLA, Orbax) INFO logs.")
  flags.DEFINE_float("score_threshold", None, "Several-instance two-stage models: instances "
                     "scoring under it are dropped; default: the run's "
                     "two_stage.score_threshold.")
  app.run(main)
