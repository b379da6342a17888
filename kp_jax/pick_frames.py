"""Video frames to label next, written into a DeepLabCut project's `labeled-data/` or suggested
in a SLEAP labels file, for the labelling tool: the loop of label, train, predict, pick, label
again.

  kp-jax pick-frames --project P video.mp4 ... [--count 20]
      frames that look unlike each other (k-means over small grey copies of the frames, one
      frame a cluster): a new project's first frames, as DeepLabCut's extract_frames
  kp-jax predict --workdir RUN --output_dir OUT video.mp4 ...  # OUT/video_keypoints.json
  kp-jax pick-frames --project P --predictions OUT [--by jump] video.mp4 ...
      frames where the trained run is likely wrong, as DeepLabCut's extract_outlier_frames:
        jump       a keypoint moved more than --epsilon px from the frame before
        uncertain  a keypoint's likelihood is under --p_bound (default: the cutoff under
                   which predict wrote the keypoint as missing, or where that was 0, the
                   run's own); the frames whose keypoints are least sure on average rank
                   worst
        fitting    a keypoint is more than --epsilon px from its median over the 5 frames
                   about it (DeepLabCut fits an ARIMA model; a running median ignores the
                   one- or two-frame excursions this looks for, and follows a steady motion
                   however fast; the first and last two frames are not judged)
      (--keypoints: judge only these, as DeepLabCut's comparisonbodyparts); then of the
      3 x --count worst, --count that look unlike each other: the worst of each cluster

Writes the frames as P/labeled-data/<video name>/img<frame number>.png (zero-padded to the
video's frame count's digits, as DeepLabCut names them) and, from predictions, the run's
keypoints on them as `machinelabels.csv` beside them (DeepLabCut's layout and name; its
labelling tools read the `.h5` it writes beside that: `pandas.read_csv(f, header=[0, 1, 2],
index_col=[0, 1, 2]).to_hdf("machinelabels-iter0.h5", key="df_with_missing")`, four header
rows for several animals). Frames
already in the folder are not picked again and nothing is overwritten; kp-jax trains on the
new frames once a `CollectedData_*.csv` labels them.

  kp-jax pick-frames --project labels.v001.slp [--predictions OUT] video.mp4 ...
      SLEAP: the frames become Labeling Suggestions of the video (added to the project if it
      is not in it yet) and, from predictions, the run's keypoints on them predicted
      instances to correct, in a new version of the file as SLEAP's Save As names it
      (labels.v002.slp; else "labels copy.slp"), the file given left as it was; frames
      labelled by hand or already suggested are not picked again.
"""

import json
import math
import os
import re
import sys
import warnings

import numpy as np
from absl import app, flags
from etils import epath
from PIL import Image
from scipy.cluster import vq

from kp_jax import cli, predict, smoothing
from kp_jax.data import sleap
from kp_jax.exported import read_video, track_name, track_rows

CRITERIA = ("jump", "uncertain", "fitting")
CLUSTER_WIDTH = 30  # px: frames are compared as grey copies this wide (DeepLabCut's default)
FITTING_WINDOW = 5  # frames: `fitting` compares each frame with the median of this many
MAX_CLUSTERED = 10_000  # frames at most go to the clustering (longer videos: evenly spaced)
POOL = 3  # x count: the worst candidates the clustering spreads the picks over (the more, the
          # more varied the picks and the fewer of them wrong: docs/deeplabcut.md)


def read_predictions(path: str) -> dict:
  """predict's `<video>_keypoints.json` as {"names", "trajectory" [F, N, 3] (NaN where
  missing), "individuals" (None, or the tracks' names, each owning len(names) columns),
  "cutoff" (under which they are missing), "run_cutoff" (the run's own: 0 in files from
  before 2026-12-07), "upright" (whether the frames were turned as players show them)}."""
  try:
    record = json.loads(epath.Path(path).read_text())
    frames, names = record["frames"], record["keypoints"]
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise ValueError(f"{path}: not a video's predictions as `kp-jax predict` writes them "
                     f"(<video>_keypoints.json): {e}") from None
  individuals = None
  if "tracks" in record:  # several animals: a track's keypoints are its columns
    individuals = [track_name(i) for i in record["tracks"]]
    frames = track_rows(frames, names, record["tracks"])
  return {"path": path, "names": names, "individuals": individuals,
          "trajectory": predict.trajectory(frames),
          "cutoff": float(record.get("likelihood_cutoff", 0.0)),
          "run_cutoff": float(record.get("run_likelihood_cutoff", 0.0)),
          "upright": bool(record.get("upright", True))}


