import collections
import copy
import dataclasses
import itertools
import json
import os
import shutil
import types

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from conftest import file_source_config, ground_truth_rows, save_turned
from kp_jax import coco_eval, evaluation, exported, train
from kp_jax.data import example_coco, instances, pipeline
from kp_jax.data.keypoints import COCO_PERSON, FACE15, KeypointSpec, flip_pairs_from_names


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("faces_coco"))
  return out, example_coco.write(out, {"train": 12, "validation": 5})


def coco_config(data_dir, files, **data):
  return file_source_config(data_dir, "coco", files=files, **data)


def test_crops_map_back_to_the_annotated_pixels(data_dir, dataset):
  _, files = dataset
  config = coco_config(data_dir, files)
  source = pipeline.get_source(config.data)
  truth = json.load(open(files["validation"]))
  by_image = {}
  for ann in truth["annotations"]:
    by_image.setdefault(ann["image_id"], []).append(np.reshape(ann["keypoints"], (-1, 3)))
  assert source.split_sizes["validation"] == len(truth["annotations"])
  seen = 0
  for batch in pipeline.eval_iterator(config, source, "validation", local_devices=1):
    real = batch["mask"] > 0  # padding rows have no matrix
    flat = {k: v[real] for k, v in batch.items()}
    back = exported.to_source_pixels(flat["keypoints"], flat["matrix"])
    for i in range(len(back)):
      # The instance's annotation is the one whose labelled keypoints it reproduces.
      errors = [np.abs(back[i] - ann[:, :2])[flat["visible"][i] > 0].max()
                for ann in by_image[int(flat["image_id"][i])]]
      assert min(errors) < 0.5, (int(flat["image_id"][i]), errors)
      assert np.all(flat["keypoints"][i][flat["visible"][i] > 0] >= -0.5)
      seen += 1
  assert seen == len(truth["annotations"])
  batch = next(pipeline.train_iterator(config, source, start_step=0, local_devices=2))
  assert batch["image"].shape == (16, 32, 32, 3) and batch["keypoints"].shape == (16, 15, 2)


def test_keypoint_metadata_comes_from_the_category(data_dir, dataset):
  _, files = dataset
  source = pipeline.get_source(coco_config(data_dir, files).data)
  assert source.spec.names == FACE15.names
  assert set(source.spec.flip_pairs) == set(FACE15.flip_pairs)  # from the left_/right_ names
  assert set(source.spec.skeleton) == set(FACE15.skeleton)  # from 1-based index pairs
  assert source.spec.normaliser == "box size sqrt(w * h)"
  assert flip_pairs_from_names(["LeftPaw", "RightPaw", "tail"]) == (("LeftPaw", "RightPaw"),)


def test_the_baseline_reads_no_image(data_dir, dataset, monkeypatch):
  # The mean shape from the labels alone equals the one from the full examples (images read),
  # for the whole set and for a keypoint subset.
  _, files = dataset
  for subset in ((), ("nose_tip", "left_eye_center")):
    config = coco_config(data_dir, files, keypoints=subset)
    source = pipeline.get_source(config.data)
    want = pipeline.training_mean_shape(config.data,
                                        dataclasses.replace(source, annotations=None))
    with monkeypatch.context() as patched:
      patched.setattr(tf.io, "read_file", lambda *_: pytest.fail("an image file was read"))
      got = pipeline.training_mean_shape(config.data, source)
    assert got.shape == (len(subset) or 15, 2)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def write_json(path, data):
  with open(path, "w") as f:
    json.dump(data, f)
  return str(path)


