"""COCO-format files as the field ships them (docs/datasets.md): one tiny dataset per
convention, written here, each proven end to end - load, train 2 steps, evaluate - with the
true keypoints scoring COCO AP 1.0 (pycocotools, against the file) and PCK 1.0 (a NumPy
reference against the points the test wrote)."""

import copy
import json
import logging
import os

import numpy as np
import pytest
from PIL import Image

from conftest import file_source_config, ground_truth_rows
from kp_jax import evaluation, train
from kp_jax.data import coco, pipeline
from kp_jax.data.keypoints import FACE68, flip_pairs_from_names

NAMES = ("nose", "left_ear", "right_ear", "tail")
WIDTH, HEIGHT = 64, 48


def animals(folder, sizes=(("train", 6), ("validation", 3)), seed=0):
  """({split: COCO dict}, {image_id: true [K, 3] (x, y, v)}) of one animal an image, in
  category 7 of PNG noise images written to `folder`."""
  rng = np.random.default_rng(seed)
  data, truth, image_id = {}, {}, 0
  for split, size in sizes:
    images, annotations = [], []
    for _ in range(size):
      image_id += 1
      name = f"img{image_id:03d}.png"
      Image.fromarray(rng.integers(0, 255, (HEIGHT, WIDTH, 3), np.uint8)).save(
          os.path.join(folder, name))
      x, y = rng.uniform(2, 20), rng.uniform(2, 14)
      w, h = rng.uniform(24, WIDTH - 4 - x), rng.uniform(20, HEIGHT - 4 - y)
      points = np.stack([rng.uniform(x, x + w, 4), rng.uniform(y, y + h, 4)], 1)
      flags = np.array([2, 2, 2, rng.choice([0, 2])])
      triples = np.concatenate([points * (flags[:, None] > 0), flags[:, None]], 1)
      truth[image_id] = triples
      images.append({"id": image_id, "file_name": name, "width": WIDTH, "height": HEIGHT})
      annotations.append({"id": image_id, "image_id": image_id, "category_id": 7,
                          "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0,
                          "keypoints": triples.ravel().tolist(), "num_keypoints": 4})
    data[split] = {"images": images, "annotations": annotations,
                   "categories": [{"id": 7, "name": "animal", "keypoints": list(NAMES),
                                   "skeleton": [[1, 2], [1, 3], [1, 4]]}]}
  return data, truth


def write(folder, data) -> dict:
  files = {}
  for split, content in data.items():
    files[split] = os.path.join(folder, f"{split}.json")
    with open(files[split], "w") as f:
      json.dump(content, f)
  return files


def reference_pck(predictions, truth, threshold) -> float:
  """PCK in NumPy: every labelled true keypoint against the prediction for its image, correct
  when e < t * (the larger side of the box spanning the labelled points)."""
  hits, count = 0, 0
  for prediction in predictions:
    true = truth[prediction["image_id"]]
    pred = np.reshape(prediction["keypoints"], (-1, 3))[:, :2]
    labelled = true[:, 2] > 0
    size = np.ptp(true[labelled, :2], axis=0).max() if labelled.sum() > 1 else 1.0
    error = np.linalg.norm(pred - true[:, :2], axis=1)[labelled]
    hits, count = hits + np.sum(error < threshold * size), count + labelled.sum()
  return hits / count


def no_nan(value) -> bool:
  if isinstance(value, dict):
    return all(no_nan(v) for v in value.values())
  return not (isinstance(value, float) and np.isnan(value))


# Each convention: (edit of the written datasets, config.data fields, what the source shows).
def multi_category(data, truth):
  for content in data.values():
    decoy = copy.deepcopy(content["annotations"])
    for ann in decoy:
      ann.update(id=ann["id"] + 1000, category_id=1,
                 keypoints=(np.array(ann["keypoints"]) + [5, 3, 0] * 4).tolist())
    content["annotations"] += decoy
    content["categories"].insert(0, {"id": 1, "name": "decoy", "keypoints": list(NAMES)})
  return {"category": "animal"}


def short_side_names(data, truth):
  for content in data.values():
    content["categories"][0]["keypoints"] = ["nose", "L_Ear", "R_Ear", "tail"]
  return {}


def flip_index_in_file(data, truth):
  for content in data.values():
    content["categories"][0].update(keypoints=["a", "b", "c", "d"], flip_index=[0, 2, 1, 3])
  return {}


def never_labelled_in_train(data, truth):
  for ann in data["train"]["annotations"]:
    ann["keypoints"][9:12] = [0, 0, 0]
  return {}


