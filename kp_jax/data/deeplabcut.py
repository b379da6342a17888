"""DeepLabCut projects: `config.yaml` plus `labeled-data/<video>/CollectedData_<scorer>.csv`.

  config.data.source = "deeplabcut"; config.data.project = "/path/to/MyProject-Me-2024-01-01"

Lightning Pose projects read the same way: their layout is DeepLabCut's label table as one
`CollectedData.csv` at the project's root (frames named `labeled-data/img001.png`), without
a `config.yaml`; the body parts are the CSV's, with no skeleton, and the split takes
`data.train_fraction` (default 0.95, as DeepLabCut's).

The project's `bodyparts` are the keypoints and its `skeleton` the lines drawn between them;
flip pairs come from left/right names (or `config.data.flip_pairs`). Every labelled frame of
every video folder is one example on the whole frame (no boxes: crop with `data.input_size`).
An empty cell is an unlabelled body part (invisible).

The CSV layout is DeepLabCut's (single animal): three header rows `scorer` / `bodyparts` /
`coords`, then one row per frame. The frame is named by the first column
(`labeled-data/video/img001.png`, DeepLabCut 2.0-2.2), or by three index columns
(`labeled-data`, `video`, `img001.png`, DeepLabCut 2.3 and later), relative to the project.

Train/test split, deterministic: the frames sorted by path, or `data.test_frames` when given
(paths as in the CSV, or file names); otherwise a fraction `1 - data.train_fraction` (default:
the project's `TrainingFraction[0]`) spread evenly over the sorted frames - with 0.8, every
5th frame (the 5th, 10th, ...) is held out. The held-out frames are the `test` split and, as
DeepLabCut evaluates on them too, also `validation` (keep that in mind when picking a checkpoint
by validation metrics; `configs/deeplabcut.py` evaluates only at the end).
"""

import collections
import csv
import fractions
import glob
import math
import os

import numpy as np
import yaml

from kp_jax.data import files
from kp_jax.data.keypoints import KeypointSpec
from kp_jax.data.source import Source

HEADER_ROWS = ("scorer", "bodyparts", "coords")
LIGHTNING_POSE_LABELS = "CollectedData*.csv"  # at the project's root, beside labeled-data/


def label_files(project: str) -> list[str]:
  """The project's label CSVs: DeepLabCut's per-video ones, else Lightning Pose's at the
  project's root."""
  return (sorted(glob.glob(os.path.join(project, "labeled-data", "*", "CollectedData_*.csv")))
          or sorted(glob.glob(os.path.join(project, LIGHTNING_POSE_LABELS))))


def header_bodyparts(path: str) -> list[str]:
  """The body parts a label CSV's header names, in column order."""
  with open(path, newline="") as f:
    rows = csv.reader(f)
    _, parts_row, coords_row = next(rows, []), next(rows, []), next(rows, [])
  return list(dict.fromkeys(p for p, c in zip(parts_row, coords_row) if c in ("x", "y")))


def read_project_config(project: str) -> dict:
  """config.yaml; for Lightning Pose's layout (no config.yaml, `CollectedData.csv` at the
  root), the body parts of that CSV's header."""
  path = os.path.join(project, "config.yaml")
  if not os.path.exists(path):
    lightning_pose = sorted(glob.glob(os.path.join(project, LIGHTNING_POSE_LABELS)))
    if lightning_pose:
      return {"bodyparts": header_bodyparts(lightning_pose[0])}
    raise FileNotFoundError(f"{path} not found: config.data.project must be a DeepLabCut "
                            "project folder (the one holding config.yaml and labeled-data/), "
                            "or a Lightning Pose one (CollectedData.csv and labeled-data/).")
  try:
    with open(path) as f:
      project_config = yaml.safe_load(f)
  except yaml.YAMLError as e:
    raise ValueError(f"{path} is not valid YAML: {e}") from None
  bodyparts = (project_config or {}).get("bodyparts")
  if not isinstance(bodyparts, list) or not bodyparts:
    if (project_config or {}).get("multianimalbodyparts"):
      raise ValueError(f"{path} is a multi-animal project (multianimalbodyparts); kp-jax reads "
                       "single-animal projects: export one animal's labels, or convert to COCO.")
    raise ValueError(f"{path} has no 'bodyparts' list.")
  return project_config


def _skeleton(project_config: dict, names, path: str) -> tuple:
  pairs = []
  for pair in project_config.get("skeleton") or []:
    if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(p in names for p in pair)):
      raise ValueError(f"{path}: skeleton entry {pair} must be two of the bodyparts {names}.")
    pairs.append(tuple(pair))
  return tuple(pairs)