def broken_copies(files, tmp_path):
  """(description, files dict, expected message) for each kind of bad data."""
  truth = json.load(open(files["train"]))
  image_dir = os.path.dirname(files["train"])
  cases = []

  def case(name, edit, message):
    data = copy.deepcopy(truth)
    edit(data)
    path = write_json(tmp_path / f"{name}.json", data)
    cases.append((name, {**files, "train": path}, message.format(path=path), image_dir))

  def missing_image(data):
    data["images"][0]["file_name"] = "images/nowhere.jpg"
  case("missing_image", missing_image, r"{path}: annotation 1: unreadable image: image file "
       r".*nowhere.jpg not found")

  broken = tmp_path / "broken.jpg"
  broken.write_bytes(open(os.path.join(image_dir, truth["images"][0]["file_name"]),
                          "rb").read()[:300])
  def truncated_image(data):
    data["images"][0]["file_name"] = str(broken)
  case("truncated_image", truncated_image, r"annotation 1: unreadable image: cannot read image "
       r".*broken.jpg")

  other_format = tmp_path / "frame.ppm"  # Pillow reads it, training's decoder does not
  Image.open(os.path.join(image_dir, truth["images"][0]["file_name"])).save(other_format)
  def unsupported_format(data):
    data["images"][0]["file_name"] = str(other_format)
  case("unsupported_format", unsupported_format, r"annotation 1: unreadable image: cannot read "
       r"image .*frame.ppm: a PPM file, which training does not decode; convert it to one of "
       r"JPEG, PNG, GIF, BMP, WEBP, TIFF")

  def wrong_count(data):
    data["annotations"][1]["keypoints"] = data["annotations"][1]["keypoints"][:-3]
  case("wrong_count", wrong_count, r"{path}: annotation 2: keypoint count disagrees with the "
       r"category: 42 values; category 'face' has 15 keypoints, so 45 \(x, y, v triples\) or 30 "
       r"\(x, y pairs\)")

  def outside(data):
    data["annotations"][2]["keypoints"][0] = 5000.0
  case("outside", outside, r"annotation 3: keypoints outside the image: \['left_eye_center'\] "
       r"in .* \(config.data.outside_keypoints='keep' keeps them\)")

  def missing_field(data):
    del data["annotations"][0]["bbox"]
  case("missing_field", missing_field, r"annotation 1: missing fields: no 'bbox' \(nor 'center' "
       r"and 'scale'\)")

  def unknown_image(data):
    data["annotations"][0]["image_id"] = 999
  case("unknown_image", unknown_image, r"annotation 1: unknown image_id: 999")

  def empty(data):
    data["annotations"] = []
  case("empty", empty, r"split 'train' has no usable examples")
  return cases


def test_each_kind_of_bad_data_names_the_file_and_record(data_dir, dataset, tmp_path):
  _, files = dataset
  for name, broken, message, image_dir in broken_copies(files, tmp_path):
    with pytest.raises(ValueError, match=message):
      pipeline.get_source(coco_config(data_dir, broken, image_dirs={"train": image_dir},
                                      outside_keypoints="error").data)
  not_json = tmp_path / "not.json"
  not_json.write_text('{"images": [}')
  with pytest.raises(ValueError, match=rf"{not_json} is not valid JSON: .*line 1 column 13"):
    pipeline.get_source(coco_config(data_dir, {"train": str(not_json)}).data)
  with pytest.raises(FileNotFoundError, match="nothere.json not found"):
    pipeline.get_source(coco_config(data_dir, {"train": str(tmp_path / "nothere.json")}).data)


def test_skip_mode_leaves_bad_records_out_and_counts_them(data_dir, dataset, tmp_path):
  _, files = dataset
  size = len(json.load(open(files["train"]))["annotations"])
  for name, broken, _, image_dir in broken_copies(files, tmp_path):
    if name == "empty":
      continue
    source = pipeline.get_source(coco_config(data_dir, broken, bad_records="skip",
                                             image_dirs={"train": image_dir},
                                             outside_keypoints="error").data)
    # An unreadable image loses every annotation on it; the other faults one annotation each.
    lost = 2 if name in ("missing_image", "truncated_image", "unsupported_format") else 1
    assert source.split_sizes["train"] >= size - lost and source.split_sizes["train"] < size


def people(num_images=6, seed=0):
  """COCO person ground truth with 1-2 people an image and some unlabelled keypoints."""
  rng = np.random.default_rng(seed)
  images, annotations = [], []
  for image_id in range(1, num_images + 1):
    images.append({"id": image_id, "width": 640, "height": 480, "file_name": f"{image_id}.jpg"})
    for _ in range(rng.integers(1, 3)):
      x, y = rng.uniform(0, 400), rng.uniform(0, 250)
      w, h = rng.uniform(60, 200), rng.uniform(100, 220)
      points = np.stack([rng.uniform(x, x + w, 17), rng.uniform(y, y + h, 17)], 1)
      flags = rng.choice([0, 1, 2], 17, p=[0.2, 0.2, 0.6])
      values = np.concatenate([points * (flags[:, None] > 0), flags[:, None]], 1)
      annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                          "bbox": [x, y, w, h], "area": w * h * 0.6, "iscrowd": 0,
                          "keypoints": values.ravel().tolist(),
                          "num_keypoints": int((flags > 0).sum())})
  return {"info": {}, "images": images, "annotations": annotations,
          "categories": [{"id": 1, "name": "person", "keypoints": list(COCO_PERSON.names)}]}


