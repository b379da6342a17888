"""DeepLabCut projects as a source: a tiny project written here in both CSV layouts, its split,
visibility, metadata and errors; then train -> evaluate -> predict on a video made of its
frames, with DeepLabCut's result CSV and an overlay video."""

import csv
import json
import os

import av
import numpy as np
import pytest
from PIL import Image

from conftest import file_source_config, write_deeplabcut_labels
from kp_jax import evaluation, exported, predict, train
from kp_jax.data import deeplabcut, pipeline

BODYPARTS = ["snout", "leftEar", "rightEar", "tailbase"]
FRAME_HW = (40, 48)


def dot_frame(points, visible) -> np.ndarray:
  """A dark RGB frame with a bright 3x3 dot at each labelled point."""
  image = np.full((*FRAME_HW, 3), 20, np.uint8)
  for (x, y), v in zip(points, visible):
    if v:
      image[int(round(y)) - 1:int(round(y)) + 2, int(round(x)) - 1:int(round(x)) + 2] = 230
  return image


def write_project(root, frames_per_video=(6, 4), config_extra="") -> dict:
  """Two videos' labels: vid1 in the one-index-column layout (DeepLabCut <= 2.2), vid2 in the
  three-index-column layout (2.3+). Returns {frame path: (points [K, 2], visible [K])}."""
  rng = np.random.default_rng(0)
  with open(os.path.join(root, "config.yaml"), "w") as f:
    f.write("Task: mouse\nscorer: Me\nbodyparts:\n" + "".join(f"- {b}\n" for b in BODYPARTS)
            + "skeleton:\n- - snout\n  - leftEar\n- - snout\n  - rightEar\n"
            + "TrainingFraction:\n- 0.8\n" + config_extra)
  truth = {}
  for video, count in zip(("vid1", "vid2"), frames_per_video):
    folder = os.path.join(root, "labeled-data", video)
    os.makedirs(folder)
    index_columns = 1 if video == "vid1" else 3
    rows = []
    for i in range(count):
      name = f"img{i:03d}.png"
      points = rng.uniform(4, [FRAME_HW[1] - 5, FRAME_HW[0] - 5], (4, 2)).round(2)
      visible = np.array([1, 1, 1, i % 3 != 0])  # tailbase unlabelled in every 3rd frame
      Image.fromarray(dot_frame(points, visible)).save(os.path.join(folder, name))
      frame = f"labeled-data/{video}/{name}"
      index = [frame] if index_columns == 1 else ["labeled-data", video, name]
      rows.append(index + [f"{v}" if visible[k] else "" for k in range(4) for v in points[k]])
      truth[frame] = (points, visible)
    write_deeplabcut_labels(os.path.join(folder, "CollectedData_Me.csv"), BODYPARTS, rows,
                            index_columns)
  return truth


@pytest.fixture(scope="module")
def project(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("MouseProject"))
  return root, write_project(root)


def dlc_config(data_dir, project_dir, **data):
  return file_source_config(data_dir, "deeplabcut", project=project_dir, box_padding=1.0,
                            **data)


def test_project_frames_split_and_metadata(data_dir, project):
  root, truth = project
  source = pipeline.get_source(dlc_config(data_dir, root).data)
  frames = sorted(truth)  # vid1's 6 frames, then vid2's 4
  # TrainingFraction 0.8: every 5th frame of the sorted list (the 5th and the 10th) is held out.
  held_out = [frames[4], frames[9]]
  assert source.split_sizes == {"train": 8, "test": 2, "validation": 2}
  assert source.spec.names == tuple(BODYPARTS)
  assert source.spec.flip_pairs == (("leftEar", "rightEar"),)
  assert source.spec.skeleton == (("snout", "leftEar"), ("snout", "rightEar"))
  seen = []
  for split, count in (("train", 8), ("test", 2)):
    examples = list(source.load(split, 0, 1).as_numpy_iterator())
    assert len(examples) == count
    for example in examples:
      frame = frames[int(example["image_id"])]
      points, visible = truth[frame]
      np.testing.assert_array_equal(example["visible"], visible.astype(np.float32))
      np.testing.assert_allclose(example["keypoints"][visible], points[visible], atol=1e-4)
      np.testing.assert_array_equal(example["image"], dot_frame(points, visible))
      np.testing.assert_array_equal(example["box"], [0, 0, FRAME_HW[1], FRAME_HW[0]])
      seen.append((split, frame))
  assert sorted(f for s, f in seen if s == "test") == held_out


