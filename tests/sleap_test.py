"""SLEAP labels files (kp_jax/data/sleap.py), written here by sleap-io itself: a video's labelled
frames with one or two animals, a node marked not visible, a frame of predictions only; the
same project as a package with its frames embedded."""

import json
import os
from unittest import mock

import numpy as np
import pytest

from conftest import ANIMAL_OFFSETS, file_source_config
from deeplabcut_test import dlc_config, write_video
from video_test import write_turned_video
from kp_jax import exported, pick_frames, predict, train
from kp_jax.data import pipeline, sleap

sio = pytest.importorskip("sleap_io")

NODES = ("snout", "leftEar", "rightEar")  # ANIMAL_OFFSETS' three dots
FRAME_HW = (48, 64)
CENTRES = {0: [(20.0, 20.0)], 1: [(22.0, 21.0), (46.0, 30.0)], 2: [(24.0, 22.0)],
           3: [(26.0, 23.0)], 4: [(28.0, 24.0), (44.0, 32.0)]}  # frame -> animals' centres


def animal_frame(centres) -> np.ndarray:
  frame = np.full((*FRAME_HW, 3), 40, np.uint8)
  for x, y in centres:
    frame[int(y) - 7:int(y) + 7, int(x) - 7:int(x) + 7] = 200
  return frame


@pytest.fixture
def labels_file(tmp_path, monkeypatch):
  """A SLEAP project of a 6-frame video: frames 0-4 labelled (the animals of CENTRES, frame 2's
  right ear marked not visible), frame 5 with a predicted instance only."""
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
  video_path = str(tmp_path / "arena.mp4")
  write_video(video_path, [animal_frame(CENTRES.get(i, [(30.0, 25.0)])) for i in range(6)])
  skeleton = sio.Skeleton(list(NODES), edges=[("snout", "leftEar"), ("snout", "rightEar")],
                          symmetries=[("leftEar", "rightEar")])
  video = sio.Video.from_filename(video_path)
  truth, frames = {}, []
  for index, centres in CENTRES.items():
    points = [np.array(c) + ANIMAL_OFFSETS + 0.25 for c in centres]
    if index == 2:
      points[0][2] = np.nan
    truth[index] = points
    frames.append(sio.LabeledFrame(video=video, frame_idx=index, instances=[
        sio.Instance.from_numpy(p, skeleton=skeleton) for p in points]))
  frames.append(sio.LabeledFrame(video=video, frame_idx=5, instances=[
      sio.PredictedInstance.from_numpy(np.array((30.0, 25.0)) + ANIMAL_OFFSETS, skeleton=skeleton,
                                       point_scores=np.ones(3), score=1.0)]))
  path = str(tmp_path / "labels.v001.slp")
  sio.save_slp(sio.Labels(labeled_frames=frames, videos=[video], skeletons=[skeleton]), path)
  return path, truth


def sleap_config(data_dir, path, **data):
  return file_source_config(data_dir, "sleap", project=path, box_padding=1.0, **data)


def examples_by_frame(source, split):
  found = {}
  for example in source.load(split, 0, 1).as_numpy_iterator():
    found.setdefault(int(example["image_id"]), []).append(example)
  return found


def test_a_sleap_project_reads_as_it_was_labelled(data_dir, labels_file):
  path, truth = labels_file
  source = pipeline.get_source(sleap_config(data_dir, path, train_fraction=0.8).data)
  assert source.spec.names == NODES
  assert source.spec.skeleton == (("snout", "leftEar"), ("snout", "rightEar"))
  assert source.spec.flip_pairs == (("leftEar", "rightEar"),)  # the skeleton's symmetry
  # Five labelled frames ("arena.mp4/0" ... "/4", sorted); 0.8 holds out every 5th: frame 4.
  assert source.split_sizes == {"train": 5, "test": 2, "validation": 2}
  assert source.images is not None  # frames of two animals: the centre model's view of frames
  _, decoded = exported.read_video(os.path.dirname(path) + "/arena.mp4")
  decoded = list(decoded)
  for split, frames in (("train", (0, 1, 2, 3)), ("test", (4,))):
    found = examples_by_frame(source, split)
    assert sorted(found) == list(frames)  # image ids are the sorted frames' positions
    for index in frames:
      examples = found[index]
      assert len(examples) == len(truth[index])  # a frame's animals share its image id
      for example, points in zip(examples, truth[index]):
        np.testing.assert_array_equal(example["visible"], np.isfinite(points[:, 0]))
        np.testing.assert_array_equal(example["keypoints"],
                                      np.nan_to_num(points).astype(np.float32))
        # The labelled frame (its neighbours differ by 160 where the animals moved): sleap-io's
        # decoder (OpenCV's FFmpeg) and kp-jax's (PyAV's) gave the same pixels here; their
        # YUV-to-RGB conversions may differ by a level or two elsewhere.
        assert np.abs(example["image"].astype(int) - decoded[index]).max() <= 3
  # configs/deeplabcut.py's source given the .slp file reads it as SLEAP's.
  as_deeplabcut = sleap_config(data_dir, path, train_fraction=0.8).data
  as_deeplabcut.source = "deeplabcut"
  assert sleap.reads(as_deeplabcut) and not sleap.reads(dlc_config(data_dir, "/p/Mouse").data)
  again = pipeline.get_source(as_deeplabcut)
  assert (again.spec, again.split_sizes) == (source.spec, source.split_sizes)