def pycocotools_ap(truth, predictions):
  """COCO keypoint AP the way pycocotools' own example calls it (its default sigmas: COCO's)."""
  gt = COCO()
  gt.dataset = copy.deepcopy(truth)
  gt.createIndex()
  reference = COCOeval(gt, gt.loadRes(copy.deepcopy(predictions)), "keypoints")
  reference.evaluate()
  reference.accumulate()
  reference.summarize()
  return reference.stats


def test_coco_ap_is_one_for_the_truth_and_matches_pycocotools_for_perturbed(tmp_path):
  truth = people()
  points = [np.reshape(a["keypoints"], (17, 3))[:, :2] for a in truth["annotations"]]
  image_ids = [a["image_id"] for a in truth["annotations"]]
  exact = coco_eval.results(image_ids, points, np.ones(len(points)), 1)
  got = coco_eval.keypoint_ap(truth, exact, COCO_PERSON.oks_sigmas(), 1)
  assert got["AP"] == pytest.approx(1.0) and got["AR"] == pytest.approx(1.0)
  rng = np.random.default_rng(1)
  noisy = [p + rng.normal(0, 6, p.shape) for p in points]
  scores = rng.uniform(0.5, 1, len(points))
  predictions = coco_eval.results(image_ids, noisy, scores, 1)
  got = coco_eval.keypoint_ap(truth, predictions, COCO_PERSON.oks_sigmas(), 1)
  want = pycocotools_ap(truth, predictions)
  assert 0.05 < got["AP"] < 0.95
  np.testing.assert_allclose([got[name] for name in coco_eval.STATS], want, atol=1e-12)


def test_evaluation_of_the_true_keypoints_scores_ap_one(data_dir, dataset):
  # Through the evaluate command's path: crops, predictions mapped back to source pixels,
  # scored against the annotation file itself.
  _, files = dataset
  config = coco_config(data_dir, files)
  source = pipeline.get_source(config.data)
  ap, predictions = evaluation.coco_metrics(source, "validation",
                                            ground_truth_rows(config, source, "validation"))
  assert ap["AP"] == pytest.approx(1.0) and ap["AR"] == pytest.approx(1.0)
  noisy, _ = evaluation.coco_metrics(source, "validation",
                                     ground_truth_rows(config, source, "validation", noise=1.5))
  assert noisy["AP"] < 0.9


def test_evaluate_command_on_a_trained_coco_run(data_dir, dataset, tmp_path):
  _, files = dataset
  config = coco_config(data_dir, files)
  config.num_train_steps = 10
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(config, workdir)
  summary = evaluation.evaluate_run(workdir, "validation")
  truth = json.load(open(files["validation"]))
  assert summary["num_examples"] == len(truth["annotations"])
  for name in ("nme", "pck@0.1", "auc@0.08", "failure@0.08", "coco_AP", "coco_AR"):
    assert np.isfinite(summary[name]), name
  assert set(summary["per_keypoint"]) == set(FACE15.names)
  # The written results, scored by pycocotools directly against the annotation file.
  predictions = json.load(open(os.path.join(workdir, "eval", "validation",
                                            "keypoint_results.json")))
  assert len(predictions) == len(truth["annotations"])
  gt = COCO(files["validation"])
  reference = COCOeval(gt, gt.loadRes(predictions), "keypoints")
  reference.params.kpt_oks_sigmas = np.full(15, 0.05)
  reference.evaluate()
  reference.accumulate()
  reference.summarize()
  assert summary["coco_AP"] == pytest.approx(reference.stats[0], abs=1e-12)
  assert "left_eye_center" in evaluation.format_table(summary)