def zero_based_skeleton(data, truth):
  for content in data.values():
    content["categories"][0]["skeleton"] = [[0, 1], [0, 2], [0, 3], [2, 9]]
  return {}


def annotation_id_zero(data, truth):
  for content in data.values():
    for i, ann in enumerate(content["annotations"]):
      ann["id"] = i  # each file's first annotation has id 0
  return {}


def no_keypoint_names(data, truth):
  for content in data.values():
    del content["categories"][0]["keypoints"]
  return {}


def center_and_scale(data, truth):
  for content in data.values():
    for ann in content["annotations"]:
      x, y, w, h = ann.pop("bbox")
      ann.update(center=[x + w / 2, y + h / 2], scale=[w / 200, h / 200])
  return {}


def outside_the_image(data, truth):
  for content in data.values():
    ann = content["annotations"][0]
    ann["keypoints"][1] = -3.0  # the nose 3.5 pixels above the frame
    truth[ann["image_id"]][0, 1] = -3.0
  return {}


def file_names_with_folders(data, truth):
  for content in data.values():
    for image in content["images"]:
      image["file_name"] = "exports/2024/images/" + image["file_name"]
  return {}


def keypoint_pairs(data, truth):
  for content in data.values():
    for ann in content["annotations"]:
      ann["keypoints"] = np.reshape(ann["keypoints"], (4, 3))[:, :2].tolist()
  return {}


def nested_triples(data, truth):
  for content in data.values():
    for ann in content["annotations"]:
      ann["keypoints"] = np.reshape(ann["keypoints"], (4, 3)).tolist()
  return {}


CONVENTIONS = {
    "multi_category": (multi_category, lambda s: s.spec.names == NAMES),
    "short_side_names": (short_side_names, lambda s: s.spec.flip_pairs == (("L_Ear", "R_Ear"),)),
    "flip_index_in_file": (flip_index_in_file, lambda s: s.spec.flip_pairs == (("b", "c"),)),
    "never_labelled_in_train": (never_labelled_in_train, lambda s: True),
    "zero_based_skeleton": (zero_based_skeleton, lambda s: s.spec.skeleton == (
        ("nose", "left_ear"), ("nose", "right_ear"), ("nose", "tail"))),
    "annotation_id_zero": (annotation_id_zero, lambda s: True),
    "no_keypoint_names": (no_keypoint_names,
                          lambda s: s.spec.names == ("point_00", "point_01", "point_02",
                                                     "point_03")),
    "center_and_scale": (center_and_scale, lambda s: True),
    "outside_the_image": (outside_the_image, lambda s: s.split_sizes["validation"] == 3),
    "file_names_with_folders": (file_names_with_folders, lambda s: True),
    "keypoint_pairs": (keypoint_pairs, lambda s: True),
    "nested_triples": (nested_triples, lambda s: True),
}


@pytest.mark.parametrize("convention", sorted(CONVENTIONS))
def test_convention_loads_trains_and_scores_the_truth_perfectly(data_dir, tmp_path, convention):
  edit, check = CONVENTIONS[convention]
  data, truth = animals(str(tmp_path))
  config = file_source_config(data_dir, "coco", **edit(data, truth))
  config.data.files = write(str(tmp_path), data)
  config.num_train_steps = config.eval_every_steps = config.checkpoint_every_steps = 2
  config.optimizer.warmup_steps = 1
  source = pipeline.get_source(config.data)
  assert check(source), source.spec
  assert source.split_sizes == {"train": 6, "validation": 3}

  train.train_and_evaluate(config, str(tmp_path / "run"))
  summary = evaluation.evaluate_run(str(tmp_path / "run"), "validation")
  assert summary["num_examples"] == 3 and no_nan(summary), summary
  ap, predictions = evaluation.coco_metrics(
      source, "validation", ground_truth_rows(config, source, "validation"))
  assert ap["AP"] == pytest.approx(1.0) and ap["AR"] == pytest.approx(1.0)
  assert reference_pck(predictions, truth, 0.01) == 1.0


def test_without_the_category_a_multi_category_file_asks_for_it(data_dir, tmp_path):
  data, truth = animals(str(tmp_path))
  multi_category(data, truth)
  config = file_source_config(data_dir, "coco", files=write(str(tmp_path), data))
  with pytest.raises(ValueError, match=r"has 2 categories with keypoints \(\['decoy', "
                     r"'animal'\]\): set config.data.category"):
    pipeline.get_source(config.data)


