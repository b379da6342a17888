"""COCO-format keypoint files, as CVAT, Label Studio and Roboflow export them and MMPose and
DeepLabCut read them: one JSON per split plus an image folder, trained top-down (each annotated
instance is cropped by its box).

The category's `keypoints` (names) and `skeleton` (1-based index pairs) define the keypoints;
flip pairs come from the names (left_* <-> right_*) or from `config.data.flip_pairs`. A keypoint
is labelled when its visibility flag v is 1 (occluded) or 2 (visible). Instances with no
labelled keypoint and crowd regions are left out, as MMPose does; COCO evaluation still sees
them in the ground truth.
"""

import json
import os

import numpy as np

from kp_jax.data import files
from kp_jax.data.keypoints import COCO_PERSON, KeypointSpec
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
  """The category named `name`, or the only one with keypoints when `name` is empty."""
  with_keypoints = [c for c in data["categories"] if c.get("keypoints")]
  if name:
    found = [c for c in data["categories"] if c.get("name") == name]
    if not found:
      raise ValueError(f"config.data.category={name!r} is not in {path}; it has "
                       f"{[c.get('name') for c in data['categories']]}.")
    if not found[0].get("keypoints"):
      raise ValueError(f"{path}: category {name!r} has no keypoint names.")
    return found[0]
  if len(with_keypoints) != 1:
    raise ValueError(f"{path} has {len(with_keypoints)} categories with keypoints "
                     f"({[c.get('name') for c in with_keypoints]}): set config.data.category.")
  return with_keypoints[0]


def category_spec(category: dict, path: str, flip_pairs=(), sigmas=()) -> KeypointSpec:
  names = tuple(category["keypoints"])
  skeleton = []
  for pair in category.get("skeleton", []):
    if len(pair) != 2 or not all(isinstance(i, int) and 1 <= i <= len(names) for i in pair):
      raise ValueError(f"{path}: category {category.get('name')!r} has skeleton entry {pair}; "
                       f"entries are pairs of 1-based keypoint indices up to {len(names)}.")
    skeleton.append((names[pair[0] - 1], names[pair[1] - 1]))
  if not sigmas and names == COCO_PERSON.names:
    sigmas = COCO_PERSON.sigmas
  try:
    return KeypointSpec(names, files.flip_pairs(flip_pairs, names), tuple(skeleton),
                        normaliser="", sigmas=tuple(sigmas))
  except ValueError as e:
    raise ValueError(f"{path}: category {category.get('name')!r} with config.data.flip_pairs / "
                     f"oks_sigmas: {e}") from None


def read_split(path: str, image_dir: str, data_config, images: files.ImageChecker,
               spec_from_first: KeypointSpec | None = None) -> tuple[KeypointSpec, files.Records]:
  """The keypoint spec and the checked instances of one COCO JSON."""
  data = read_json(path)
  category = find_category(data, path, data_config.category)
  spec = category_spec(category, path, data_config.flip_pairs, data_config.oks_sigmas)
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
  records, k = files.Records.empty(), spec.num_keypoints
  for index, ann in enumerate(data["annotations"]):
    if ann.get("category_id") != category["id"] or ann.get("iscrowd", 0):
      continue
    record = f"annotation {ann.get('id', f'#{index}')}"
    missing = [key for key in ("image_id", "keypoints", "bbox") if key not in ann]
    if missing:
      bad.report(record, "missing fields", f"{missing}")
      continue
    values = np.asarray(ann["keypoints"], np.float64)
    if values.shape != (3 * k,):
      bad.report(record, "keypoint count disagrees with the category",
                 f"{values.size} values, category {category['name']!r} has {k} keypoints "
                 f"({3 * k} values: x, y, v each)")
      continue
    keypoints, visible = values.reshape(k, 3)[:, :2], (values[2::3] > 0).astype(np.float32)
    if visible.sum() < data_config.min_keypoints:
      continue  # too few labels to learn from (COCO has many such instances)
    box = np.asarray(ann["bbox"], np.float64)
    if box.shape != (4,) or box[2] <= 0 or box[3] <= 0:
      bad.report(record, "bad bbox", f"{ann['bbox']} (x, y, w, h with w, h > 0)")
      continue
    image = image_info.get(ann["image_id"])
    if image is None:
      bad.report(record, "unknown image_id", f"{ann['image_id']}")
      continue
    image_path = os.path.join(image_dir, image["file_name"])
    try:
      width, height = images.size(image_path)
    except ValueError as e:
      bad.report(record, "unreadable image", str(e))
      continue
    norm = files.checked_normaliser(bad, record, keypoints, visible, box, width, height, spec,
                                    data_config.norm_keypoints, image_path)
    if norm is None:
      continue
    records.append(image_path, keypoints * visible[:, None], visible, norm, box, ann["image_id"])
  bad.log_summary()
  return spec, records


def source(data_config) -> Source:
  """The COCO-format files of `data_config.files` ({split: JSON path}) as a `Source`."""
  if "train" not in data_config.files:
    raise ValueError("config.data.files needs a 'train' entry (a COCO keypoint JSON); it has "
                     f"{sorted(data_config.files)}.")
  images = files.ImageChecker(decode=data_config.verify_images)
  spec, splits = None, {}
  for split in ["train"] + sorted(set(data_config.files) - {"train"}):
    path = data_config.files[split]
    spec, splits[split] = read_split(path, files.image_folder(data_config, split, path),
                                     data_config, images, spec)
  normaliser = files.normaliser_name(data_config.norm_keypoints, "box size sqrt(w * h)")
  spec = KeypointSpec(spec.names, spec.flip_pairs, spec.skeleton, normaliser, spec.sigmas)
  name = f"coco/{os.path.basename(data_config.files['train'])}"
  return files.records_source(name, spec, splits, data_config.channels,
                              annotation_files=dict(data_config.files))