def test_detected_boxes_are_scored_and_deduplicated_as_mmpose_does():
  # One image, two people; three detections: each person's and, between them in score, a
  # second box on the first whose pose is 0.3 px off (a duplicate).
  names = ("a", "b", "c")
  person_a = np.array([[10.0, 10.0], [30.0, 10.0], [20.0, 40.0]])
  person_b = person_a + 100
  truth = coco_eval.ground_truth_from_examples(
      [7, 7], np.array([[5.0, 5.0, 30.0, 40.0], [105.0, 105.0, 30.0, 40.0]]),
      np.stack([person_a, person_b]), np.ones((2, 3)), names)
  source = types.SimpleNamespace(spec=KeypointSpec(names), ground_truth={
      "validation": lambda: (truth, 1)})
  rows = {"pred": np.stack([person_a, person_a + 0.3, person_b]),
          "likelihood": np.array([[0.9, 0.9, 0.1], [0.9, 0.9, 0.9], [0.5, 0.5, 0.5]]),
          "matrix": np.broadcast_to(np.eye(3), (3, 3, 3)), "image_id": np.array([7, 7, 7])}
  ap, predictions = evaluation.coco_metrics(source, "validation", rows,
                                            box_scores=np.array([0.9, 0.8, 0.7]))
  # Scores: 0.9 x mean(0.9, 0.9) (0.1 is under 0.2); the duplicate 0.8 x 0.9 = 0.72 is gone
  # (OKS ~1 > 0.9 with the first); 0.7 x 0.5.
  np.testing.assert_allclose([p["score"] for p in predictions], [0.81, 0.35])
  assert ap["AP"] == pytest.approx(1.0)
  # Without the NMS the duplicate is a false positive ranked second: precision 1 up to recall
  # 0.5, then 2/3; COCO's 101-point AP = (51 * 1 + 50 * 2/3) / 101.
  kept_all = coco_eval.results([7, 7, 7], rows["pred"], [0.81, 0.72, 0.35], 1)
  raw = coco_eval.keypoint_ap(truth, kept_all, KeypointSpec(names).oks_sigmas(), 1)
  assert raw["AP"] == pytest.approx((51 + 50 * 2 / 3) / 101, abs=1e-9)


def test_evaluate_with_a_detections_file(data_dir, dataset, tmp_path):
  _, files = dataset
  config = coco_config(data_dir, files)
  config.num_train_steps = 4
  config.log_every_steps = config.eval_every_steps = config.checkpoint_every_steps = 4
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(config, workdir)
  truth = json.load(open(files["validation"]))
  detections = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                 "score": 0.9} for a in truth["annotations"]]
  detections.append({"image_id": truth["images"][0]["id"], "category_id": 99,
                     "bbox": [0, 0, 10, 10], "score": 1.0})  # another category: left out
  path = str(tmp_path / "detections.json")
  json.dump(detections, open(path, "w"))
  summary = evaluation.evaluate_run(workdir, "validation", str(tmp_path / "eval"),
                                    detections=path)
  assert summary["boxes"] == path and summary["num_examples"] == len(truth["annotations"])
  assert summary["num_labelled_keypoints"] == 0  # detected boxes carry no labels
  assert 0.0 <= summary["coco_AP"] <= 1.0
  # The written results are the NMS survivors, scored box score x mean likelihood.
  predictions = json.load(open(tmp_path / "eval" / "metrics.json"))
  assert predictions["coco_AP"] == summary["coco_AP"]
  json.dump([{**detections[0], "image_id": 12345}], open(path, "w"))
  with pytest.raises(ValueError, match=r"detection #0: image_id 12345 is not an image of"):
    evaluation.evaluate_run(workdir, "validation", str(tmp_path / "eval"), detections=path)


def test_annotations_folder_layout_needs_no_image_dirs(data_dir, dataset, tmp_path):
  # PoseTrack's and several MMPose datasets' layout: root/annotations/*.json, file_name
  # relative to root.
  out, files = dataset
  root = tmp_path / "dataset"
  (root / "annotations").mkdir(parents=True)
  moved = {}
  for split, path in files.items():
    data = json.load(open(path))
    for image in data["images"]:
      image["file_name"] = f"frames/{split}/{image['file_name']}"
      target = root / image["file_name"]
      target.parent.mkdir(parents=True, exist_ok=True)
      shutil.copy(os.path.join(out, "images", os.path.basename(image["file_name"])), target)
    moved[split] = str(root / "annotations" / f"{split}.json")
    json.dump(data, open(moved[split], "w"))
  source = pipeline.get_source(coco_config(data_dir, moved).data)
  assert source.split_sizes["validation"] == len(json.load(open(files["validation"]))
                                                 ["annotations"])
  next(source.load("validation", 0, 1).as_numpy_iterator())  # the image reads


