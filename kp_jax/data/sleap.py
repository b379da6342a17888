"""SLEAP projects: a labels file, `.slp` (frames in its videos) or `.pkg.slp` (frames embedded),
read with sleap-io (pip install sleap-io==0.9.5, or kp-jax[sleap]; tests/requirements.txt pins
it for the suite).

  config.data.source = "sleap"; config.data.project = "/path/to/labels.v001.slp"
  (or with data.source "deeplabcut", as configs/deeplabcut.py sets it: a .slp project is SLEAP's)

The skeleton's nodes are the keypoints, its edges the lines drawn between them and its
symmetries the flip pairs (else left/right names, or `config.data.flip_pairs`). Every
user-labelled instance of a frame is one instance of that frame (the source's `images` view
holds a frame's instances together, for the centre model of kp_jax/two_stage.py); a node marked
not visible is unlabelled, and predicted instances are not labels, so they are not read.
Coordinates are SLEAP's, pixel centres at integers as kp-jax's (sleap-io moves points of files
older than format 1.1, whose origin was the top-left corner of the first pixel).

Each labelled frame is read from its video once (a video file, an image sequence or the
package's embedded frames, by sleap-io; a video not where the file names it is looked for
beside the labels file, as SLEAP does for a project moved to another machine) and kept as a
PNG in the user cache folder ($XDG_CACHE_HOME or ~/.cache, kp_jax/sleap_frames/<video>-<its
size and time>/), which the pipeline reads as image files: a labels file saved again reuses
them. A frame is named `<video file>/<frame index>` (the video's whole path where two videos
share a file name), or `<folder>/<image file>` in an image sequence: `data.test_frames` takes
those names, or an image's file name.

Train/test split, deterministic, as DeepLabCut projects' (kp_jax/data/deeplabcut.py): the
frames sorted by name, `data.test_frames` when given, else `1 - data.train_fraction` of them
spread evenly (default 0.9: SLEAP's validation fraction 0.1). The held-out frames are the
`test` split and also `validation`.
"""

import hashlib
import importlib.util
import os
import re

import numpy as np
from absl import logging
from PIL import Image

import kp_jax
from kp_jax.data import deeplabcut, files
from kp_jax.data.keypoints import KeypointSpec
from kp_jax.data.source import Source
from kp_jax.exported import track_name

SLEAP_VALIDATION_FRACTION = 0.1  # sleap-nn's and SLEAP's default


def installed() -> bool:
  return importlib.util.find_spec("sleap_io") is not None


def _sleap_io(path: str):
  try:
    import sleap_io  # noqa: PLC0415 -- only SLEAP projects need it
  except ImportError:
    raise ImportError(f"{path}: SLEAP's files need sleap-io: pip install sleap-io==0.9.5") from None
  return sleap_io


def reads(data_config) -> bool:
  """Whether a run's data are a SLEAP labels file: `data.source` "sleap", or a project given
  to the DeepLabCut source as a `.slp` file (configs/deeplabcut.py reads either)."""
  return data_config.source == "sleap" or (
      data_config.source == "deeplabcut" and is_labels_file(data_config.get("project") or ""))


def read_labels(path: str, setting: str = "config.data.project"):
  """sleap-io's Labels of the file at `path`, with a clear error, naming the `setting` that
  gave it, where it cannot be read."""
  sleap_io = _sleap_io(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{setting}={path}: no such file; give the SLEAP labels file "
                            "(.slp or .pkg.slp).")
  try:
    return sleap_io.load_slp(path)
  except Exception as e:  # h5py's and sleap-io's own errors, of a file that is not SLEAP's
    raise ValueError(f"{path} is not a SLEAP labels file sleap-io reads: {e}") from None


def original_filename(video):
  """The video's file, or an image sequence's files; a package's embedded frames: those of the
  video they came from."""
  return (video.original_video or video).filename