def outliers(trajectory: np.ndarray, by: str, epsilon: float, p_bound: float):
  """(flags [F, N]: which keypoints of which frames meet the criterion `by`, badness [F]: how
  far past it each frame's worst keypoint is, for `uncertain` how far its mean likelihood is
  under the bound, to rank the frames)."""
  xy, likelihood = trajectory[..., :2], trajectory[..., 2]
  with np.errstate(invalid="ignore"):  # NaN (missing) is never an outlier
    if by == "jump":
      move = np.linalg.norm(np.diff(xy, axis=0, prepend=np.nan), axis=-1)
      return move > epsilon, np.max(np.nan_to_num(move, nan=-np.inf), -1) - epsilon
    if by == "uncertain":
      return likelihood < p_bound, p_bound - np.nanmean(likelihood, -1)
    if by == "fitting":
      off = np.linalg.norm(xy - smoothing.median(trajectory, FITTING_WINDOW)[..., :2], axis=-1)
      half = FITTING_WINDOW // 2
      off[:half], off[len(off) - half:] = np.nan, np.nan  # windows cut short: not judged
      return off > epsilon, np.max(np.nan_to_num(off, nan=-np.inf), -1) - epsilon
  raise ValueError(f"--by {by!r}: choose one of {CRITERIA}.")


def small_grey(frame: np.ndarray, width: int = CLUSTER_WIDTH) -> np.ndarray:
  """A frame as the clustering compares it: grey, `width` px wide (aspect kept), floats."""
  image = Image.fromarray(frame).convert("L")
  height = max(1, round(image.height * width / image.width))
  return np.asarray(image.resize((width, height), Image.Resampling.BOX), np.float32).ravel()


def pick(features: np.ndarray, count: int, badness=None, seed: int = 0) -> np.ndarray:
  """Indices of `count` rows of `features` [N, D] unlike each other: k-means into `count`
  clusters, from each its worst row by `badness` [N] (or, without, the row nearest its
  centre); clusters k-means left empty are made up by the rows farthest from those picked."""
  if count >= len(features):
    return np.arange(len(features))
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # "One of the clusters is empty": made up below
    centres, labels = vq.kmeans2(features.astype(np.float64), count, minit="++", seed=seed)
  picked = []
  for cluster in np.unique(labels):
    members = np.flatnonzero(labels == cluster)
    if badness is None:
      score = -np.linalg.norm(features[members] - centres[cluster], axis=-1)
    else:
      score = badness[members]
    picked.append(members[np.argmax(score)])
  while len(picked) < count:
    nearest = np.min([np.linalg.norm(features - features[p], axis=-1) for p in picked], 0)
    picked.append(int(np.argmax(nearest)))
  return np.sort(picked)


def uniform(candidates: np.ndarray, count: int) -> np.ndarray:
  """`count` of `candidates` evenly spaced."""
  if count >= len(candidates):
    return candidates
  return candidates[np.unique(np.linspace(0, len(candidates) - 1, count).round().astype(int))]


def frame_name(index: int, frames: int) -> str:
  """DeepLabCut's file name for frame `index` of a video of `frames` frames."""
  return f"img{str(index).zfill(math.ceil(math.log10(max(frames, 1))))}.png"


def _video_features(path: str, wanted, upright: bool):
  """(the video's frame count, frame numbers, their small grey copies) of the frames in
  `wanted` (a set), or without it of at most MAX_CLUSTERED frames evenly spaced: every
  `stride`-th, the stride doubled whenever the copies outgrow the cap."""
  _, frames = read_video(path, upright)
  numbers, copies, stride, count = [], [], 1, 0
  for count, frame in enumerate(frames, start=1):
    number = count - 1
    if (number in wanted) if wanted is not None else number % stride == 0:
      numbers.append(number)
      copies.append(small_grey(frame))
      if wanted is None and len(numbers) > MAX_CLUSTERED:
        numbers, copies, stride = numbers[::2], copies[::2], stride * 2
  return count, numbers, copies


def _write_frames(path: str, numbers, folder: epath.Path, total: int,
                  upright: bool) -> list[str]:
  """Saves frames `numbers` of the video as PNGs in `folder`; returns their file names."""
  wanted, names = set(int(n) for n in numbers), []
  _, frames = read_video(path, upright)
  for number, frame in enumerate(frames):
    if number in wanted:
      names.append(frame_name(number, total))
      Image.fromarray(frame).save(folder / names[-1])
      if len(names) == len(wanted):
        break
  return names


