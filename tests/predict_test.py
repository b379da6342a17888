import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import save_turned
from kp_jax import exported, predict
from kp_jax.data import faces, transforms


def test_the_exported_model_runner_crops_as_the_pipeline_and_maps_back():
  # Training and kp_jax.predict crop with the pipeline's TensorFlow warp; the exported-model
  # runner (no TensorFlow) with NumPy: the same pixels.
  image = np.random.default_rng(0).uniform(size=(40, 50, 3)).astype(np.float32)
  matrix = transforms.box_matrix(tf.constant([6.0, 4.0, 30.0, 22.0]), (24, 32), 1.25)
  example = {"image": tf.constant(image), "keypoints": tf.constant([[12.3, 20.7]]),
             "visible": tf.ones(1), "norm": tf.constant(1.0)}
  want = transforms.warp(example, matrix, (24, 32))
  got = exported.warp(image, matrix.numpy().astype(np.float64), (24, 32))
  np.testing.assert_allclose(got, want["image"], atol=1e-4)
  back = exported.to_source_pixels(want["keypoints"].numpy(), matrix.numpy())
  np.testing.assert_allclose(back, [[12.3, 20.7]], atol=1e-4)
  # The exported-model runner's box and whole-image fits are the pipeline's box matrices.
  for hw in ((40, 50), (50, 40), (24, 32)):
    want = transforms.box_matrix(tf.constant([0.0, 0.0, hw[1], hw[0]]), (24, 32), 1.0)
    np.testing.assert_allclose(exported.fit_matrix(hw, (24, 32)), want.numpy(), atol=1e-5)
  for box in ((6.0, 4.0, 30.0, 22.0), (10.5, 3.0, 8.0, 30.0)):
    for udp in (False, True):
      want = transforms.box_matrix(tf.constant(box), (24, 32), 1.25, udp)
      np.testing.assert_allclose(exported.box_matrix(box, (24, 32), 1.25, udp), want.numpy(),
                                 atol=1e-5)


def test_predict_command_on_png_files(trained, tmp_path):
  _, workdir, _ = trained
  paths = []
  for i, (height, width) in enumerate([(32, 32), (80, 60)]):
    image = faces.render_example(np.random.default_rng([9, i]), 32)["image"][..., 0]
    path = str(tmp_path / f"face{i}.png")
    Image.fromarray(image).resize((width, height)).save(path)
    paths.append((path, height, width))
  (tmp_path / "notes.txt").write_text("not a picture")  # passed over in the folder
  out = str(tmp_path / "out")
  run = subprocess.run([sys.executable, "-m", "kp_jax.predict", f"--workdir={workdir}",
                        f"--output_dir={out}", str(tmp_path)], check=True,  # the folder's
                       capture_output=True, text=True, env={**os.environ, "XLA_FLAGS": ""})
  # A quiet console: one line of what was written where and how fast, no JSON, no INFO logs.
  assert run.stdout.startswith("2 images in ") and "images/s" in run.stdout
  assert f"-> {out}/keypoints.json" in run.stdout and "{" not in run.stdout
  # TensorFlow's import-time notice (oneDNN's, on AVX-512 CPUs) prints before any setting can
  # quiet it (tensorflow/tensorflow#100442): the INFO lines that must stay off are the rest.
  assert not [line for line in run.stderr.splitlines()
              if line.startswith("I") and "] oneDNN custom operations are on" not in line]
  results = json.load(open(os.path.join(out, "keypoints.json")))
  asked = subprocess.run([sys.executable, "-m", "kp_jax.predict", f"--workdir={workdir}",
                          f"--output_dir={out}", "--json", paths[0][0]], check=True,
                         capture_output=True, text=True, env={**os.environ, "XLA_FLAGS": ""})
  assert json.loads(asked.stdout[:asked.stdout.rindex("}") + 1]) == {
      paths[0][0]: results[paths[0][0]]}
  for path, height, width in paths:
    values = np.array(list(results[path].values()))  # x, y, likelihood (the cutoff is 0)
    assert list(results[path])[:2] == ["left_eye_center", "right_eye_center"]
    assert values.shape == (15, 3)
    points, likelihood = values[:, :2], values[:, 2]
    assert np.all((likelihood >= 0) & (likelihood <= 1))
    # The square model input sees the whole image letterboxed: a square of side max(h, w)
    # about the image centre, which holds every prediction mapped back.
    side = max(height, width)
    low = np.array([width - side, height - side]) / 2 - 0.5
    assert np.all(points >= low - 1e-6) and np.all(points <= low + side + 1e-6)
    stem = os.path.splitext(os.path.basename(path))[0]
    assert os.path.getsize(os.path.join(out, f"{stem}_keypoints.png")) > 1000