def frame_name(video, frame_index: int, videos) -> str:
  """`<video file>/<frame index>` (the video's path as the labels file has it where another of
  `videos` has its file name), or `<folder>/<image file>` in an image sequence."""
  filename = original_filename(video)
  if not isinstance(filename, str):
    image = filename[frame_index]
    return f"{os.path.basename(os.path.dirname(image))}/{os.path.basename(image)}"
  names = [os.path.basename(original_filename(v)) for v in videos
           if isinstance(original_filename(v), str)]
  unique = names.count(os.path.basename(filename)) == 1
  return f"{os.path.basename(filename) if unique else filename}/{frame_index}"


def frames_folder(video) -> str:
  """Where a video's labelled frames are kept: the user cache folder, under the name of the
  file holding them (the video file, an image sequence's first image, or the package that
  embeds them), its size and time (and for a package the video they came from). A labels file
  saved again reuses them; a changed video gets fresh ones."""
  holder = video.filename if isinstance(video.filename, str) else video.filename[0]
  stat = os.stat(holder)
  origin = original_filename(video)
  origin = origin if isinstance(origin, str) else origin[0]
  key = hashlib.sha1(f"{os.path.abspath(holder)}|{stat.st_size}|{stat.st_mtime_ns}|{origin}"
                     .encode())
  stem = os.path.basename(origin).split(".")[0]
  return kp_jax.user_cache_folder("sleap_frames", f"{stem}-{key.hexdigest()[:12]}")


def frame_file(folder: str, labelled_frame) -> str:
  """The PNG of a labelled frame, written once into `folder` (its video's `frames_folder`; to a
  temporary name, then renamed, so several processes may share the folder)."""
  path = os.path.join(folder, f"{labelled_frame.frame_idx:06d}.png")
  if not os.path.exists(path):
    os.makedirs(folder, exist_ok=True)
    pixels = np.asarray(labelled_frame.image)
    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    partial = f"{path}.{os.getpid()}.partial.png"
    image.save(partial)
    os.replace(partial, path)
  return path


def labelled_videos(labels) -> list:
  """The videos holding user-labelled frames, each once."""
  return list({id(f.video): f.video for f in labels.labeled_frames if f.user_instances}.values())


def find_videos(labels, path: str):
  """Points each video holding user-labelled frames at its file: where the labels file names
  it, else a file of its name beside the labels file (a project moved to another machine, as
  SLEAP looks for it); an error names those found in neither place."""
  folder = os.path.dirname(os.path.abspath(path))
  moved, missing = {}, []
  for video in labelled_videos(labels):
    if video.exists() or not isinstance(video.filename, str):  # an image sequence: its files'
      continue
    beside = os.path.join(folder, os.path.basename(video.filename))
    if os.path.exists(beside):
      moved[video.filename] = beside
    else:
      missing.append(video.filename)
  if missing:
    raise FileNotFoundError(
        f"{path}: the videos of its labelled frames are not found, neither where it names them "
        f"nor beside it: {missing}. Copy them beside the labels file, or save the project as a "
        "labels package with its frames embedded (.pkg.slp: SLEAP's File > Export Labels "
        "Package).")
  if moved:
    logging.info("%s: videos found beside it: %s", path, moved)
    labels.replace_filenames(filename_map=moved)


def _skeleton(labels, path: str):
  if len(labels.skeletons) != 1:
    raise ValueError(f"{path} has {len(labels.skeletons)} skeletons "
                     f"({[s.name for s in labels.skeletons]}): kp-jax trains one set of "
                     "keypoints; keep one in SLEAP (Skeleton > Delete) or split the file.")
  return labels.skeletons[0]