@pytest.mark.parametrize("names, pairs", [
    (["left_eye", "right_eye", "nose"], [("left_eye", "right_eye")]),
    (["LeftPaw", "RightPaw", "tail"], [("LeftPaw", "RightPaw")]),
    (["L_Eye", "R_Eye", "l-ear", "r-ear", "Nose"], [("L_Eye", "R_Eye"), ("l-ear", "r-ear")]),
    (["eyeL", "eyeR", "ear_l", "ear_r", "hip-L", "hip-R"],
     [("eyeL", "eyeR"), ("ear_l", "ear_r"), ("hip-L", "hip-R")]),
    (["forelegL1", "forelegR1", "forelegL2", "forelegR2", "head"],
     [("forelegL1", "forelegR1"), ("forelegL2", "forelegR2")]),
    (["lEye", "rEye", "LHip", "RHip"], [("lEye", "rEye"), ("LHip", "RHip")]),
    (["Lip", "Rip", "hurl", "hurr", "ear"], []),  # letters inside words are not sides
])
def test_flip_pairs_are_found_from_common_naming_schemes(names, pairs):
  assert list(flip_pairs_from_names(names)) == pairs


def test_sixty_eight_unnamed_points_get_the_300w_layout_and_others_can_be_named(data_dir,
                                                                               tmp_path):
  rng = np.random.default_rng(0)
  Image.new("RGB", (WIDTH, HEIGHT)).save(tmp_path / "face.png")
  points = np.concatenate([rng.uniform(10, 40, (68, 2)), np.full((68, 1), 2.0)], 1)
  data = {"images": [{"id": 1, "file_name": "face.png"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, 40, 40],
                           "keypoints": points.ravel().tolist()}],
          "categories": [{"id": 1, "name": "face"}]}
  files = write(str(tmp_path), {"train": data})
  source = pipeline.get_source(file_source_config(data_dir, "coco", files=files).data)
  assert source.spec.names == FACE68.names and source.spec.flip_pairs == FACE68.flip_pairs
  names = tuple(f"lm{i}" for i in range(68))
  named = pipeline.get_source(file_source_config(data_dir, "coco", files=files,
                                                 keypoint_names=names).data)
  assert named.spec.names == names
  with pytest.raises(ValueError, match=r"keypoint_names has 3 names; the annotations of 'face' "
                     r"in .* have 68 keypoints"):
    pipeline.get_source(file_source_config(data_dir, "coco", files=files,
                                           keypoint_names=("a", "b", "c")).data)


def test_outside_points_are_kept_hidden_or_refused_as_configured(data_dir, tmp_path):
  data, truth = animals(str(tmp_path))
  outside_the_image(data, truth)
  files = write(str(tmp_path), data)
  config = lambda policy: file_source_config(data_dir, "coco", files=files,
                                             outside_keypoints=policy).data
  first = data["train"]["annotations"][0]["image_id"]
  _, kept = coco.read_split(files["train"], str(tmp_path), config("keep"),
                            coco.files.ImageChecker(False))
  _, hidden = coco.read_split(files["train"], str(tmp_path), config("invisible"),
                              coco.files.ImageChecker(False))
  index = kept.image_id.index(first)
  assert kept.visible[index][0] == 1 and kept.keypoints[index][0][1] == -3.0
  assert hidden.visible[index][0] == 0 and hidden.visible[index][1] == 1
  with pytest.raises(ValueError, match=r"annotation 1: keypoints outside the image: \['nose'\]"):
    pipeline.get_source(config("error"))


def test_wrong_keypoint_counts_and_skeleton_bases_are_explained(data_dir, tmp_path, caplog):
  data, truth = animals(str(tmp_path))
  data["train"]["annotations"][1]["keypoints"] = [[1, 2]] * 3
  files = write(str(tmp_path), data)
  with pytest.raises(ValueError, match=r"annotation 2: keypoint count disagrees with the "
                     r"category: 6 values; category 'animal' has 4 keypoints, so 12 \(x, y, v "
                     r"triples\) or 8 \(x, y pairs\), flat or nested, were expected"):
    pipeline.get_source(file_source_config(data_dir, "coco", files=files).data)
  data, truth = animals(str(tmp_path))
  for content in data.values():
    content["categories"][0]["skeleton"] = [[0, 1], [1, 2], [3, 3]]
  files = write(str(tmp_path), data)
  with caplog.at_level(logging.INFO):
    one_based = pipeline.get_source(file_source_config(data_dir, "coco", files=files,
                                                       skeleton_base=1).data)
  assert one_based.spec.skeleton == (("nose", "left_ear"), ("right_ear", "right_ear"))
  assert "skeleton entries [[0, 1]] are not pairs of 1-based indices up to 4" in caplog.text