def judged_columns(names, individuals, keypoints) -> np.ndarray:
  """The trajectory's columns of `keypoints` (names; None: all), of every individual."""
  unknown = sorted(set(keypoints or ()) - set(names))
  if unknown:
    raise ValueError(f"--keypoints {unknown}: not the run's keypoints; choose among {names}.")
  judged = [n in (keypoints or names) for n in names] * len(individuals or [None])
  return np.flatnonzero(judged)


def _upright(predicted: dict | None) -> bool:
  """Whether frames are read as players show them: as the keypoints were predicted, or
  without predictions, yes."""
  return predicted["upright"] if predicted else True


def choose(video: str, count: int, settled: set, predicted: dict | None = None,
           by: str = "jump", epsilon: float = 20.0, p_bound: float | None = None,
           method: str = "kmeans", keypoints=None, seed: int = 0) -> tuple[np.ndarray, dict]:
  """(the frame numbers of `video` to label (module docstring), none of `settled`; {"candidates",
  "video_frames"} and, from `predicted` (read_predictions), "by", "p_bound", "cutoff",
  "missing" and "keypoints": how many candidate frames each keypoint flagged)."""
  if method not in ("kmeans", "uniform"):
    raise ValueError(f"--pick {method!r}: choose 'kmeans' or 'uniform'.")
  result, wanted = {}, None  # without predictions: any frame
  if predicted:
    names, individuals = predicted["names"], predicted["individuals"]
    columns = judged_columns(names, individuals, keypoints)
    if p_bound is None:  # predictions written whole (cutoff 0): the run's own cutoff
      p_bound = predicted["cutoff"] or predicted["run_cutoff"]
    judged = predicted["trajectory"][:, columns]
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", RuntimeWarning)  # a frame missing them all: no outlier
      flagged, badness = outliers(judged, by, epsilon, p_bound)
    candidates = np.array([c for c in np.flatnonzero(flagged.any(-1)) if c not in settled], int)
    flagged_by = flagged[candidates].sum(0)
    column_names = np.array(names * len(individuals or [None]))[columns]
    result.update(by=by, candidates=len(candidates), p_bound=p_bound,
                  cutoff=predicted["cutoff"], missing=float(np.isnan(judged[..., 0]).mean()),
                  keypoints={n: int(v) for n, v in zip(column_names, flagged_by) if v})
    if method == "kmeans":  # the worst of them
      candidates = np.sort(candidates[np.argsort(-badness[candidates])[:POOL * count]])
    else:
      candidates = uniform(candidates, count)
    wanted = set(candidates.tolist())
  video_frames, numbers, copies = _video_features(video, wanted, _upright(predicted))
  if predicted and video_frames != len(predicted["trajectory"]):
    raise ValueError(f"{predicted['path']} holds {len(predicted['trajectory'])} frames, "
                     f"{video} has {video_frames}: predictions of another video? Give the "
                     "video they were made on.")
  keep = [n not in settled for n in numbers]
  numbers = np.array(numbers, int)[np.array(keep, bool)]
  if method == "uniform" or not len(numbers):
    chosen = uniform(numbers, count)
  else:
    features = np.stack([c for c, k in zip(copies, keep) if k])
    chosen = numbers[pick(features, count, badness[numbers] if predicted else None, seed)]
  result.update(video_frames=video_frames)
  result.setdefault("candidates", len(numbers))
  return chosen, result


def frames_in_folder(folder: epath.Path) -> set[int]:
  """The frame numbers of the DeepLabCut frames (img<number>.png) in `folder`."""
  names = (p.name for p in folder.glob("img*.png")) if folder.exists() else ()
  return {int(m[1]) for m in (re.fullmatch(r"img(\d+)\.png", n) for n in names) if m}


