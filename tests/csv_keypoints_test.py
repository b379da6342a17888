import csv

import numpy as np
import pytest
from PIL import Image

from conftest import tiny_config
from kp_jax.data import faces, pipeline
from kp_jax.data.keypoints import FACE15


def kaggle_rows(count, size=32, seed=0):
  """Rows in the Kaggle Facial Keypoints layout, with some coordinates left empty."""
  rng = np.random.default_rng(seed)
  header = [f"{n}_{axis}" for n in FACE15.names for axis in "xy"] + ["Image"]
  rows, truth = [], []
  for i in range(count):
    example = faces.render_example(rng, size)
    missing = rng.uniform(size=15) < 0.3
    missing[:2] = False  # eye centres: the normaliser
    coords = []
    for (x, y), gone in zip(example["keypoints"], missing):
      coords += ["", ""] if gone else [f"{x:.4f}", f"{y:.4f}"]
    rows.append(coords + [" ".join(map(str, example["image"].ravel()))])
    truth.append((example["keypoints"], ~missing, example["image"]))
  return header, rows, truth


def write_csv(path, header, rows):
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(rows)
  return str(path)


def csv_config(data_dir, files, **data):
  config = tiny_config(data_dir)
  config.data.source = "csv"
  config.data.files = files
  config.data.norm_keypoints = ("left_eye_center", "right_eye_center")
  for key, value in data.items():
    config.data[key] = value
  return config


def test_kaggle_layout_with_missing_values(data_dir, tmp_path):
  header, rows, truth = kaggle_rows(10)
  path = write_csv(tmp_path / "training.csv", header, rows)
  config = csv_config(data_dir, {"train": path, "validation": path})
  source = pipeline.get_source(config.data)
  assert source.spec.names == FACE15.names and source.image_hw == (32, 32)
  assert set(source.spec.flip_pairs) == set(FACE15.flip_pairs)
  for example, (keypoints, labelled, image) in zip(source.load("train", 0, 1).as_numpy_iterator(),
                                                   truth):
    np.testing.assert_array_equal(example["visible"], labelled.astype(np.float32))
    np.testing.assert_allclose(example["keypoints"][labelled], keypoints[labelled], atol=1e-4)
    assert np.all(example["keypoints"][~labelled] == 0)
    np.testing.assert_array_equal(example["image"], image)
    assert example["norm"] == pytest.approx(np.hypot(*(keypoints[0] - keypoints[1])), rel=1e-4)
  batch = next(pipeline.train_iterator(config, source, start_step=0, local_devices=1))
  assert batch["image"].shape == (16, 32, 32, 1)


def test_image_paths_instead_of_pixels(data_dir, tmp_path):
  header, rows, truth = kaggle_rows(4)
  for i, (row, (_, _, image)) in enumerate(zip(rows, truth)):
    Image.fromarray(np.repeat(image, 3, -1)).save(tmp_path / f"face{i}.png")
    row[-1] = f"face{i}.png"
  path = write_csv(tmp_path / "paths.csv", header, rows)
  config = csv_config(data_dir, {"train": path, "validation": path}, input_size=(24, 24))
  source = pipeline.get_source(config.data)
  assert source.image_hw is None and source.channels == 3
  example = next(source.load("train", 0, 1).as_numpy_iterator())
  np.testing.assert_array_equal(example["image"][..., 0], truth[0][2][..., 0])
  batch = next(pipeline.eval_iterator(config, source, "validation", local_devices=1))
  assert batch["image"].shape == (8, 24, 24, 3)


@pytest.mark.parametrize("edit, message", [
    (lambda row: row.pop(3), r"line 3: wrong number of fields: 30, the header has 31"),
    (lambda row: row.__setitem__(4, "abc"), r"line 3: bad coordinate: could not convert"),
    (lambda row: row.__setitem__(5, ""), r"line 3: a keypoint has only one coordinate"),
    (lambda row: row.__setitem__(-1, "1 2 3 4 5"), r"line 3: unreadable image: 5 pixel values "
     r"do not make a square image"),
    (lambda row: row.__setitem__(-1, "nowhere.png"), r"line 3: unreadable image: image file "
     r".*nowhere.png not found"),
    (lambda row: row.__setitem__(0, "40.0"), r"line 3: keypoints outside the image: "
     r"\['left_eye_center'\]"),
])
def test_bad_rows_name_the_file_and_line(data_dir, tmp_path, edit, message):
  header, rows, _ = kaggle_rows(3)
  edit(rows[1])  # line 3: the header is line 1
  path = write_csv(tmp_path / "bad.csv", header, rows)
  files = {"train": path, "validation": path}
  with pytest.raises(ValueError, match=f"{path}: {message}"):
    pipeline.get_source(csv_config(data_dir, files, outside_keypoints="error").data)
  skipped = pipeline.get_source(csv_config(data_dir, files, bad_records="skip",
                                           outside_keypoints="error").data)
  assert skipped.split_sizes["train"] == 2


def test_header_errors(data_dir, tmp_path):
  path = write_csv(tmp_path / "h.csv", ["a_x", "a_y", "b_x", "Pixels"], [])
  with pytest.raises(ValueError, match=r"no image column 'Image'"):
    pipeline.get_source(csv_config(data_dir, {"train": path}, norm_keypoints=()).data)
  with pytest.raises(ValueError, match=r"columns \['b_x'\] are not <name>_x / <name>_y pairs"):
    pipeline.get_source(csv_config(data_dir, {"train": path}, norm_keypoints=(),
                                   image_column="Pixels").data)
  empty = write_csv(tmp_path / "e.csv", ["a_x", "a_y", "Image"], [])
  with pytest.raises(ValueError, match=r"split 'train' has no usable examples"):
    pipeline.get_source(csv_config(data_dir, {"train": empty}, norm_keypoints=()).data)
