"""COCO-format keypoint files, as CVAT, Label Studio, Roboflow and the field's toolboxes ship
them: one JSON per split plus an image folder, trained top-down (each annotated instance is
cropped by its box).

The category's `keypoints` (names) and `skeleton` (index pairs) define the keypoints; a
keypoint is labelled when its visibility flag v is 1 (occluded) or 2 (visible). Instances with
no labelled keypoint and crowd regions are left out, as MMPose does; COCO evaluation still sees
them in the ground truth (`ground_truth`). Where exports differ (no keypoint names, 0-based
skeletons, [x, y] pairs, center/scale instead of a bbox, sub-folders in `file_name`, ...) the
decision taken is logged and has a config field; docs/datasets.md has the table.
"""

import collections
import dataclasses
import functools
import json
import os

import numpy as np
from absl import logging

from kp_jax.data import files
from kp_jax.data.keypoints import COCO_PERSON, FACE68, KeypointSpec
from kp_jax.data.source import Source


def read_json(path: str) -> dict:
  if not os.path.exists(path):
    raise FileNotFoundError(f"COCO annotation file {path} not found.")
  try:
    with open(path) as f:
      data = json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f"{path} is not valid JSON: {e}") from None
  for key in ("images", "annotations", "categories"):
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
      raise ValueError(f"{path} is not a COCO annotation file: it has no {key!r} list.")
  return data


def find_category(data: dict, path: str, name: str) -> dict:
  """The category named `name`; without a name, the only one with keypoint names, else the
  only one whose annotations have keypoints."""
  categories = data["categories"]
  if name:
    found = [c for c in categories if c.get("name") == name]
    if not found:
      raise ValueError(f"config.data.category={name!r} is not in {path}; it has "
                       f"{[c.get('name') for c in categories]}.")
    return found[0]
  named = [c for c in categories if c.get("keypoints")]
  with_points = {a.get("category_id") for a in data["annotations"] if a.get("keypoints")}
  candidates = named or [c for c in categories if c.get("id") in with_points]
  if len(candidates) == 1:
    return candidates[0]
  if not candidates:
    raise ValueError(f"{path}: no category names keypoints and no annotation has any.")
  raise ValueError(f"{path} has {len(candidates)} categories with keypoints "
                   f"({[c.get('name') for c in candidates]}): set config.data.category to the "
                   "one to train on.")