def test_images_with_several_people_are_grouped_for_the_centre_model(data_dir, dataset):
  _, files = dataset
  source = pipeline.get_source(coco_config(data_dir, files).data)
  truth = json.load(open(files["train"]))
  per_image = collections.Counter(a["image_id"] for a in truth["annotations"])
  assert max(per_image.values()) > 1  # the example scenes hold several faces
  images = list(source.images.load("train", 0, 1).as_numpy_iterator())
  assert source.images.split_sizes["train"] == len(images) == len(per_image)
  for image in images:
    want = [a for a in truth["annotations"] if a["image_id"] == image["image_id"]]
    assert len(image["keypoints"]) == len(want)
    np.testing.assert_allclose(image["box"], [a["bbox"] for a in want], atol=1e-4)
  assert instances.most_instances(source) == max(per_image.values())


def unaugmented(config):
  augment = config.data.augment
  augment.max_rotation_deg, augment.scale_range, augment.max_shift = 0.0, (1.0, 1.0), 0.0
  augment.flip_probability = 0.0
  return config


def crops_by_keypoints(batches):
  """{keypoints' bytes: crop} over the batches' rows (an unaugmented crop's keypoints name
  its instance)."""
  return {row_keypoints.tobytes(): image for batch in batches
          for row_keypoints, image, real in zip(batch["keypoints"], batch["image"],
                                               batch.get("mask", np.ones(len(batch["image"]))))
          if real}


def test_each_photo_is_decoded_once_for_all_its_instances(data_dir, dataset):
  _, files = dataset
  config = unaugmented(coco_config(data_dir, files))
  config.batch_size = 1
  source = pipeline.get_source(config.data)
  size = source.split_sizes["train"]
  counts = [[len(photo["box"]) for photo in shard.as_numpy_iterator()]
            for shard in (source.images.files("train", i, 3) for i in range(3))]
  assert sum(sum(c) for c in counts) == size and max(max(c) for c in counts) > 1
  # The eval path decodes the image of each instance on its own: the same crops.
  alone = crops_by_keypoints(pipeline.eval_iterator(config, source, "train", local_devices=1))
  assert len(alone) == size
  for epoch in range(2):
    stream = pipeline.train_iterator(config, source, start_step=epoch * size, local_devices=1)
    together = crops_by_keypoints(next(stream) for _ in range(size))
    assert together.keys() == alone.keys()  # each instance once an epoch
    for key, crop in together.items():
      np.testing.assert_array_equal(crop, alone[key])


def test_decoding_each_crops_window_instead_shuffles_instances_alone(data_dir, dataset):
  _, files = dataset
  config = unaugmented(coco_config(data_dir, files, decode_once_per_photo=False))
  source = pipeline.get_source(config.data)
  alone = next(pipeline.train_iterator(config, source, start_step=0, local_devices=1))
  # The same stream as a source whose every instance is an image of its own.
  one_each = dataclasses.replace(source, images=None)
  want = next(pipeline.train_iterator(config, one_each, start_step=0, local_devices=1))
  for key in want:
    np.testing.assert_array_equal(alone[key], want[key])
  config.data.decode_once_per_photo = True
  together = next(pipeline.train_iterator(config, source, start_step=0, local_devices=1))
  assert not np.array_equal(together["keypoints"], want["keypoints"])


@pytest.mark.parametrize("photometric", [False, True])
def test_a_run_resumed_inside_a_photo_sees_the_same_batches(data_dir, dataset, photometric):
  _, files = dataset
  config = coco_config(data_dir, files)  # every augmentation of configs/tiny.py on
  if photometric:  # a crop at a time after its photo's warp: another way into the batch
    config.data.augment.update(brightness=0.2, contrast=0.2, blur_probability=0.5)
  config.batch_size = 3  # some of the resumed streams start inside a photo of two faces
  source = pipeline.get_source(config.data)
  whole = list(itertools.islice(pipeline.train_iterator(config, source, start_step=0,
                                                        local_devices=1), 14))
  for start in (1, 5, 11):  # 11: the second epoch (19 faces)
    resumed = pipeline.train_iterator(config, source, start_step=start, local_devices=1)
    for step in range(start, 14):
      batch = next(resumed)
      for key in batch:
        np.testing.assert_array_equal(batch[key], whole[step][key])