def source(data_config) -> Source:
  """The SLEAP labels file `data_config.project` as a `Source` (splits train, validation,
  test)."""
  path = data_config.project
  if not path:
    raise ValueError("config.data.project: set it to the SLEAP labels file (.slp).")
  labels = read_labels(path)
  find_videos(labels, path)
  skeleton = _skeleton(labels, path)
  names = tuple(skeleton.node_names)
  try:
    spec = KeypointSpec(names, files.flip_pairs(data_config.flip_pairs, names,
                                                skeleton.symmetry_names, path),
                        tuple(skeleton.edge_names), "image size sqrt(w * h)",
                        tuple(data_config.oks_sigmas))
  except ValueError as e:
    raise ValueError(f"{path} with config.data.flip_pairs / oks_sigmas: {e}") from None

  folders = {id(video): frames_folder(video) for video in labelled_videos(labels)}
  frames = {}  # name -> (image path, [(keypoints, visible, record), ...])
  for labelled in labels.labeled_frames:
    instances = labelled.user_instances
    if not instances:
      continue  # predictions only: nothing labelled
    name = frame_name(labelled.video, labelled.frame_idx, labels.videos)
    if name in frames:
      raise ValueError(f"{path}: frame {name} is labelled twice.")
    frames[name] = (frame_file(folders[id(labelled.video)], labelled), [])
    for i, instance in enumerate(instances):
      points = instance.numpy()  # NaN where not visible
      visible = np.isfinite(points).all(-1).astype(np.float32)
      if visible.any():
        frames[name][1].append((np.nan_to_num(points).astype(np.float32), visible,
                                f"{path}: {name}, instance {i}"))
  if not frames:
    raise ValueError(f"{path} has no user-labelled instances (predictions are not labels).")
  logging.info("%s: %d labelled frames, their PNGs in %s", path, len(frames),
               sorted({os.path.dirname(image) for image, _ in frames.values()}))

  order = sorted(frames)
  train_fraction = data_config.train_fraction or 1 - SLEAP_VALIDATION_FRACTION
  test = deeplabcut.test_mask(order, tuple(data_config.test_frames), train_fraction, path)
  return deeplabcut.frames_source(
      f"sleap/{os.path.basename(path)}", spec,
      [(frames[name][0], image_id, held, *instance) for image_id, (name, held)
       in enumerate(zip(order, test)) for instance in frames[name][1]], data_config, path)


def predicted_instances(sleap_io, skeleton, instances, tracks: dict) -> list:
  """sleap-io PredictedInstances of `instances` [(track name or None, score, keypoints [K, 2]
  NaN where missing, likelihoods [K]), ...]: the likelihoods are the points' scores, a missing
  point is not visible; a track is taken from `tracks` (name -> Track), or made and added to it."""
  predicted = []
  for track, score, points, likelihood in instances:
    if track is not None and track not in tracks:
      tracks[track] = sleap_io.Track(name=track)
    predicted.append(sleap_io.PredictedInstance.from_numpy(
        np.asarray(points, np.float64), skeleton=skeleton, point_scores=np.asarray(likelihood),
        score=float(score), track=tracks.get(track)))
  return predicted


def predictions_skeleton(sleap_io, project: str, names, edges):
  """The skeleton predictions of a run trained on the SLEAP labels file `project` are written
  with: the project's own, so that SLEAP merges them into it under that skeleton (it takes a
  skeleton of other edges or symmetries for another), else, where the file is not here, one of
  the run's keypoint `names` and `edges` (index pairs), with a warning."""
  if os.path.isfile(project):
    from sleap_io.io import slp  # noqa: PLC0415 -- the skeletons alone, not the labels
    own = slp.read_skeletons(project)
    if len(own) == 1 and own[0].node_names == list(names):
      return own[0]
  logging.warning("%s (config.data.project) is not here, or is no longer the run's keypoints: "
                  "the predictions' skeleton has the run's keypoints and edges but no "
                  "symmetries, which SLEAP takes for another skeleton if the project's has "
                  "some.", project)
  return sleap_io.Skeleton(list(names), edges=[(names[i], names[j]) for i, j in edges])