def _num_values(keypoints) -> tuple[int, int]:
  """(points, values per point) of an annotation's keypoint list: flat x, y, v triples (COCO),
  flat x, y pairs, or nested [x, y, v] / [x, y] lists."""
  if keypoints and isinstance(keypoints[0], (list, tuple)):
    return len(keypoints), len(keypoints[0])
  return (len(keypoints) // 3, 3) if len(keypoints) % 3 == 0 else (len(keypoints) // 2, 2)


def keypoint_names(category: dict, data: dict, path: str, configured=()) -> tuple[str, ...]:
  """The category's `keypoints`, or for a category without names (most face-landmark
  exports) `configured` (`config.data.keypoint_names`), iBUG 300W's for 68 points, or
  point_00, point_01, ... for the count most of its annotations have."""
  if category.get("keypoints"):
    return tuple(category["keypoints"])
  counts = collections.Counter(_num_values(a["keypoints"])[0] for a in data["annotations"]
                               if a.get("category_id") == category.get("id")
                               and a.get("keypoints"))
  if not counts:
    raise ValueError(f"{path}: category {category.get('name')!r} has no keypoint names and no "
                     "annotation with keypoints.")
  count = counts.most_common(1)[0][0]
  if configured:
    if len(configured) != count:
      raise ValueError(f"config.data.keypoint_names has {len(configured)} names; the "
                       f"annotations of {category.get('name')!r} in {path} have {count} "
                       "keypoints.")
    return tuple(configured)
  names = FACE68.names if count == 68 else tuple(f"point_{i:02d}" for i in range(count))
  logging.warning("%s: category %r names no keypoints; its annotations have %d, named %s ... %s "
                  "(%s; set config.data.keypoint_names to name them).", path,
                  category.get("name"), count, names[0], names[-1],
                  "the iBUG 300W layout" if count == 68 else "by index")
  return names


def keypoint_triples(values, k: int, category_name: str) -> np.ndarray:
  """[k, 3] (x, y, v) from an annotation's keypoint list (see `_num_values`). [x, y] pairs
  carry no flags: a point is labelled unless it is (0, 0) or not finite, COCO's mark of an
  unlabelled point. Raises ValueError saying what was expected."""
  try:
    array = np.asarray(values, np.float64)
  except (TypeError, ValueError):
    array = np.zeros(0)  # ragged or not numbers
  if array.ndim == 1 and array.size in (3 * k, 2 * k) and k:
    array = array.reshape(k, -1)
  if array.shape not in ((k, 3), (k, 2)):
    raise ValueError(f"{array.size} values; category {category_name!r} has {k} keypoints, so "
                     f"{3 * k} (x, y, v triples) or {2 * k} (x, y pairs), flat or nested, were "
                     "expected")
  if array.shape[1] == 2:
    labelled = np.isfinite(array).all(1) & (array != 0).any(1)
    array = np.concatenate([np.nan_to_num(array), 2.0 * labelled[:, None]], 1)
  return array


def instance_box(ann: dict, center_scale_unit: float) -> np.ndarray:
  """(x, y, w, h): the `bbox`, else a box from MPII-style `center` and `scale` (a number or
  [sx, sy]; the box is scale * `center_scale_unit` pixels, MPII's and MMPose's 200, across).
  Raises ValueError when neither is usable."""
  if "bbox" in ann:
    box = np.asarray(ann["bbox"], np.float64)
  elif "center" in ann and "scale" in ann:
    center = np.asarray(ann["center"], np.float64)
    size = np.broadcast_to(np.asarray(ann["scale"], np.float64) * center_scale_unit, (2,))
    box = np.concatenate([center - size / 2, size]) if center.shape == (2,) else np.zeros(0)
  else:
    raise ValueError("missing fields: no 'bbox' (nor 'center' and 'scale')")
  if box.shape != (4,) or not np.all(np.isfinite(box)) or box[2] <= 0 or box[3] <= 0:
    raise ValueError(f"bad bbox: {ann.get('bbox', [ann.get('center'), ann.get('scale')])} "
                     "(x, y, w, h with w, h > 0, or center and scale)")
  return box


def skeleton(category: dict, names, path: str, base: int | None) -> tuple:
  """The skeleton as name pairs. Index pairs are 1-based (COCO) unless `base`
  (`config.data.skeleton_base`) says 0 or, unset, an index is 0; name pairs are taken as
  they are. Entries that fit neither are dropped with a warning: the skeleton only draws."""
  entries = category.get("skeleton") or []
  indices = [i for pair in entries for i in pair if isinstance(i, int)]
  if base is None:
    base = 0 if 0 in indices else 1
    if base == 0:
      logging.info("%s: category %r's skeleton has index 0: read as 0-based (set "
                   "config.data.skeleton_base to change it).", path, category.get("name"))
  pairs, dropped = [], []
  for pair in entries:
    if len(pair) == 2 and all(isinstance(i, int) and base <= i < base + len(names)
                              for i in pair):
      pairs.append((names[pair[0] - base], names[pair[1] - base]))
    elif len(pair) == 2 and all(n in names for n in pair):
      pairs.append(tuple(pair))
    else:
      dropped.append(pair)
  if dropped:
    logging.warning("%s: category %r: skeleton entries %s are not pairs of %d-based indices up "
                    "to %d or of keypoint names; left out of the drawings.", path,
                    category.get("name"), dropped, base, len(names) - 1 + base)
  return tuple(pairs)


def flip_pairs_in_file(category: dict, names, path: str) -> tuple:
  """Flip pairs the category gives itself: `flip_pairs` (name pairs or 0-based index pairs,
  as in MMPose's dataset metadata) or `flip_index` / `flip_idx` (each keypoint's partner's
  0-based index, as in Ultralytics and CenterNet)."""
  pairs = category.get("flip_pairs") or []
  index = category.get("flip_index") or category.get("flip_idx") or []
  if index:
    pairs = [(i, j) for i, j in enumerate(index) if isinstance(j, int) and i < j]
  try:
    return tuple(tuple(names[p] if isinstance(p, int) else p for p in pair) for pair in pairs)
  except (IndexError, TypeError):
    raise ValueError(f"{path}: category {category.get('name')!r}: flip pairs {pairs} are not "
                     f"pairs of names or of 0-based indices below {len(names)}.") from None


def category_spec(category: dict, data: dict, path: str, data_config) -> KeypointSpec:
  names = keypoint_names(category, data, path, data_config.keypoint_names)
  sigmas = tuple(data_config.oks_sigmas)
  if not sigmas and names == COCO_PERSON.names:
    sigmas = COCO_PERSON.sigmas
  face68 = names == FACE68.names
  pairs = files.flip_pairs(data_config.flip_pairs, names,
                           flip_pairs_in_file(category, names, path) or
                           (FACE68.flip_pairs if face68 else ()), where=path)
  lines = skeleton(category, names, path, data_config.skeleton_base)
  try:
    return KeypointSpec(names, pairs, lines or (FACE68.skeleton if face68 else ()),
                        normaliser="", sigmas=sigmas)
  except ValueError as e:
    raise ValueError(f"{path}: category {category.get('name')!r} with config.data.flip_pairs / "
                     f"oks_sigmas: {e}") from None


def read_split(path: str, image_dir: str, data_config, images: files.ImageChecker,
               spec_from_first: KeypointSpec | None = None) -> tuple[KeypointSpec, files.Records]:
  """The keypoint spec and the checked instances of one COCO JSON."""
  data = read_json(path)
  category = find_category(data, path, data_config.category)
  spec = category_spec(category, data, path, data_config)
  if spec_from_first is not None and spec.names != spec_from_first.names:
    raise ValueError(f"{path}: keypoints {spec.names} differ from the train split's "
                     f"{spec_from_first.names}.")
  files.check_norm_keypoints(data_config.norm_keypoints, spec)
  image_info = {}
  for index, image in enumerate(data["images"]):
    if not {"id", "file_name"} <= image.keys():
      raise ValueError(f"{path}: images[{index}] needs 'id' and 'file_name'; it has "
                       f"{sorted(image)}.")
    image_info[image["id"]] = image

  bad = files.BadRecords(data_config.bad_records, path)
  outside = files.OutsideKeypoints(data_config.outside_keypoints, path)
  records, k = files.Records.empty(), spec.num_keypoints
  for index, ann in enumerate(data["annotations"]):
    if ann.get("category_id") != category["id"]:
      continue
    if ann.get("iscrowd", 0):
      _ignore(records, ann, data_config)
      continue
    record = f"annotation {ann.get('id', f'#{index}')}"
    missing = [key for key in ("image_id", "keypoints") if key not in ann]
    if missing:
      bad.report(record, "missing fields", f"{missing}")
      continue
    try:
      values = keypoint_triples(ann["keypoints"], k, category.get("name"))
    except ValueError as e:
      bad.report(record, "keypoint count disagrees with the category", str(e))
      continue
    keypoints, visible = values[:, :2], (values[:, 2] > 0).astype(np.float32)
    if visible.sum() < data_config.min_keypoints:
      _ignore(records, ann, data_config)  # too few labels to learn from (COCO has many)
      continue
    try:
      box = instance_box(ann, data_config.center_scale_unit)
    except ValueError as e:
      reason, _, detail = str(e).partition(": ")
      bad.report(record, reason, detail)
      continue
    image = image_info.get(ann["image_id"])
    if image is None:
      bad.report(record, "unknown image_id", f"{ann['image_id']}")
      continue
    try:
      image_path = files.find_image(image_dir, image["file_name"])
      width, height = images.size(image_path)
    except ValueError as e:
      bad.report(record, "unreadable image", str(e))
      continue
    labels = files.checked_labels(bad, outside, record, keypoints, visible, box, width, height,
                                  spec, data_config.norm_keypoints, image_path)
    if labels is None:
      continue
    visible, norm = labels
    records.append(image_path, keypoints * visible[:, None], visible, norm, box, ann["image_id"])
  bad.log_summary()
  outside.log_summary()
  return spec, records


def _ignore(records: files.Records, ann: dict, data_config):
  """Records an annotation left out of training as a region the centre model ignores."""
  try:
    records.ignored.append((ann["image_id"], instance_box(ann, data_config.center_scale_unit)))
  except (KeyError, ValueError):
    pass  # no usable box: nothing to ignore


def ground_truth(path: str, data_config) -> tuple[dict, int]:
  """(The split's annotations as pycocotools scores them, the category id): the chosen
  category's instances read as training reads them (keypoints as flat triples, the box from
  `bbox` or center/scale), with `area`, `iscrowd` and `num_keypoints` filled in, and every
  annotation renumbered from 1 when an id is 0, missing or repeated (pycocotools takes a
  match to id 0 for no match)."""
  data = read_json(path)
  category = find_category(data, path, data_config.category)
  names = keypoint_names(category, data, path, data_config.keypoint_names)
  annotations = []
  for ann in data["annotations"]:
    if ann.get("category_id") != category["id"]:
      continue
    try:
      triples = keypoint_triples(ann.get("keypoints") or [0] * 3 * len(names), len(names),
                                 category.get("name"))
      box = instance_box(ann, data_config.center_scale_unit)
    except ValueError:
      continue  # a bad record: reported (or skipped and counted) when the split was read
    annotations.append({**ann, "keypoints": triples.ravel().tolist(), "bbox": box.tolist(),
                        "area": float(ann.get("area") or box[2] * box[3]),
                        "iscrowd": int(ann.get("iscrowd", 0)),
                        "num_keypoints": int(np.count_nonzero(triples[:, 2]))})
  ids = [ann.get("id") for ann in annotations]
  if not all(isinstance(i, int) and i > 0 for i in ids) or len(set(ids)) != len(ids):
    logging.info("%s: annotation ids include 0, a gap or a repeat: renumbered 1..%d for COCO "
                 "evaluation.", path, len(annotations))
    annotations = [{**ann, "id": i + 1} for i, ann in enumerate(annotations)]
  return {"images": [{"id": image["id"]} for image in data["images"]],
          "annotations": annotations,
          "categories": [{"id": category["id"], "name": category.get("name", ""),
                          "keypoints": list(names)}]}, category["id"]


def source(data_config) -> Source:
  """The COCO-format files of `data_config.files` ({split: JSON path}) as a `Source`."""
  images = files.ImageChecker.for_config(data_config)
  spec, splits = files.read_splits(data_config, "a COCO keypoint JSON", read_split, images)
  normaliser = files.normaliser_name(data_config.norm_keypoints, "box size sqrt(w * h)")
  spec = KeypointSpec(spec.names, spec.flip_pairs, spec.skeleton, normaliser, spec.sigmas)
  name = f"coco/{os.path.basename(data_config.files['train'])}"
  return files.records_source(
      name, spec, splits, data_config.channels,
      ground_truth={split: functools.partial(ground_truth, path, data_config)
                    for split, path in data_config.files.items()},
      orientations=images.orientations)


def with_detections(source: Source, split: str, path: str, data_config) -> tuple[Source, np.ndarray]:
  """(`source` with `split`'s examples replaced by the boxes of a detections file, their
  scores): MMPose's top-down protocol with detected boxes (`data.detections`). The file is in
  COCO's results format ([{"image_id", "category_id", "bbox": [x, y, w, h], "score"}], as
  `COCO_val2017_detections_AP_H_56_person.json`); the boxes of the split's category are kept,
  their images named by the split's annotation file. The examples carry no labels: the split's
  own ground truth scores their predictions."""
  annotation_file = data_config.files.get(split)
  if not annotation_file:
    raise ValueError(f"config.data.detections: split {split!r} has no COCO annotation file in "
                     "config.data.files to name the detections' images.")
  try:
    with open(path) as f:
      detections = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise ValueError(f"config.data.detections={path!r}: cannot read it: {e}") from None
  if not isinstance(detections, list):
    raise ValueError(f"{path}: a detections file is a list of {{image_id, category_id, bbox, "
                     "score}} (COCO's results format).")
  data = read_json(annotation_file)
  category = find_category(data, annotation_file, data_config.category)
  file_names = {image["id"]: image["file_name"] for image in data["images"]}
  image_dir = files.image_folder(data_config, split, annotation_file)
  k = source.spec.num_keypoints
  records, scores, paths = files.Records.empty(), [], {}
  images = files.ImageChecker(decode=False, upright=data_config.get("upright", True))
  for index, detection in enumerate(detections):
    if detection.get("category_id") != category["id"]:
      continue
    where = f"{path}: detection #{index}"
    if detection.get("image_id") not in file_names:
      raise ValueError(f"{where}: image_id {detection.get('image_id')} is not an image of "
                       f"{annotation_file}.")
    try:
      box = instance_box(detection, data_config.center_scale_unit)
      score = float(detection["score"])
    except (ValueError, KeyError, TypeError) as e:
      raise ValueError(f"{where}: {e}") from None
    image_id = detection["image_id"]
    if image_id not in paths:
      paths[image_id] = files.find_image(image_dir, file_names[image_id])
      images.size(paths[image_id])  # its EXIF orientation: the boxes are in upright pixels
    records.append(paths[image_id], np.zeros((k, 2)), np.zeros(k), np.sqrt(box[2] * box[3]),
                   box, image_id)
    scores.append(score)
  if not records.images:
    raise ValueError(f"{path}: no detections of category {category.get('name')!r} "
                     f"(id {category['id']}).")
  boxes = files.records_source(source.name, source.spec, {split: records}, source.channels,
                               orientations=images.orientations)
  load = source.load
  return dataclasses.replace(
      source, split_sizes={**source.split_sizes, split: len(records)},
      load=lambda s, index, count: (boxes.load if s == split else load)(s, index, count),
      load_encoded=None, annotations=None, images=None), np.array(scores, np.float64)
