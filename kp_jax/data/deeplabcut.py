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

The CSV layout is DeepLabCut's: three header rows `scorer` / `bodyparts` / `coords`, then one
row per frame. The frame is named by the first column (`labeled-data/video/img001.png`,
DeepLabCut 2.0-2.2), or by three index columns (`labeled-data`, `video`, `img001.png`,
DeepLabCut 2.3 and later), relative to the project.

Multi-animal projects (`multianimalproject: true`): the keypoints are the
`multianimalbodyparts`, and the CSV has a fourth header row, `individuals`, after `scorer`;
each individual labelled in a frame is one instance of that frame (the source's `images` view
holds them together, for the centre model of kp_jax/two_stage.py). `uniquebodyparts` (the
individual `single`: landmarks of the arena, not of an animal) are not read.

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
from absl import logging

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
  project_config = project_config or {}
  if project_config.get("multianimalproject") or project_config.get("multianimalbodyparts"):
    bodyparts = project_config.get("multianimalbodyparts")
    if not isinstance(bodyparts, list) or not bodyparts:
      raise ValueError(f"{path} is a multi-animal project without a 'multianimalbodyparts' "
                       "list.")
    if project_config.get("uniquebodyparts"):
      logging.warning("%s: uniquebodyparts %s are not read (kp-jax's instances are the "
                      "individuals).", path, project_config["uniquebodyparts"])
    return {**project_config, "bodyparts": bodyparts}
  bodyparts = project_config.get("bodyparts")
  if not isinstance(bodyparts, list) or not bodyparts:
    raise ValueError(f"{path} has no 'bodyparts' list.")
  return project_config


def _skeleton(project_config: dict, names, path: str) -> tuple:
  pairs = []
  for pair in project_config.get("skeleton") or []:
    if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(p in names for p in pair)):
      raise ValueError(f"{path}: skeleton entry {pair} must be two of the bodyparts {names}.")
    pairs.append(tuple(pair))
  return tuple(pairs)


UNIQUE_INDIVIDUAL = "single"  # multi-animal CSVs: the individual of the uniquebodyparts


def read_labels(path: str, bodyparts: list[str]):
  """[(frame path relative to the project, individual, keypoints [K, 2], visible [K], line)]
  of one CollectedData CSV, with the keypoints in the project's bodypart order; the individual
  is None in single-animal CSVs, and multi-animal ones give an entry for each individual
  labelled in a frame."""
  with open(path, newline="") as f:
    rows = list(csv.reader(f))
  first_cells = tuple(r[0] if r else "" for r in rows[:4])
  multi = first_cells[:2] == ("scorer", "individuals")
  header = ("scorer", "individuals", *HEADER_ROWS[1:]) if multi else HEADER_ROWS
  if len(rows) < len(header) or first_cells[:len(header)] != header:
    raise ValueError(f"{path}: expected DeepLabCut's header rows {header} in the first "
                     "column.")
  individuals_row = rows[1] if multi else None
  parts_row, coords_row = rows[len(header) - 2], rows[len(header) - 1]
  first = next((i for i, c in enumerate(coords_row) if c in ("x", "y")), None)
  if first is None:
    raise ValueError(f"{path}: the coords row has no x / y columns.")
  columns = collections.defaultdict(dict)  # individual -> (part, coord) -> column
  for i in range(first, len(coords_row)):
    individual = individuals_row[i] if multi else None
    columns[individual][(parts_row[i], coords_row[i])] = i
  columns.pop(UNIQUE_INDIVIDUAL if multi else "", None)
  for individual, table in columns.items():
    missing = [p for p in bodyparts if (p, "x") not in table or (p, "y") not in table]
    if missing:
      raise ValueError(f"{path}: bodyparts {missing} of config.yaml have no x / y columns"
                       f"{f' for individual {individual}' if multi else ''}; the file has "
                       f"{sorted({p for p, _ in table})}.")
  labels = []
  for line, row in enumerate(rows[len(header):], start=len(header) + 1):
    if not any(cell.strip() for cell in row):
      continue
    if len(row) != len(coords_row):
      raise ValueError(f"{path}: line {line} has {len(row)} fields, the header "
                       f"{len(coords_row)}.")
    frame = "/".join(c.strip() for c in row[:first] if c.strip())
    for individual, table in columns.items():
      try:
        values = np.array([[float(row[table[p, c]]) if row[table[p, c]].strip() else np.nan
                            for c in ("x", "y")] for p in bodyparts])
      except ValueError as e:
        raise ValueError(f"{path}: line {line} ({frame}): bad coordinate: {e}") from None
      if np.any(np.isnan(values[:, 0]) != np.isnan(values[:, 1])):
        raise ValueError(f"{path}: line {line} ({frame}): a body part has only one "
                         "coordinate.")
      visible = (~np.isnan(values[:, 0])).astype(np.float32)
      if multi and not visible.any():
        continue  # this individual is not in the frame
      labels.append((frame, individual, np.nan_to_num(values), visible, line))
  return labels