def test_explicit_test_frames_and_fraction(data_dir, project):
  root, truth = project
  frames = sorted(truth)
  source = pipeline.get_source(dlc_config(
      data_dir, root, test_frames=(frames[0], "img002.png")).data)  # a path and a file name
  # img002.png names a frame in each video.
  assert source.split_sizes["test"] == 3
  assert deeplabcut.held_out(10, 0.5).tolist() == [False, True] * 5
  assert deeplabcut.held_out(20, 0.95).tolist() == [False] * 19 + [True]
  with pytest.raises(ValueError, match=r"test_frames names frames not labelled.*nope.png"):
    pipeline.get_source(dlc_config(data_dir, root, test_frames=("nope.png",)).data)


def test_lightning_pose_layout(data_dir, tmp_path):
  """Lightning Pose: one CollectedData.csv at the root naming labeled-data/<frame>, no
  config.yaml; the body parts come from the CSV's header, frames without labels are left out."""
  dlc, root = str(tmp_path / "dlc"), str(tmp_path / "lp")
  os.makedirs(dlc)
  truth = write_project(dlc, frames_per_video=(6, 0))
  os.makedirs(os.path.join(root, "labeled-data"))
  with open(os.path.join(dlc, "labeled-data", "vid1", "CollectedData_Me.csv")) as f:
    rows = list(csv.reader(f))
  for row in rows[3:]:
    name = os.path.basename(row[0])
    os.rename(os.path.join(dlc, row[0]), os.path.join(root, "labeled-data", name))
    row[0] = f"labeled-data/{name}"
  Image.fromarray(dot_frame([], [])).save(os.path.join(root, "labeled-data", "unlabelled.png"))
  with open(os.path.join(root, "CollectedData.csv"), "w", newline="") as f:
    csv.writer(f).writerows(rows)
  source = pipeline.get_source(dlc_config(data_dir, root, train_fraction=0.5).data)
  assert source.spec.names == tuple(BODYPARTS) and source.spec.skeleton == ()
  assert source.split_sizes == {"train": 3, "test": 3, "validation": 3}
  for example in source.load("test", 0, 1).as_numpy_iterator():
    frame = f"labeled-data/vid1/img{int(example['image_id']):03d}.png"
    points, visible = truth[frame]
    np.testing.assert_allclose(example["keypoints"][visible], points[visible], atol=1e-4)
  os.remove(os.path.join(root, "CollectedData.csv"))
  with pytest.raises(FileNotFoundError, match=r"or a Lightning Pose one \(CollectedData.csv"):
    pipeline.get_source(dlc_config(data_dir, root).data)


@pytest.mark.parametrize("break_it, message", [
    (lambda root: os.remove(os.path.join(root, "config.yaml")),
     r"config.yaml not found: config.data.project must be a DeepLabCut project"),
    (lambda root: os.remove(os.path.join(root, "labeled-data", "vid1", "img001.png")),
     r"CollectedData_Me.csv: line 5: unreadable image: image file .*img001.png not found"),
    (lambda root: _replace(os.path.join(root, "config.yaml"), "- tailbase", "- tail"),
     r"bodyparts \['tail'\] of config.yaml have no x / y columns"),
    (lambda root: _replace(os.path.join(root, "labeled-data", "vid2", "CollectedData_Me.csv"),
                           "bodyparts", "individuals", count=1),
     r"vid2/CollectedData_Me.csv: expected DeepLabCut's header rows \('scorer', "
     r"'individuals', 'bodyparts', 'coords'\)"),
    (lambda root: _replace(os.path.join(root, "labeled-data", "vid1", "CollectedData_Me.csv"),
                           "coords", "coordinates", count=1),
     r"vid1/CollectedData_Me.csv: expected DeepLabCut's header rows"),
    (lambda root: _replace(os.path.join(root, "config.yaml"), "  - leftEar", "  - ear"),
     r"skeleton entry \['snout', 'ear'\] must be two of the bodyparts"),
])
def test_bad_projects_name_the_file_and_record(data_dir, tmp_path, break_it, message):
  root = str(tmp_path / "project")
  os.makedirs(root)
  write_project(root)
  break_it(root)
  with pytest.raises((ValueError, FileNotFoundError), match=message):
    pipeline.get_source(dlc_config(data_dir, root).data)