def write_predictions(path: str, video_path: str, project: str, names, edges, frames):
  """A SLEAP labels file of predictions on the video at `video_path`, which SLEAP opens to
  proofread them (and merges into the labels file `project` the run trained on): each frame's
  instances as predicted instances, `frames` [[(track id or None, score, keypoints [K, 2] NaN
  where missing, likelihoods [K]), ...] per frame], a track id naming the SLEAP track
  `exported.track_name` gives it (as predict's CSV names it)."""
  sleap_io = _sleap_io(path)
  skeleton = predictions_skeleton(sleap_io, project, names, edges)
  video = sleap_io.Video.from_filename(os.path.abspath(video_path))
  tracks, labelled = {}, []
  for index, instances in enumerate(frames):
    named = [(None if track is None else track_name(track), *rest) for track, *rest in instances]
    if named:
      labelled.append(sleap_io.LabeledFrame(video=video, frame_idx=index, instances=(
          predicted_instances(sleap_io, skeleton, named, tracks))))
  sleap_io.save_slp(sleap_io.Labels(labeled_frames=labelled, videos=[video],
                                    skeletons=[skeleton], tracks=list(tracks.values())), path)


# Frames to label next (kp_jax/pick_frames.py) as SLEAP's labelling suggestions.

def is_labels_file(path: str) -> bool:
  return str(path).endswith(".slp")


def saved_again(path: str) -> str:
  """Where SLEAP's Save As puts `path` (its `.v###.slp` version plus one, else `<name>
  copy.slp`), repeated until no file is there: nothing is overwritten."""
  while os.path.exists(path):
    version = re.fullmatch(r"(.*\.v)(\d+)(\.slp)", path)
    if version:
      head, number, tail = version.groups()
      path = f"{head}{str(int(number) + 1).zfill(len(number))}{tail}"
    else:
      path = f"{path[:-len('.slp')]} copy.slp"
  return path


def project_video(labels, path: str):
  """The video of `labels` that is the file at `path`: the same file, else the only one of its
  file name that is not where the labels name it (moved: pointed at `path`), else a new video
  added to the labels. Another file of the same name is another video (day1/cam0.mp4 is not
  day2/cam0.mp4)."""
  mine = [v for v in labels.videos if isinstance(v.filename, str)]
  for video in mine:
    if os.path.exists(video.filename) and os.path.samefile(video.filename, path):
      return video
  moved = [v for v in mine if not os.path.exists(v.filename)
           and os.path.basename(v.filename) == os.path.basename(path)]
  if len(moved) == 1:
    moved[0].replace_filename(os.path.abspath(path))
    return moved[0]
  video = _sleap_io(path).Video.from_filename(os.path.abspath(path))
  labels.videos.append(video)
  return video


def settled_frames(labels, video) -> set[int]:
  """Frames of `video` already labelled by hand or already suggested: not to suggest again."""
  labelled = {f.frame_idx for f in labels.find(video) if f.user_instances}
  return labelled | {s.frame_idx for s in labels.suggestions if s.video is video}


def add_suggestions(labels, video, frames, predictions=None):
  """Suggests `frames` of `video` to label (SLEAP's Labeling Suggestions, listed in its GUI),
  with `predictions` {frame: [(track name or None, score, keypoints [K, 2], likelihoods [K]),
  ...]} on them as predicted instances to correct (in place of those a frame had)."""
  sleap_io = _sleap_io(video.filename)
  tracks = {t.name: t for t in labels.tracks}
  for frame in frames:
    labels.suggestions.append(sleap_io.SuggestionFrame(video=video, frame_idx=int(frame)))
    if not (predictions and predictions.get(frame)):
      continue  # (a new project may have no skeleton yet)
    instances = predicted_instances(sleap_io, labels.skeletons[0], predictions[frame], tracks)
    found = labels.find(video, int(frame))
    if found:
      found[0].instances = found[0].user_instances + instances
    else:
      labels.append(sleap_io.LabeledFrame(video=video, frame_idx=int(frame), instances=instances))
  labels.tracks.extend(t for t in tracks.values() if t not in labels.tracks)


def write_labels(labels, path: str):
  """Saves `labels` as a SLEAP labels file (its videos named, not embedded)."""
  _sleap_io(path).save_slp(labels, path)