def editable_copy(dataset, tmp_path) -> tuple[str, dict]:
  """A copy of the module's COCO files and images, and its annotation files by split."""
  out, files = dataset
  copied = str(shutil.copytree(out, tmp_path / "faces"))
  return copied, {split: path.replace(out, copied) for split, path in files.items()}


def test_decoded_copies_give_the_batches_of_the_photos_and_follow_their_edits(
    data_dir, dataset, tmp_path):
  copied, files = editable_copy(dataset, tmp_path)  # one photo gets edited
  config = coco_config(data_dir, files)  # every augmentation of configs/tiny.py on
  config.batch_size = 2  # 10 batches: the first epoch's 19 faces
  copies = tmp_path / "copies"

  def epoch(decoded_copies: str):
    config.data.decoded_copies = decoded_copies
    stream = pipeline.train_iterator(config, pipeline.get_source(config.data), start_step=0,
                                     local_devices=1)
    return {key: np.stack([next(stream)[key] for _ in range(10)]) for key in pipeline.TRAIN_KEYS}

  def made():  # each copy's name and when it was written
    return {p.name: p.stat().st_mtime_ns for p in copies.iterdir()}

  def assert_same(got, want):
    for key in want:
      np.testing.assert_array_equal(got[key], want[key])

  photos = json.load(open(files["train"]))["images"]
  decoded = epoch("")
  assert_same(epoch(str(copies)), decoded)
  first = made()
  assert len(first) == len(photos) and not list(copies.glob("*.partial"))
  assert_same(epoch(str(copies)), decoded)  # read back, none written again
  assert made() == first
  cut_short = next(copies.iterdir())
  whole = cut_short.read_bytes()
  cut_short.write_bytes(whole[:len(whole) // 2])  # as a machine gone down mid-write leaves it
  assert_same(epoch(str(copies)), decoded)
  assert cut_short.read_bytes() == whole
  first = made()
  edited = os.path.join(copied, photos[0]["file_name"])
  Image.fromarray(255 - np.asarray(Image.open(edited))).save(edited)
  decoded_edited = epoch("")
  assert not np.array_equal(decoded_edited["image"], decoded["image"])
  assert_same(epoch(str(copies)), decoded_edited)  # the edited photo's fresh copy
  assert len(made()) == len(photos) + 1 and made().items() >= first.items()


def test_decoded_copies_are_refused_where_photos_are_not_decoded_once(data_dir, dataset):
  _, files = dataset
  for unsupported in ({"cache": True}, {"decode_once_per_photo": False}):
    config = coco_config(data_dir, files, decoded_copies="copies", **unsupported)
    with pytest.raises(ValueError, match=r"config.data.decoded_copies .* set it to \"\""):
      next(pipeline.train_iterator(config, pipeline.get_source(config.data), start_step=0,
                                   local_devices=1))
  config = coco_config(data_dir, files, decoded_copies="gs://bucket/copies")
  with pytest.raises(ValueError, match="must be a local folder"):
    next(pipeline.train_iterator(config, pipeline.get_source(config.data), start_step=0,
                                 local_devices=1))


def test_a_photo_that_does_not_decode_is_named_when_its_copy_is_made(data_dir, dataset,
                                                                      tmp_path):
  copied, files = editable_copy(dataset, tmp_path)
  broken = os.path.join(copied, json.load(open(files["train"]))["images"][3]["file_name"])
  whole = open(broken, "rb").read()
  open(broken, "wb").write(whole[:len(whole) // 3])  # a download cut short
  config = coco_config(data_dir, files, verify_images=False,  # as configs/coco_person.py
                       decoded_copies=str(tmp_path / "copies"))
  why = r"\(jpeg::Uncompress failed. Invalid JPEG data or crop window.\)"
  with pytest.raises(ValueError, match=rf"cannot decode image {broken} {why} .* replace or remove"):
    next(pipeline.train_iterator(config, pipeline.get_source(config.data), start_step=0,
                                 local_devices=1))


def photos_as_pngs(dataset, folder, orientation) -> dict:
  """The module's COCO files in `folder`, each photo there a PNG of its pixels (lossless)
  stored as a camera held otherwise stores them, under EXIF tag `orientation(image id)`;
  labels unchanged, in the upright picture, as a labelling tool shows it."""
  out, files = dataset
  os.makedirs(folder / "images")
  pngs = {}
  for split, path in files.items():
    data = json.load(open(path))
    for image in data["images"]:
      pixels = np.asarray(Image.open(os.path.join(out, image["file_name"])))
      image["file_name"] = image["file_name"].replace(".jpg", ".png")
      save_turned(pixels, orientation(image["id"]), folder / image["file_name"])
    pngs[split] = str(folder / os.path.basename(path))
    json.dump(data, open(pngs[split], "w"))
  return pngs


def test_photos_stored_turned_are_read_upright_as_they_were_labelled(data_dir, dataset,
                                                                      tmp_path, caplog):
  """Photos stored turned or mirrored under an EXIF orientation tag (as phones store them),
  labelled upright: each way of reading them makes the batches of the same photos stored
  upright."""
  upright = photos_as_pngs(dataset, tmp_path / "upright", lambda image_id: 1)
  turned = photos_as_pngs(dataset, tmp_path / "turned", lambda image_id: image_id % 8 + 1)

  def batches(files, **data):
    config = coco_config(data_dir, files, **data)
    config.batch_size = 4
    source = pipeline.get_source(config.data)
    stream = pipeline.train_iterator(config, source, start_step=0, local_devices=1)
    return ([next(stream) for _ in range(5)]
            + list(pipeline.eval_iterator(config, source, "validation", local_devices=1)))

  caplog.set_level("INFO")
  for reading, window in (({}, False), ({"cache": True}, False),  # the photo, decoded once
                          ({"decode_once_per_photo": False}, True),  # each crop's window
                          ({"decoded_copies": str(tmp_path / "copies")}, False)):
    for got, want in zip(batches(turned, **reading), batches(upright, **reading), strict=True):
      for key in want:
        if key == "image" and window:  # warped from another window origin: 1/32 px apart
          difference = np.abs(got[key].astype(int) - want[key])
          assert difference.max() <= 1 and np.mean(difference > 0) < 0.01
        else:
          np.testing.assert_array_equal(got[key], want[key], err_msg=f"{reading} {key}")
  assert "15 of 17 images are stored turned or mirrored (EXIF orientation" in caplog.text
  stored = batches(turned, upright=False)  # the tags ignored: what was labelled not
  assert not np.array_equal(stored[0]["image"], batches(upright)[0]["image"])  # what is seen


def test_crowds_and_unlabelled_people_are_regions_the_centre_model_ignores(data_dir, dataset):
  out, files = dataset
  data = json.load(open(files["train"]))
  image_id = data["annotations"][0]["image_id"]
  crowd = {"id": 9001, "image_id": image_id, "category_id": data["annotations"][0]["category_id"],
           "bbox": [1, 2, 10, 20], "iscrowd": 1, "keypoints": [0] * 45, "num_keypoints": 0}
  unlabelled = {**crowd, "id": 9002, "bbox": [30, 3, 8, 9], "iscrowd": 0}
  data["annotations"] += [crowd, unlabelled]
  path = os.path.join(out, "train_with_crowds.json")  # beside the images it names
  json.dump(data, open(path, "w"))
  source = pipeline.get_source(coco_config(data_dir, {**files, "train": path}).data)
  labelled = sum(a["image_id"] == image_id for a in data["annotations"]) - 2
  assert source.split_sizes["train"] == len(data["annotations"]) - 2  # trained on: not these
  image = next(x for x in source.images.load("train", 0, 1).as_numpy_iterator()
               if x["image_id"] == image_id)
  np.testing.assert_array_equal(image["ignore"], [0] * labelled + [1, 1])
  np.testing.assert_allclose(image["box"][-2:], [[1, 2, 10, 20], [30, 3, 8, 9]])
  config = coco_config(data_dir, {**files, "train": path})
  config.data.input_size = ()  # the centre model sees whole images
  config.data.instances.stage = "centre"
  config.data.instances.max_instances = instances.most_instances(source)
  centres = pipeline.get_source(config.data)
  example = next(x for x in centres.load("train", 0, 1).as_numpy_iterator()
                 if x["image_id"] == image_id)
  slots = slice(labelled, labelled + 2)
  np.testing.assert_array_equal(example["ignore"][slots], [1, 1])
  np.testing.assert_array_equal(example["visible"][slots], [0, 0])
  np.testing.assert_allclose(example["keypoints"][slots], [[5.5, 11.5], [33.5, 7.0]])