def test_folders_give_their_images_and_videos(tmp_path):
  for name in ("b.png", "a.JPG", "clip.mp4", "notes.txt", "sub/c.png"):
    (tmp_path / name).parent.mkdir(exist_ok=True)
    (tmp_path / name).write_bytes(b"")
  (tmp_path / "empty").mkdir()
  folder = str(tmp_path)
  assert predict.input_files([folder, "x.png"]) == [
      f"{folder}/a.JPG", f"{folder}/b.png", f"{folder}/clip.mp4", "x.png"]
  with pytest.raises(ValueError, match=r"empty: a folder without images or videos \(files "
                                       r"ending in \.jpg, .*\.tiff, \.mp4"):
    predict.input_files([str(tmp_path / "empty")])


def test_a_picture_stored_turned_is_predicted_as_viewers_show_it(trained, tmp_path):
  """A picture stored turned or mirrored under an EXIF orientation tag (as phones store them)
  gets the keypoints of the same picture stored upright, in its upright pixels."""
  _, workdir, _ = trained
  face = faces.render_example(np.random.default_rng(3), 32)["image"][..., 0]
  picture = np.asarray(Image.fromarray(face).resize((48, 36)))  # not square: turns show
  paths = [str(tmp_path / f"orientation{o}.png") for o in range(1, 9)]
  for orientation, path in enumerate(paths, 1):
    save_turned(picture, orientation, path)
  got = predict.predict_files(workdir, paths, str(tmp_path / "out"), likelihood_cutoff=0.0)
  for path in paths[1:]:
    np.testing.assert_allclose(np.array(list(got[path].values())),
                               np.array(list(got[paths[0]].values())), atol=1e-4, err_msg=path)


def test_batched_prediction_keeps_order_and_skips_a_named_bad_file(trained, tmp_path, caplog):
  """Images of two sizes, interleaved, with an unreadable file among them: the batched,
  threaded run gives each image the keypoints of a one-at-a-time run, in the input order."""
  _, workdir, _ = trained
  rng = np.random.default_rng(0)
  paths = []
  for i, (height, width) in enumerate([(40, 50), (60, 30), (40, 50), (40, 50), (60, 30)]):
    path = str(tmp_path / f"img{i}.png")
    Image.fromarray(rng.integers(0, 255, (height, width), np.uint8)).save(path)
    paths.append(path)
  bad = tmp_path / "broken.png"
  bad.write_bytes(b"not a png")
  paths.insert(2, str(bad))
  predictor = predict.Predictor(workdir, likelihood_cutoff=0.0)
  batched = predict.predict_images(predictor, paths, str(tmp_path / "batched"), batch_size=4)
  assert list(batched) == [p for p in paths if p != str(bad)]
  assert any("broken.png" in r.getMessage() for r in caplog.records)
  single = predict.predict_images(predictor, paths, str(tmp_path / "single"), batch_size=1,
                                  overlay=False)
  for path in batched:  # one compiled function either way: batch sizes of one program family
    np.testing.assert_allclose(np.array(list(batched[path].values()), float),
                               np.array(list(single[path].values()), float), atol=1e-4)
  assert json.load(open(tmp_path / "batched" / "keypoints.json")) == batched
  # An overlay per image read, of its size; none without overlays.
  assert sorted(os.listdir(tmp_path / "batched")) == sorted(
      ["keypoints.json"] + [f"img{i}_keypoints.png" for i in range(5)])
  assert Image.open(tmp_path / "batched" / "img1_keypoints.png").size == (30, 60)
  assert os.listdir(tmp_path / "single") == ["keypoints.json"]


def test_jitter_table_gives_each_keypoints_share_and_says_what_a_dash_means():
  result = {"jumps": {"nose": 0.25, "tail": float("nan")},
            "smoothed_jumps": {"nose": 0.05, "tail": float("nan")}}
  lines = predict.jitter_table(result, 20.0).splitlines()
  assert lines[0] == "| keypoint | frames moving > 20 px, raw | smoothed |"
  assert lines[2:5] == ["| nose | 25.0% | 5.0% |", "| tail | - | - |",
                        "| **mean** | 25.0% | 5.0% |"]  # the mean over keypoints seen
  assert "not above the likelihood cutoff" in lines[5]
  seen = predict.jitter_table({"jumps": {"nose": 0.125}}, 5.0).splitlines()
  assert seen[-1] == "| **mean** | 12.5% |"  # no dash, no note