def into_deeplabcut(project: str, video: str, count: int, predicted: dict | None,
                    **how) -> dict:
  """Writes the frames `choose` picks into the DeepLabCut project's labeled-data/<video
  name>/ and, from `predicted`, the run's keypoints on them as machinelabels.csv; returns
  `choose`'s record with "folder", "frames" (file names) and "machine_labels" (the CSV)."""
  folder = epath.Path(project) / "labeled-data" / os.path.splitext(os.path.basename(video))[0]
  chosen, result = choose(video, count, frames_in_folder(folder), predicted, **how)
  result.update(folder=str(folder), frames=[])
  if not len(chosen):
    return result
  folder.mkdir(parents=True, exist_ok=True)
  result["frames"] = _write_frames(video, chosen, folder, result["video_frames"],
                                   _upright(predicted))
  if predicted:
    path = folder / "machinelabels.csv"
    predict.write_deeplabcut_csv(
        str(path), predicted["names"], predict.frames_values(predicted["trajectory"][chosen]),
        individuals=predicted["individuals"],
        index=[("labeled-data", folder.name, name) for name in result["frames"]])
    result["machine_labels"] = str(path)
  return result


def _turned(video: str) -> bool:
  """Whether players show the video's frames turned from how they are stored."""
  upright, stored = (next(read_video(video, turn)[1]) for turn in (True, False))
  return upright.shape != stored.shape or not np.array_equal(upright, stored)


def _instances(predicted: dict, frame: int) -> list:
  """The predicted instances of a frame as sleap.add_suggestions takes them: each
  individual's keypoints found, their mean likelihood its score."""
  keypoints = len(predicted["names"])
  tracks = predicted["individuals"] or [None]
  rows = predicted["trajectory"][frame].reshape(len(tracks), keypoints, 3)
  return [(track, float(np.nanmean(row[:, 2])), row[:, :2], row[:, 2])
          for track, row in zip(tracks, rows) if not np.isnan(row[:, 0]).all()]


def into_sleap(labels_path: str, video: str, count: int, predicted: dict | None,
               out: str | None = None, **how) -> dict:
  """Suggests the frames `choose` picks in the SLEAP labels file, saved to `out` (default: as
  SLEAP saves a new version, kp_jax.data.sleap.saved_again: the file read is left as it was),
  with, from `predicted`, the run's keypoints on them as predicted instances; returns
  `choose`'s record with "labels" (the file written) and "frames" (frame numbers)."""
  if labels_path.endswith(".pkg.slp"):
    raise ValueError(f"--project {labels_path}: a labels package holds only the frames "
                     "exported into it; pick frames into the project's .slp it was exported "
                     "from, which names its videos.")
  labels = sleap.read_labels(labels_path, "--project")
  sleap.find_videos(labels, labels_path)
  if predicted:
    nodes = labels.skeletons[0].node_names if labels.skeletons else []
    if list(predicted["names"]) != list(nodes):
      raise ValueError(f"{predicted['path']}: keypoints {predicted['names']}, the skeleton of "
                       f"{labels_path} has {nodes}: predictions of a run trained on another "
                       "project?")
    if not predicted["upright"] and _turned(video):
      raise ValueError(f"{predicted['path']}: made on {video}'s frames as stored "
                       "(data.upright False), which SLEAP shows turned as players do; predict "
                       "again with --config.data.upright=True.")
  target = sleap.project_video(labels, video)
  chosen, result = choose(video, count, sleap.settled_frames(labels, target), predicted, **how)
  result["frames"] = [int(n) for n in chosen]
  if len(chosen):
    sleap.add_suggestions(labels, target, result["frames"],
                          {n: _instances(predicted, n) for n in result["frames"]}
                          if predicted else None)
    result["labels"] = out or sleap.saved_again(labels_path)
    sleap.write_labels(labels, result["labels"])
  return result


def pick_frames(project: str, video: str, count: int = 20, predictions: str | None = None, *,
                out: str | None = None, **how) -> dict:
  """Picks `count` frames of `video` to label (module docstring) into `project`, a DeepLabCut
  project's folder (`into_deeplabcut`) or a SLEAP labels file (`into_sleap`, saved to `out`);
  `how`: `choose`'s criteria. Returns their record."""
  predicted = read_predictions(predictions) if predictions else None
  if sleap.is_labels_file(project):
    return into_sleap(project, video, count, predicted, out, **how)
  return into_deeplabcut(project, video, count, predicted, **how)


def predictions_file(predictions: str | None, video: str) -> str | None:
  """`predictions` itself, or where it is a folder (predict's --output_dir), the video's
  `<name>_keypoints.json` in it."""
  if predictions and epath.Path(predictions).is_dir():
    stem = os.path.splitext(os.path.basename(video))[0]
    return str(epath.Path(predictions) / f"{stem}_keypoints.json")
  return predictions