def _replace(path, old, new, count=-1):
  with open(path) as f:
    text = f.read()
  assert old in text
  with open(path, "w") as f:
    f.write(text.replace(old, new, count))


def write_video(path, frames, fps=10):
  writer = predict.VideoWriter(path, fps)
  for frame in frames:
    writer.write(frame)
  writer.close()


def test_train_evaluate_and_predict_a_video(data_dir, project, tmp_path):
  root, truth = project
  config = dlc_config(data_dir, root)
  config.num_train_steps, config.batch_size, config.eval_batch_size = 4, 8, 4
  config.log_every_steps = config.eval_every_steps = config.checkpoint_every_steps = 4
  workdir = str(tmp_path / "run")
  summary = train.train_and_evaluate(config, workdir)
  for key in ("error_image_px", "rmse_image_px", "rmse_input_px", "error_image_px_baseline"):
    assert np.isfinite(summary[key]), key

  result = evaluation.evaluate_run(workdir, "test", likelihood_cutoff=0.0)
  assert result["kept_fraction"] == 1.0
  assert result["error_image_px_kept"] == pytest.approx(result["error_image_px"], rel=1e-4)
  assert set(result["per_keypoint"]) == set(BODYPARTS)
  assert "baseline_error_image_px" in result["per_keypoint"]["snout"]
  hidden = evaluation.evaluate_run(workdir, "test", str(tmp_path / "eval"), likelihood_cutoff=1.01)
  assert hidden["kept_fraction"] == 0.0 and hidden["error_image_px_kept"] is None

  frames = [np.asarray(Image.open(os.path.join(root, f)).convert("RGB")) for f in sorted(truth)]
  video = str(tmp_path / "session1.mp4")
  write_video(video, frames)
  out = str(tmp_path / "out")
  os.makedirs(out)
  predictor = predict.Predictor(workdir, likelihood_cutoff=0.0)
  got = predict.predict_video(predictor, video, out, batch_size=4)
  assert got["frames"] == len(frames) and got["frames_per_second"] > 0
  with open(got["csv"]) as f:
    rows = list(csv.reader(f))
  assert rows[0] == ["scorer"] + ["kp-jax"] * 12
  assert rows[1] == ["bodyparts"] + [b for b in BODYPARTS for _ in range(3)]
  assert rows[2] == ["coords"] + ["x", "y", "likelihood"] * 4
  assert [r[0] for r in rows[3:]] == [str(i) for i in range(len(frames))]
  values = np.array([[float(v) for v in r[1:]] for r in rows[3:]]).reshape(len(frames), 4, 3)
  assert np.all((values[..., 2] >= 0) & (values[..., 2] <= 1))
  # The decoded frames, predicted as images: the same keypoints and likelihoods (to the CSV's
  # 4 decimals), in the frame's pixels.
  _, decoded = predict.read_video(video)
  points, likelihood = predictor.on_images(np.stack(list(decoded)),
                                           predictor.crop_matrix(FRAME_HW))
  np.testing.assert_allclose(values[..., :2], points, atol=1e-4)
  np.testing.assert_allclose(values[..., 2], likelihood, atol=1e-4)
  with open(got["json"]) as f:
    np.testing.assert_allclose(np.array(json.load(f)["frames"], np.float64), values, atol=1e-4)
  with av.open(got["video"]) as container:
    decoded = list(container.decode(video=0))
  assert len(decoded) == len(frames)
  assert (decoded[0].height, decoded[0].width) == FRAME_HW  # already even: no padding

  # A cutoff above every likelihood leaves every coordinate empty, likelihoods kept.
  predict.write_deeplabcut_csv(str(tmp_path / "cut.csv"), BODYPARTS,
                               [exported.keypoint_values(p[:, :2], p[:, 2], 1.01)
                                for p in values])
  with open(tmp_path / "cut.csv") as f:
    row = list(csv.reader(f))[3]
  assert row[1:3] == ["", ""] and row[3] != ""