def test_frames_are_read_once_and_a_package_reads_as_its_project(data_dir, labels_file, tmp_path):
  path, _ = labels_file
  config = sleap_config(data_dir, path, train_fraction=0.8).data
  first = pipeline.get_source(config)
  folder = sleap.frames_folder(sio.load_slp(path).videos[0])
  written = {f: os.stat(os.path.join(folder, f)).st_mtime_ns for f in os.listdir(folder)}
  assert len(written) == 5  # the labelled frames, not the one of predictions only
  # The labels saved again (as SLEAP does at every edit): the frames are not read again.
  labels = sio.load_slp(path)
  config.project = str(tmp_path / "labels.v002.slp")
  sio.save_slp(labels, config.project)
  pipeline.get_source(config)
  assert {f: os.stat(os.path.join(folder, f)).st_mtime_ns for f in os.listdir(folder)} == written
  # The same labels with their frames embedded (SLEAP's "labels package"): the same examples.
  package = str(tmp_path / "labels.pkg.slp")
  sio.save_slp(sio.load_slp(path), package, embed="user")
  config.project = package
  embedded = pipeline.get_source(config)
  assert sleap.frames_folder(sio.load_slp(package).videos[0]) != folder
  for split in ("train", "test"):
    for a, b in zip(first.load(split, 0, 1).as_numpy_iterator(),
                    embedded.load(split, 0, 1).as_numpy_iterator(), strict=True):
      for key in ("image", "keypoints", "visible", "image_id"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_frames_are_named_by_their_video_and_index():
  # Two sessions' videos of one name: named by their paths; one of its own name: by that name.
  videos = [sio.Video(filename=f, open_backend=False)
            for f in ("/data/s1/cam.mp4", "/data/s2/cam.mp4", "/data/s2/top.mp4")]
  assert [sleap.frame_name(v, 7, videos) for v in videos] == [
      "/data/s1/cam.mp4/7", "/data/s2/cam.mp4/7", "top.mp4/7"]
  # An image sequence (a DeepLabCut project's labelled frames): its folder and image.
  images = sio.Video(filename=["/p/labeled-data/v1/img005.png", "/p/labeled-data/v1/img020.png"],
                     open_backend=False)
  assert sleap.frame_name(images, 1, videos + [images]) == "v1/img020.png"


def test_a_run_trains_on_a_sleap_project(data_dir, labels_file, tmp_path, monkeypatch):
  path, _ = labels_file
  config = sleap_config(data_dir, path, train_fraction=0.8, channels=1)
  config.num_train_steps = config.eval_every_steps = config.checkpoint_every_steps = 2
  config.batch_size, config.eval_batch_size, config.optimizer.warmup_steps = 4, 4, 1
  config.data.test_frames = ("arena.mp4/1",)  # a frame by its name, in place of the fraction
  assert list(examples_by_frame(pipeline.get_source(config.data), "test")) == [1]
  summary = train.train_and_evaluate(config, str(tmp_path / "run"))
  for key in ("error_image_px", "error_image_px_baseline"):
    assert np.isfinite(summary[key]), key
  # predict on the project's video: beside the CSV and JSON, the predictions as SLEAP's file.
  out = predict.predict_video(predict.Predictor(str(tmp_path / "run"), likelihood_cutoff=0.5),
                              os.path.join(os.path.dirname(path), "arena.mp4"),
                              str(tmp_path / "pred"))
  want = predict.trajectory(json.load(open(out["json"]))["frames"])
  predicted = sio.load_slp(out["slp"])
  # The project's own skeleton (its symmetry too): merged into the project, one skeleton.
  project = sio.load_slp(path)
  assert predicted.skeletons[0].matches(project.skeletons[0], require_same_order=True)
  project.merge(predicted)
  assert len(project.skeletons) == 1
  assert [f.frame_idx for f in predicted.labeled_frames] == list(range(6))
  for frame, points in zip(predicted.labeled_frames, want):
    (instance,) = frame.predicted_instances
    np.testing.assert_allclose(instance.numpy(scores=True), points, rtol=1e-6)  # NaN: missing
    assert instance.score == pytest.approx(points[:, 2].mean(), rel=1e-6)
    assert instance.track is None
  # Predicting where sleap-io is not installed: the CSV and JSON, and a warning, not a failure.
  monkeypatch.setattr(sleap, "installed", lambda: False)
  out = predict.predict_video(predict.Predictor(str(tmp_path / "run")),
                              os.path.join(os.path.dirname(path), "arena.mp4"),
                              str(tmp_path / "elsewhere"))
  assert "slp" not in out and os.path.exists(out["json"]) and os.path.exists(out["csv"])


def test_tracked_predictions_become_sleap_tracks(tmp_path):
  video = str(tmp_path / "arena.mp4")
  write_video(video, [animal_frame(CENTRES[1])] * 2)
  points = np.array([[1.0, 2.0], [np.nan, np.nan], [5.0, 6.0]])
  likelihood = np.array([0.9, 0.1, 0.8])
  frames = [[(1, 0.7, points, likelihood), (2, 0.6, points + 10, likelihood)],
            [(2, 0.5, points + 11, likelihood)]]
  path = str(tmp_path / "arena.predictions.slp")
  gone = str(tmp_path / "moved_away.slp")  # the project trained on, not on this machine
  with mock.patch.object(sleap.logging, "warning") as warning:
    sleap.write_predictions(path, video, gone, NODES, ((0, 1), (0, 2)), frames)
  assert "moved_away.slp (config.data.project) is not here" in (
      warning.call_args[0][0] % warning.call_args[0][1:])
  labels = sio.load_slp(path)
  assert [t.name for t in labels.tracks] == ["track1", "track2"]
  assert labels.skeletons[0].edge_names == [("snout", "leftEar"), ("snout", "rightEar")]
  for frame, want in zip(labels.labeled_frames, frames, strict=True):
    got = [(x.track.name, x.score, x.numpy(scores=True)) for x in frame.predicted_instances]
    for (name, score, array), (track, wanted_score, p, l) in zip(got, want, strict=True):
      assert (name, score) == (f"track{track}", pytest.approx(wanted_score))
      np.testing.assert_allclose(array, np.concatenate([p, l[:, None]], -1))


def test_bad_labels_files_say_what_to_do(data_dir, labels_file, tmp_path):
  path, _ = labels_file
  config = sleap_config(data_dir, path, train_fraction=0.8).data
  config.project = str(tmp_path / "missing.slp")
  with pytest.raises(FileNotFoundError, match=r"config.data.project=.*missing.slp: no such "
                     r"file; give the SLEAP labels file \(\.slp or \.pkg\.slp\)"):
    pipeline.get_source(config)
  (tmp_path / "notes.slp").write_text("not HDF5")
  config.project = str(tmp_path / "notes.slp")
  with pytest.raises(ValueError, match="notes.slp is not a SLEAP labels file"):
    pipeline.get_source(config)
  labels = sio.load_slp(path)
  labels.skeletons.append(sio.Skeleton(["a", "b"], name="second"))
  config.project = str(tmp_path / "two.slp")
  sio.save_slp(labels, config.project)
  with pytest.raises(ValueError, match="has 2 skeletons"):
    pipeline.get_source(config)
  config.project, config.test_frames = path, ("arena.mp4/9",)
  with pytest.raises(ValueError, match=r"test_frames names frames not labelled.*arena.mp4/9"):
    pipeline.get_source(config)
  config.test_frames = ()
  # A project moved to another machine: its video is found beside the labels file, else named.
  moved = tmp_path / "moved"
  moved.mkdir()
  os.replace(path, moved / "labels.slp")
  os.replace(tmp_path / "arena.mp4", moved / "arena.mp4")
  config.project = path = str(moved / "labels.slp")
  assert pipeline.get_source(config).split_sizes["train"] == 5
  os.remove(moved / "arena.mp4")
  with pytest.raises(FileNotFoundError, match=r"labels.slp: the videos of its labelled frames "
                     r"are not found.*arena.mp4.*\.pkg\.slp"):
    pipeline.get_source(config)


def test_frames_to_label_become_suggestions_in_a_new_version_of_the_labels(labels_file,
                                                                            tmp_path):
  path, _ = labels_file
  original = open(path, "rb").read()
  # Frames 0-4 are labelled: of the project's video only frame 5 (predictions only) is left.
  first = pick_frames.pick_frames(path, str(tmp_path / "arena.mp4"), 3)
  assert first["frames"] == [5] and first["labels"] == str(tmp_path / "labels.v002.slp")
  assert open(path, "rb").read() == original  # the file given is left as it was
  labels = sio.load_slp(first["labels"])
  assert [(s.video.filename, s.frame_idx) for s in labels.suggestions] == [
      (str(tmp_path / "arena.mp4"), 5)]
  assert [len(f.user_instances) for f in labels.labeled_frames] == [1, 2, 1, 1, 2, 0]
  assert len(labels.find(labels.videos[0], 5)[0].predicted_instances) == 1  # kept
  again = pick_frames.pick_frames(first["labels"], str(tmp_path / "arena.mp4"), 3)
  assert again["frames"] == [] and "labels" not in again  # suggested already: nothing written
  assert not os.path.exists(tmp_path / "labels.v003.slp")

  # A new video, with a run's tracked predictions: two animals, the second jumping 30 px at
  # frame 3 and back at 4, the first unseen at frame 1.
  video = str(tmp_path / "new_session.mp4")
  write_video(video, [animal_frame([(20.0, 20.0), (44.0, 30.0)])] * 6)
  def animal(track, x, y):
    return {"track": track, "score": 0.9, "keypoints": {
        n: [x + dx, y + dy, 0.5 + 0.1 * k] for k, (n, (dx, dy)) in enumerate(zip(
            NODES, ANIMAL_OFFSETS))}}
  frames = [[animal(0, 20.0, 20.0), animal(3, 44.0, 30.0)] for _ in range(6)]
  frames[3][1] = animal(3, 44.0, 60.0)
  del frames[1][0]
  predictions = tmp_path / "new_session_keypoints.json"
  predictions.write_text(json.dumps({"keypoints": list(NODES), "tracks": [0, 3],
                                     "frames": frames, "likelihood_cutoff": 0.1}))
  second = pick_frames.pick_frames(first["labels"], video, 2, str(predictions), epsilon=20.0)
  assert second["frames"] == [3, 4] and second["labels"] == str(tmp_path / "labels.v003.slp")
  labels = sio.load_slp(second["labels"])
  new = [v for v in labels.videos if v.filename == video]
  assert len(labels.videos) == 2 and len(new) == 1  # added beside the project's video
  assert [(s.video.filename, s.frame_idx) for s in labels.suggestions] == [
      (str(tmp_path / "arena.mp4"), 5), (video, 3), (video, 4)]
  assert sorted(t.name for t in labels.tracks) == ["track0", "track3"]
  for index in (3, 4):
    got = {x.track.name: x for x in labels.find(new[0], index)[0].predicted_instances}
    for track, want in zip((0, 3), frames[index]):
      array = got[f"track{track}"].numpy(scores=True)
      np.testing.assert_allclose(array, [want["keypoints"][n] for n in NODES])
      assert got[f"track{track}"].score == pytest.approx(0.6)  # the points' mean likelihood
  def sizes(labels_path):
    config = sleap_config(str(tmp_path / "data"), labels_path, train_fraction=0.8)
    return pipeline.get_source(config.data).split_sizes
  assert sizes(second["labels"]) == sizes(path)  # predicted instances are not labels

  # Given where to save (as the command does for its second video), the suggestions join there.
  joined = pick_frames.pick_frames(second["labels"], video, 1, out=second["labels"])
  assert joined["labels"] == second["labels"] and len(joined["frames"]) == 1
  assert len(sio.load_slp(second["labels"]).suggestions) == 4


def test_frames_are_not_suggested_into_a_package_or_from_another_projects_run(labels_file,
                                                                               tmp_path):
  path, _ = labels_file
  package = str(tmp_path / "labels.pkg.slp")
  sio.load_slp(path).save(package, embed="user")
  with pytest.raises(ValueError, match=r"labels.pkg.slp: a labels package.*project's \.slp"):
    pick_frames.pick_frames(package, str(tmp_path / "arena.mp4"), 2)
  with pytest.raises(FileNotFoundError, match=r"--project=.*labels.v01.slp: no such file"):
    pick_frames.pick_frames(str(tmp_path / "labels.v01.slp"), str(tmp_path / "arena.mp4"), 2)
  predictions = tmp_path / "arena_keypoints.json"
  predictions.write_text(json.dumps({"keypoints": ["nose", "tail"],
                                     "frames": [[[1.0, 2.0, 0.9]] * 2] * 6}))
  with pytest.raises(ValueError, match=r"arena_keypoints.json: keypoints \['nose', 'tail'\], "
                     r"the skeleton of .*labels.v001.slp has \['snout', 'leftEar', 'rightEar'\]"):
    pick_frames.pick_frames(path, str(tmp_path / "arena.mp4"), 2, str(predictions))
  # Keypoints made on a phone video's frames as stored, where SLEAP shows them turned.
  write_turned_video(tmp_path / "phone.mp4", 90)
  predictions.write_text(json.dumps({"keypoints": list(NODES), "upright": False,
                                     "frames": [[[1.0, 2.0, 0.9]] * 3] * 4}))
  with pytest.raises(ValueError, match=r"arena_keypoints.json: made on .*phone.mp4's frames "
                     "as stored.*--config.data.upright=True"):
    pick_frames.pick_frames(path, str(tmp_path / "phone.mp4"), 2, str(predictions))
  assert not os.path.exists(tmp_path / "labels.v002.slp")
  predictions.write_text(json.dumps({"keypoints": list(NODES), "upright": False,
                                     "frames": [[[1.0, 2.0, 0.9]] * 3] * 6}))
  stored = pick_frames.pick_frames(path, str(tmp_path / "arena.mp4"), 1, str(predictions),
                                   by="uncertain", p_bound=1.0)
  assert stored["frames"] == [5]  # a video not turned: frames as stored are as SLEAP shows them
  frame = sio.load_slp(stored["labels"]).find(sio.load_slp(path).videos[0].filename, 5)[0]
  np.testing.assert_allclose([x.numpy(scores=True) for x in frame.instances],  # replaced
                             [[[1.0, 2.0, 0.9]] * 3])


def test_the_video_to_pick_from_is_the_projects_by_file_then_where_moved_by_name(tmp_path):
  def video(path, frames=1):
    write_video(str(path), [animal_frame([(20.0, 20.0)])] * frames)
    return sio.Video.from_filename(str(path))
  for day in ("day1", "day2", "moved"):
    (tmp_path / day).mkdir()
  day1 = video(tmp_path / "day1" / "cam0.mp4")
  video(tmp_path / "day2" / "cam0.mp4", 2)
  gone = sio.Video.from_filename(str(tmp_path / "old" / "top.mp4"))  # moved since labelling
  labels = sio.Labels(videos=[day1, gone])
  assert sleap.project_video(labels, str(tmp_path / "day1" / "cam0.mp4")) is day1
  other = sleap.project_video(labels, str(tmp_path / "day2" / "cam0.mp4"))  # same name, not day1
  assert other is not day1 and other.filename == str(tmp_path / "day2" / "cam0.mp4")
  assert labels.videos == [day1, gone, other]
  video(tmp_path / "moved" / "top.mp4")
  assert sleap.project_video(labels, str(tmp_path / "moved" / "top.mp4")) is gone
  assert gone.filename == str(tmp_path / "moved" / "top.mp4") and len(labels.videos) == 3


def test_a_new_project_gets_its_first_frames_to_label_before_it_has_a_skeleton(tmp_path):
  video = str(tmp_path / "arena.mp4")
  write_video(video, [animal_frame([(20.0 + 6 * i, 20.0)]) for i in range(6)])
  path = str(tmp_path / "new project.slp")  # no version in the name: SLEAP's "copy"
  sio.save_slp(sio.Labels(videos=[sio.Video.from_filename(video)]), path)
  picked = pick_frames.pick_frames(path, video, 3)
  assert picked["labels"] == str(tmp_path / "new project copy.slp")
  labels = sio.load_slp(picked["labels"])
  assert len(picked["frames"]) == 3
  assert [s.frame_idx for s in labels.suggestions] == picked["frames"]
  assert not labels.skeletons and len(labels.videos) == 1
  again = pick_frames.pick_frames(path, video, 3)  # from the same file: the next copy's name
  assert again["labels"] == str(tmp_path / "new project copy copy.slp")