def main(argv):
  args = flags.FLAGS
  videos = argv[1:]
  if not videos:
    raise app.UsageError("Give videos: kp-jax pick-frames --project P VIDEO ... "
                         "[--predictions VIDEO_keypoints.json, or predict's output folder].")
  if len(videos) > 1 and args.predictions and not epath.Path(args.predictions).is_dir():
    raise app.UsageError(f"--predictions {args.predictions} is one video's; for "
                         f"{len(videos)} videos give the folder predict wrote them to.")
  missing = [f for f in (predictions_file(args.predictions, v) for v in videos)
             if f and not epath.Path(f).exists()]
  if missing:
    raise app.UsageError(f"No predictions {missing}: run `kp-jax predict` on those videos "
                         "first (--output_dir: the folder to give --predictions).")
  project, out = args.project, None
  for video in videos:
    predictions = predictions_file(args.predictions, video)
    result = pick_frames(project, video, args.count, predictions, out=out, by=args.by,
                         epsilon=args.epsilon, p_bound=args.p_bound, method=args.pick,
                         keypoints=args.keypoints, seed=args.seed)
    where = result.get("folder") or f"{project} (labelled or suggested)"
    if predictions:
      bound = f"{args.epsilon:g} px"
      if args.by == "uncertain":
        source = ("the cutoff the predictions were written with" if result["cutoff"]
                  else "the run's own cutoff")
        bound = f"likelihood under {result['p_bound']:g}" + (
            f", {source}; --p_bound to change" if args.p_bound is None else "")
      print(f"{video}: {args.by} ({bound}): {result['candidates']} of "
            f"{result['video_frames']} frames not yet in {where}; frames flagged by "
            "each keypoint: " + (", ".join(f"{n} {v}" for n, v in sorted(
                result["keypoints"].items(), key=lambda kv: -kv[1])) or "none"))
      if result["missing"] and args.by != "uncertain":
        print(f"{video}: {100 * result['missing']:.0f}% of the judged keypoints are not in the "
              f"predictions (not found, or under the likelihood cutoff {result['cutoff']:g} "
              "they were written with) and are not judged; `kp-jax predict "
              "--likelihood_cutoff 0` writes every one found.")
    if not result["frames"]:
      print(f"{video}: no frame to pick, nothing written.", file=sys.stderr)
      continue
    if "labels" in result:  # SLEAP: the next videos' suggestions join these, in the same file
      project = out = result["labels"]
      print(f"{video}: suggested {len(result['frames'])} frames ({args.pick}) in {out}: "
            + ", ".join(map(str, result["frames"]))
            + ("; the run's keypoints on them as predicted instances" if predictions else "")
            + ". Open it in SLEAP: Labeling Suggestions lists them.")
      continue
    print(f"{video}: picked {len(result['frames'])} frames ({args.pick}) -> "
          f"{result['folder']}: {', '.join(result['frames'])}"
          + (f"; the run's keypoints on them: {result['machine_labels']}"
             if "machine_labels" in result else ""))


if __name__ == "__main__":  # flags only for the command, so the module imports anywhere
  flags.DEFINE_string("project", None, "The DeepLabCut (or Lightning Pose) project's folder: "
                      "frames go to PROJECT/labeled-data/<video name>/; or a SLEAP labels "
                      "file (.slp): frames are suggested in a new version of it.",
                      required=True)
  flags.DEFINE_integer("count", 20, "How many frames to pick.")
  flags.DEFINE_string("predictions", None, "The video's <name>_keypoints.json from `kp-jax "
                      "predict`, or the folder predict wrote several videos' to: pick where "
                      "the run is likely wrong (--by), not just diverse frames.")
  flags.DEFINE_enum("by", "jump", list(CRITERIA), "With --predictions: which frames are "
                    "suspect (module docstring).")
  flags.DEFINE_float("epsilon", 20.0, "jump and fitting: the distance in the video's pixels.")
  flags.DEFINE_float("p_bound", None, "uncertain: the likelihood bound; default: the run's "
                     "likelihood cutoff the predictions were written with, or where that "
                     "was 0, the run's own.")
  flags.DEFINE_enum("pick", "kmeans", ["kmeans", "uniform"], "How the frames are chosen among "
                    "the candidates: one a k-means cluster of look-alike frames, or evenly "
                    "spaced in time.")
  flags.DEFINE_list("keypoints", None, "With --predictions: judge only these keypoints "
                    "(DeepLabCut's comparisonbodyparts); default: all.")
  flags.DEFINE_integer("seed", 0, "The k-means initialisation's seed.")
  cli.quiet_console(False)
  app.run(main)
