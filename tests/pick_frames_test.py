"""kp_jax/pick_frames.py: which frames each criterion flags (hand-counted), one frame of each
look, DeepLabCut's file names, and the frames and machine labels a run's predictions give."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from conftest import write_deeplabcut_labels
from deeplabcut_test import BODYPARTS, FRAME_HW, dlc_config, write_project
from kp_jax import pick_frames, predict
from kp_jax.data import deeplabcut, pipeline
from kp_jax.exported import read_video
from video_test import dot_x, write_moving_dot, write_turned_video


def track(frames: int = 9) -> np.ndarray:
  """[F, 2, 3]: keypoint 0 runs steadily at 25 px a frame; keypoint 1 stands at (50, 50) but
  is 30 px off at frame 4 alone, doubtful (likelihood 0.05) at frame 6 and missing at frame 7."""
  t = np.zeros((frames, 2, 3))
  t[:, 0] = np.stack([25.0 * np.arange(frames), np.full(frames, 10.0), np.full(frames, 0.9)], 1)
  t[:, 1] = [50.0, 50.0, 0.9]
  t[4, 1, 0] = 80.0
  t[6, 1, 2] = 0.05
  t[7, 1, :2] = np.nan
  return t


def test_each_criterion_flags_the_frames_counted_by_hand():
  flags, badness = pick_frames.outliers(track(), "jump", 20.0, 0.1)
  expected = np.zeros((9, 2), bool)
  expected[1:, 0] = True  # 25 px every frame from the one before
  expected[[4, 5], 1] = True  # 30 px out at frame 4, 30 px back at 5; frame 7 missing: no move
  np.testing.assert_array_equal(flags, expected)
  np.testing.assert_allclose(badness[4], 30.0 - 20.0)

  flags, badness = pick_frames.outliers(track(), "fitting", 20.0, 0.1)
  expected = np.zeros((9, 2), bool)
  expected[4, 1] = True  # the steady run is its own median; the excursion is 30 px off it
  np.testing.assert_array_equal(flags, expected)  # frames 0, 1, 7, 8 not judged
  np.testing.assert_allclose(badness[4], 10.0)

  flags, badness = pick_frames.outliers(track(), "uncertain", 20.0, 0.1)
  expected = np.zeros((9, 2), bool)
  expected[6, 1] = True
  np.testing.assert_array_equal(flags, expected)
  np.testing.assert_allclose(badness[6], 0.1 - (0.9 + 0.05) / 2)  # ranked by the mean
  with pytest.raises(ValueError, match="--by 'wobble': choose one of"):
    pick_frames.outliers(track(), "wobble", 20.0, 0.1)


def test_one_frame_of_each_look_the_worst_or_the_most_typical():
  rng = np.random.default_rng(0)
  looks = np.repeat([0.0, 100.0, 200.0], 4)  # three looks, four frames of each
  features = looks[:, None] + rng.normal(0, 3, (12, 16))
  badness = rng.uniform(size=12)
  picked = pick_frames.pick(features, 3, badness)
  assert sorted(looks[picked]) == [0.0, 100.0, 200.0]
  for i in picked:  # the worst of its look
    assert badness[i] == badness[looks == looks[i]].max()
  typical = pick_frames.pick(features, 3)
  for i in typical:
    members = np.flatnonzero(looks == looks[i])
    centre = features[members].mean(0)
    assert i == members[np.argmin(np.linalg.norm(features[members] - centre, axis=1))]
  np.testing.assert_array_equal(pick_frames.pick(features[:2], 3), [0, 1])
  np.testing.assert_array_equal(pick_frames.uniform(np.arange(10, 20), 4), [10, 13, 16, 19])


def test_frame_names_are_deeplabcuts():
  # DeepLabCut: "img" + str(index).zfill(ceil(log10(frame count))) + ".png"
  assert pick_frames.frame_name(5, 994) == "img005.png"
  assert pick_frames.frame_name(999, 1000) == "img999.png"
  assert pick_frames.frame_name(12, 101) == "img012.png"
  assert pick_frames.frame_name(3, 10) == "img3.png"


def test_diverse_frames_of_a_new_video(tmp_path):
  video = tmp_path / "dot.mp4"
  write_moving_dot(video, 30)
  result = pick_frames.pick_frames(str(tmp_path / "project"), str(video), count=5)
  folder = tmp_path / "project" / "labeled-data" / "dot"
  assert result["folder"] == str(folder) and result["video_frames"] == 30
  numbers = [int(name[3:-4]) for name in result["frames"]]
  assert len(numbers) == 5 and numbers == sorted(numbers)
  assert numbers[-1] - numbers[0] >= 15  # spread over the dot's path, not bunched
  _, frames = read_video(str(video))
  frames = list(frames)
  for name, number in zip(result["frames"], numbers):
    saved = np.asarray(Image.open(folder / name))
    np.testing.assert_array_equal(saved, frames[number])  # the frame as decoded
    assert dot_x(saved[..., :1]) == dot_x(frames[number][..., :1])


def test_frames_where_a_run_jumps_with_its_keypoints_as_machine_labels(trained, tmp_path,
                                                                       monkeypatch):
  _, workdir, _ = trained
  video = tmp_path / "session.mp4"
  write_moving_dot(video, 12, size=(64, 64))
  predictor = predict.Predictor(workdir, likelihood_cutoff=0.0)
  out = predict.predict_video(predictor, str(video), str(tmp_path / "out"))
  predicted = json.loads(open(out["json"]).read())
  names = predicted["keypoints"]
  assert predicted["likelihood_cutoff"] == 0.0  # as asked; beside it, the run's own
  assert predicted["run_likelihood_cutoff"] == json.load(
      open(os.path.join(workdir, "config.json")))["likelihood_cutoff"]
  project = tmp_path / "project"
  # A bound of -1 px makes every frame after the first a candidate: the picks then depend on
  # the clustering alone, and a second call must find others.
  every = {"by": "jump", "epsilon": -1.0}
  first = pick_frames.pick_frames(str(project), str(video), 4, out["json"], **every)
  assert first["candidates"] == 11 and len(first["frames"]) == 4
  assert "img00.png" not in first["frames"]
  labels = deeplabcut.read_labels(first["machine_labels"], names)
  assert [frame for frame, *_ in labels] == [f"labeled-data/session/{f}" for f in first["frames"]]
  for (frame, _, points, visible, _), name in zip(labels, first["frames"]):
    want = np.array(predicted["frames"][int(name[3:-4])], float)[:, :2]
    np.testing.assert_allclose(points, want, atol=6e-5)  # written to 4 decimals
    assert visible.all()
  folder = project / "labeled-data" / "session"
  before = {f: (folder / f).read_bytes() for f in first["frames"]}
  second = pick_frames.pick_frames(str(project), str(video), 4, out["json"], **every)
  assert second["candidates"] == 7 and not set(second["frames"]) & set(first["frames"])
  assert all((folder / f).read_bytes() == b for f, b in before.items())  # nothing overwritten

  clustered = []  # the badness of the frames the clustering chose among
  def spy(features, count, badness, seed):
    clustered.append(badness)
    return pick(features, count, badness, seed)
  pick = pick_frames.pick
  monkeypatch.setattr(pick_frames, "pick", spy)
  judged = pick_frames.pick_frames(str(tmp_path / "p2"), str(video), 2, out["json"],
                                   **every, keypoints=names[:1])
  assert set(judged["keypoints"]) == {names[0]} and len(judged["frames"]) == 2
  xy = np.array([frame[0][:2] for frame in predicted["frames"]])
  moves = np.sort(np.linalg.norm(np.diff(xy, axis=0), axis=1))[::-1]
  np.testing.assert_allclose(np.sort(clustered[0])[::-1] - 1.0,  # badness: move - (-1 px)
                             moves[:2 * pick_frames.POOL], atol=1e-5)  # the worst 3 x count
  with pytest.raises(ValueError, match=r"--keypoints \['tail'\]: not the run's keypoints"):
    pick_frames.pick_frames(str(project), str(video), 4, out["json"], keypoints=["tail"])
  none = pick_frames.pick_frames(str(tmp_path / "p3"), str(video), 2, out["json"], epsilon=1e6)
  assert none["candidates"] == 0 and none["frames"] == []
  assert not (tmp_path / "p3").exists()  # nothing written
  other = tmp_path / "other.mp4"
  write_moving_dot(other, 8, size=(64, 64))
  with pytest.raises(ValueError, match=r"holds 12 frames, .*other.mp4 has 8"):
    pick_frames.pick_frames(str(project), str(other), 4, out["json"])
  (tmp_path / "bad.json").write_text("{}")
  with pytest.raises(ValueError, match="bad.json: not a video's predictions"):
    pick_frames.pick_frames(str(project), str(video), 4, str(tmp_path / "bad.json"))


def test_tracks_of_several_animals_are_judged_and_written_per_animal(tmp_path):
  video = tmp_path / "pair.mp4"
  write_moving_dot(video, 6)
  def animal(track, x):
    return {"track": track, "score": 0.9, "keypoints": {"nose": [x, 5.0, 0.9],
                                                         "tail": [x + 10, 5.0, 0.8]}}
  frames = [[animal(0, 10.0), animal(3, 40.0)] for _ in range(6)]
  frames[3][1] = animal(3, 70.0)  # track 3 jumps 30 px at frame 3 and back at 4
  del frames[1][0]  # track 0 unseen in frame 1
  predictions = tmp_path / "pair_keypoints.json"
  predictions.write_text(json.dumps({"keypoints": ["nose", "tail"], "tracks": [0, 3],
                                     "frames": frames, "likelihood_cutoff": 0.1}))
  read = pick_frames.read_predictions(str(predictions))
  assert read["individuals"] == ["track0", "track3"] and read["trajectory"].shape == (6, 4, 3)
  assert np.isnan(read["trajectory"][1, :2]).all() and read["trajectory"][3, 2, 0] == 70.0
  result = pick_frames.pick_frames(str(tmp_path / "p"), str(video), 5, str(predictions))
  assert result["frames"] == ["img3.png", "img4.png"]  # DeepLabCut: one digit for 6 frames
  assert result["keypoints"] == {"nose": 2, "tail": 2}
  assert result["missing"] == pytest.approx(2 / 24)  # track 0's two keypoints in frame 1
  labels = deeplabcut.read_labels(result["machine_labels"], ["nose", "tail"])
  assert [(frame, who) for frame, who, *_ in labels] == [
      ("labeled-data/pair/img3.png", "track0"), ("labeled-data/pair/img3.png", "track3"),
      ("labeled-data/pair/img4.png", "track0"), ("labeled-data/pair/img4.png", "track3")]
  np.testing.assert_allclose(labels[1][2], [[70.0, 5.0], [80.0, 5.0]])


def test_predictions_are_found_in_predicts_output_folder(tmp_path):
  (tmp_path / "session1_keypoints.json").write_text("{}")
  assert pick_frames.predictions_file(str(tmp_path), "videos/session1.mp4") == str(
      tmp_path / "session1_keypoints.json")
  assert pick_frames.predictions_file("a/s_keypoints.json", "videos/s.mp4") == \
      "a/s_keypoints.json"
  assert pick_frames.predictions_file(None, "videos/s.mp4") is None


def test_picked_frames_once_labelled_train_and_leave_the_held_out_frames(data_dir, tmp_path):
  root = str(tmp_path / "MouseProject")
  os.makedirs(root)
  before = sorted(write_project(root))  # vid1's 6 frames, vid2's 4: the 5th and 10th held out
  write_moving_dot(tmp_path / "vid3.mp4", 12, size=FRAME_HW)
  picked = pick_frames.pick_frames(root, str(tmp_path / "vid3.mp4"), 3)["frames"]
  rows = [["labeled-data", "vid3", name, "5", "6", "7", "8", "9", "10", "", ""]
          for name in picked]  # as a labeller saves them: tailbase left out
  write_deeplabcut_labels(os.path.join(root, "labeled-data", "vid3", "CollectedData_Me.csv"),
                          BODYPARTS, rows, 3)
  source = pipeline.get_source(dlc_config(data_dir, root).data)
  assert source.split_sizes == {"train": 11, "test": 2, "validation": 2}
  frames = before + [f"labeled-data/vid3/{name}" for name in picked]
  test = [frames[int(e["image_id"])] for e in source.load("test", 0, 1).as_numpy_iterator()]
  assert sorted(test) == [before[4], before[9]]  # new frames sort after: the same held out


@pytest.mark.parametrize("upright", [True, False])
def test_frames_are_written_turned_as_the_predictions_were_made(tmp_path, upright):
  write_turned_video(tmp_path / "phone.mp4", 90)
  frames = [[[5.0 + 10 * i, 5.0, 0.9]] for i in range(4)]  # a 10 px move a frame
  predictions = tmp_path / "phone_keypoints.json"
  predictions.write_text(json.dumps({"keypoints": ["nose"], "frames": frames,
                                     "likelihood_cutoff": 0.1, "upright": upright}))
  result = pick_frames.pick_frames(str(tmp_path / "p"), str(tmp_path / "phone.mp4"), 1,
                                   str(predictions), epsilon=5.0)
  saved = Image.open(tmp_path / "p" / "labeled-data" / "phone" / result["frames"][0])
  assert saved.size == ((24, 40) if upright else (40, 24))  # (width, height)


def test_uncertain_bound_defaults_to_the_runs_cutoff_where_predictions_were_written_whole(
    tmp_path):
  video = tmp_path / "whole.mp4"
  write_moving_dot(video, 6)
  likelihoods = [0.9, 0.2, 0.9, 0.4, 0.9, 0.9]  # under the run's 0.5 at frames 1 and 3
  frames = [[[10.0, 5.0, p]] for p in likelihoods]
  predictions = tmp_path / "whole_keypoints.json"
  predictions.write_text(json.dumps({"keypoints": ["nose"], "frames": frames,
                                     "likelihood_cutoff": 0.0, "run_likelihood_cutoff": 0.5}))
  result = pick_frames.pick_frames(str(tmp_path / "p"), str(video), 5, str(predictions),
                                   by="uncertain")
  assert result["p_bound"] == 0.5 and result["frames"] == ["img1.png", "img3.png"]
  written_with = json.loads(predictions.read_text())
  written_with["likelihood_cutoff"] = 0.3  # the predictions' own cutoff comes first
  predictions.write_text(json.dumps(written_with))
  result = pick_frames.pick_frames(str(tmp_path / "q"), str(video), 5, str(predictions),
                                   by="uncertain")
  assert result["p_bound"] == 0.3 and result["frames"] == ["img1.png"]