def read_labels(path: str, bodyparts: list[str]):
  """[(frame path relative to the project, keypoints [K, 2], visible [K], line)] of one
  CollectedData CSV, with the keypoints in the project's bodypart order."""
  with open(path, newline="") as f:
    rows = list(csv.reader(f))
  if len(rows) < 3 or tuple(r[0] if r else "" for r in rows[:3]) != HEADER_ROWS:
    if len(rows) >= 4 and rows[1] and rows[1][0] == "individuals":
      raise ValueError(f"{path} is a multi-animal CSV (an 'individuals' header row); kp-jax "
                       "reads single-animal projects.")
    raise ValueError(f"{path}: expected DeepLabCut's header rows {HEADER_ROWS} in the first "
                     "column.")
  parts_row, coords_row = rows[1], rows[2]
  first = next((i for i, c in enumerate(coords_row) if c in ("x", "y")), None)
  if first is None:
    raise ValueError(f"{path}: the coords row has no x / y columns.")
  columns = {}
  for i in range(first, len(coords_row)):
    columns[(parts_row[i], coords_row[i])] = i
  missing = [p for p in bodyparts if (p, "x") not in columns or (p, "y") not in columns]
  if missing:
    raise ValueError(f"{path}: bodyparts {missing} of config.yaml have no x / y columns; "
                     f"the file has {sorted({p for p, _ in columns})}.")
  labels = []
  for line, row in enumerate(rows[3:], start=4):
    if not any(cell.strip() for cell in row):
      continue
    if len(row) != len(coords_row):
      raise ValueError(f"{path}: line {line} has {len(row)} fields, the header "
                       f"{len(coords_row)}.")
    frame = "/".join(c.strip() for c in row[:first] if c.strip())
    try:
      values = np.array([[float(row[columns[p, c]]) if row[columns[p, c]].strip() else np.nan
                          for c in ("x", "y")] for p in bodyparts])
    except ValueError as e:
      raise ValueError(f"{path}: line {line} ({frame}): bad coordinate: {e}") from None
    if np.any(np.isnan(values[:, 0]) != np.isnan(values[:, 1])):
      raise ValueError(f"{path}: line {line} ({frame}): a body part has only one coordinate.")
    visible = (~np.isnan(values[:, 0])).astype(np.float32)
    labels.append((frame, np.nan_to_num(values), visible, line))
  return labels


def held_out(num_frames: int, train_fraction: float) -> np.ndarray:
  """Whether each of `num_frames` sorted frames is held out: 1 - train_fraction of them,
  spread evenly (frame i when floor((i + 1) t) > floor(i t), t the test fraction)."""
  if not 0 < train_fraction <= 1:
    raise ValueError(f"config.data.train_fraction={train_fraction} must be in (0, 1].")
  t = 1 - fractions.Fraction(str(train_fraction))  # exact: 0.8 holds out every 5th frame
  return np.array([math.floor((i + 1) * t) > math.floor(i * t) for i in range(num_frames)],
                  bool)


def _test_mask(frames: list[str], test_frames, train_fraction: float, project: str):
  if not test_frames:
    return held_out(len(frames), train_fraction)
  wanted = set(test_frames)
  # The entry of `test_frames` naming each frame (its path or its file name), or None.
  named = [f if f in wanted else os.path.basename(f) if os.path.basename(f) in wanted else None
           for f in frames]
  mask = np.array([n is not None for n in named])
  unknown = sorted(wanted - set(named))
  if unknown:
    raise ValueError(f"config.data.test_frames names frames not labelled in {project}: "
                     f"{unknown[:5]}{' ...' if len(unknown) > 5 else ''}.")
  return mask


def source(data_config) -> Source:
  """The DeepLabCut project `data_config.project` as a `Source` (splits train, validation,
  test)."""
  project = data_config.project
  if not project:
    raise ValueError("config.data.project: set it to the DeepLabCut project folder.")
  project_config = read_project_config(project)
  bodyparts = [str(p) for p in project_config["bodyparts"]]
  csvs = label_files(project)
  if not csvs:
    h5 = glob.glob(os.path.join(project, "labeled-data", "*", "CollectedData_*.h5"))
    raise FileNotFoundError(
        f"{project}/labeled-data/*/CollectedData_*.csv: no label files"
        + (" (only .h5 ones: write each as CSV beside it, e.g. "
           "pandas.read_hdf('CollectedData_X.h5').to_csv('CollectedData_X.csv'))"
           if h5 else "") + ".")
  config_path = os.path.join(project, "config.yaml")
  if not os.path.exists(config_path):  # Lightning Pose: the label file says it all
    config_path = csvs[0]
  labels = [(frame, kp, vis, f"{path}: line {line}")
            for path in csvs for frame, kp, vis, line in read_labels(path, bodyparts)]
  labels.sort(key=lambda label: label[0])
  frames = [label[0] for label in labels]
  duplicates = sorted(f for f, n in collections.Counter(frames).items() if n > 1)
  if duplicates:
    raise ValueError(f"{project}: frames labelled twice: {duplicates[:5]}.")

  train_fraction = data_config.train_fraction or float(
      (project_config.get("TrainingFraction") or [0.95])[0])
  test = _test_mask(frames, tuple(data_config.test_frames), train_fraction, project)
  names = tuple(bodyparts)
  try:
    spec = KeypointSpec(names, files.flip_pairs(data_config.flip_pairs, names, where=config_path),
                        _skeleton(project_config, names, config_path),
                        "image size sqrt(w * h)", tuple(data_config.oks_sigmas))
  except ValueError as e:
    raise ValueError(f"{config_path} with config.data.flip_pairs / oks_sigmas: {e}") from None

  images = files.ImageChecker(decode=data_config.verify_images)
  bad = files.BadRecords(data_config.bad_records, config_path)
  outside = files.OutsideKeypoints(data_config.outside_keypoints, config_path)
  splits = {"train": files.Records.empty(), "test": files.Records.empty()}
  for image_id, ((frame, keypoints, visible, record), is_test) in enumerate(zip(labels, test)):
    image_path = os.path.join(project, frame)
    try:
      width, height = images.size(image_path)
    except ValueError as e:
      bad.report(record, "unreadable image", str(e))
      continue
    box = np.array([0.0, 0.0, width, height])
    labels = files.checked_labels(bad, outside, record, keypoints, visible, box, width, height,
                                  spec, data_config.norm_keypoints, image_path)
    if labels is None:
      continue
    visible, norm = labels
    splits["test" if is_test else "train"].append(image_path, keypoints, visible, norm, box,
                                                  image_id)
  bad.log_summary()
  outside.log_summary()
  splits["validation"] = splits["test"]
  name = f"deeplabcut/{os.path.basename(os.path.normpath(project))}"
  return files.records_source(name, spec, splits, data_config.channels)