def held_out(num_frames: int, train_fraction: float) -> np.ndarray:
  """Whether each of `num_frames` sorted frames is held out: 1 - train_fraction of them,
  spread evenly (frame i when floor((i + 1) t) > floor(i t), t the test fraction)."""
  if not 0 < train_fraction <= 1:
    raise ValueError(f"config.data.train_fraction={train_fraction} must be in (0, 1].")
  t = 1 - fractions.Fraction(str(train_fraction))  # exact: 0.8 holds out every 5th frame
  return np.array([math.floor((i + 1) * t) > math.floor(i * t) for i in range(num_frames)],
                  bool)


def test_mask(frames: list[str], test_frames, train_fraction: float, project: str):
  """Whether each of the sorted `frames` (names) is held out: those `test_frames` names (by
  name or file name), else `held_out`'s share; `project` names the labels in the error."""
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
  labels = [(frame, individual, kp, vis, f"{path}: line {line}") for path in csvs
            for frame, individual, kp, vis, line in read_labels(path, bodyparts)]
  labels.sort(key=lambda label: label[0])  # stable: a frame's individuals keep their order
  duplicates = sorted({f"{frame}{'' if who is None else f' ({who})'}" for (frame, who), n in
                       collections.Counter(label[:2] for label in labels).items() if n > 1})
  if duplicates:
    raise ValueError(f"{project}: frames labelled twice: {duplicates[:5]}.")
  frames = sorted({label[0] for label in labels})

  train_fraction = data_config.train_fraction or float(
      (project_config.get("TrainingFraction") or [0.95])[0])
  test = test_mask(frames, tuple(data_config.test_frames), train_fraction, project)
  names = tuple(bodyparts)
  try:
    spec = KeypointSpec(names, files.flip_pairs(data_config.flip_pairs, names, where=config_path),
                        _skeleton(project_config, names, config_path),
                        "image size sqrt(w * h)", tuple(data_config.oks_sigmas))
  except ValueError as e:
    raise ValueError(f"{config_path} with config.data.flip_pairs / oks_sigmas: {e}") from None

  image_ids = {frame: i for i, frame in enumerate(frames)}
  is_test = dict(zip(frames, test))
  return frames_source(
      f"deeplabcut/{os.path.basename(os.path.normpath(project))}", spec,
      [(os.path.join(project, frame), image_ids[frame], is_test[frame], keypoints, visible, record)
       for frame, _, keypoints, visible, record in labels], data_config, config_path)


def frames_source(name: str, spec: KeypointSpec, labels, data_config, where: str) -> Source:
  """A `Source` of labelled whole frames, `labels` [(image path, image id, held out,
  keypoints [K, 2], visible [K], record)], each instance on its whole frame (no box: crop with
  `data.input_size`) and checked under `data_config`'s policies (`where`: the labels' file, in
  messages). The held-out frames are the `test` split and, as DeepLabCut evaluates on them
  too, also `validation`. DeepLabCut's and SLEAP's projects (kp_jax/data/sleap.py) both."""
  images = files.ImageChecker.for_config(data_config)
  bad = files.BadRecords(data_config.bad_records, where)
  outside = files.OutsideKeypoints(data_config.outside_keypoints, where)
  splits = {"train": files.Records.empty(), "test": files.Records.empty()}
  for image_path, image_id, held, keypoints, visible, record in labels:
    try:
      width, height = images.size(image_path)
    except ValueError as e:
      bad.report(record, "unreadable image", str(e))
      continue
    box = np.array([0.0, 0.0, width, height])
    checked = files.checked_labels(bad, outside, record, keypoints, visible, box, width, height,
                                   spec, data_config.norm_keypoints, image_path)
    if checked is not None:
      splits["test" if held else "train"].append(image_path, keypoints, *checked, box, image_id)
  bad.log_summary()
  outside.log_summary()
  images.log_summary(where)
  splits["validation"] = splits["test"]
  return files.records_source(name, spec, splits, data_config.channels,
                              orientations=images.orientations)
