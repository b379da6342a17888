"""kp_jax/data/video.py's unlabelled clips: consecutive frames, unreadable and truncated videos,
the clips beside the labelled batches, and a run that trains on them."""

import os

import av
import cv2
import numpy as np
import pytest
import tensorflow as tf

from conftest import file_source_config
from deeplabcut_test import BODYPARTS, FRAME_HW, write_project
from kp_jax import exported, predict, train, unsupervised
from kp_jax.data import pipeline, video


def write_moving_dot(path, frames: int, size=FRAME_HW):
  """A video whose frame i shows a bright 5x5 square at x = 4 + i (its index on screen)."""
  writer = exported.VideoWriter(str(path), 10)
  for i in range(frames):
    image = np.full((*size, 3), 20, np.uint8)
    image[10:15, 4 + i:9 + i] = 230
    writer.write(image)
  writer.close()


def write_turned_video(path, rotation: int) -> np.ndarray:
  """4 random landscape frames (24x40), stored losslessly with `rotation` in the display
  matrix, as phones store portrait video; returns the stored frames."""
  stored = np.random.default_rng(0).integers(0, 255, (4, 24, 40, 3), np.uint8)
  with av.open(str(path), "w") as container:
    stream = container.add_stream("libx264", rate=10)
    stream.width, stream.height, stream.pix_fmt = 40, 24, "yuv444p"
    stream.options = {"crf": "0"}  # lossless
    stream.set_display_rotation(rotation)
    for frame in stored:
      container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
    container.mux(stream.encode())
  return stored


def dot_x(frame) -> float:
  """The dot's left edge in a decoded gray frame [h, w, 1]."""
  return float(np.flatnonzero(frame[12, :, 0] > 128)[0])


def test_clips_are_consecutive_frames_from_a_random_offset(tmp_path):
  path = tmp_path / "dot.mp4"
  write_moving_dot(path, 30)
  clips = list(video.interleaved_clips([str(path)], 4, 1, seed=0, epoch=0))
  starts = [dot_x(c[0]) - 4 for c in clips]
  for clip, start in zip(clips, starts):
    assert clip.shape == (4, *FRAME_HW, 1) and clip.dtype == np.uint8
    assert [dot_x(f) - 4 for f in clip] == [start + i for i in range(4)]  # consecutive
  assert np.all(np.diff(starts) == 4) and 0 <= starts[0] < 4  # from an offset, no overlap
  epochs = {dot_x(next(video.interleaved_clips([str(path)], 4, 1, 0, e))[0]) for e in range(8)}
  assert len(epochs) > 1  # another offset from epoch to epoch


def test_the_writer_keeps_frames_in_order_and_raises_a_drawings_error(tmp_path):
  """Frames given as callables are drawn on the writer's thread, in the order written; a
  drawing that fails raises at close, not silently."""
  path = tmp_path / "drawn.mp4"
  writer = exported.VideoWriter(str(path), 10, ahead=3)
  for i in range(12):  # arrays and drawings mixed, more than `ahead` of them
    image = np.full((*FRAME_HW, 3), 20, np.uint8)
    image[10:15, 4 + i:9 + i] = 230
    writer.write(image if i % 2 else (lambda image=image: image))
  writer.close()
  assert [dot_x(f) for f in exported.read_video(str(path))[1]] == [4 + i for i in range(12)]

  def broken():
    raise ValueError("a drawing failed")
  writer = exported.VideoWriter(str(tmp_path / "broken.mp4"), 10)
  writer.write(broken)
  with pytest.raises(ValueError, match="a drawing failed"):
    writer.close()


def test_unreadable_and_truncated_videos(tmp_path, caplog):
  good, broken, cut = tmp_path / "good.mp4", tmp_path / "broken.mp4", tmp_path / "cut.mp4"
  write_moving_dot(good, 12)
  broken.write_bytes(b"not a video at all" * 100)
  write_moving_dot(cut, 40)
  cut.write_bytes(cut.read_bytes()[:len(cut.read_bytes()) // 3])  # a copy that broke off
  stream = video.clip_stream([str(broken), str(good), str(cut)], 2, 1, seed=0)
  clips = list(stream.take(12).as_numpy_iterator())  # more than one epoch: no hang
  assert len(clips) == 12 and all(c.shape == (2, *FRAME_HW, 1) for c in clips)
  assert any("broken.mp4 cannot be read and is left out" in r.message for r in caplog.records)
  with pytest.raises(ValueError, match="None of the unlabelled videos can be read"):
    video.clip_stream([str(broken)], 2, 1, seed=0)
  other = tmp_path / "other.mp4"
  write_moving_dot(other, 4, size=(32, 32))
  with pytest.raises(ValueError, match="several frame sizes"):
    video.clip_stream([str(good), str(other)], 2, 1, seed=0)


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_a_video_stored_turned_is_read_as_players_show_it(tmp_path, rotation):
  """A video of landscape frames with a rotation in its display matrix (as phones store
  portrait video): predict's frames and the unlabelled clips are the frames OpenCV's
  VideoCapture shows, upright."""
  path = str(tmp_path / "turned.mp4")
  stored = write_turned_video(path, rotation)
  capture = cv2.VideoCapture(path)  # turns frames as players do (CAP_PROP_ORIENTATION_AUTO)
  shown = np.stack([capture.read()[1][..., ::-1] for _ in stored])
  assert shown.shape[1:3] == ((40, 24) if rotation % 180 else (24, 40))
  # Two builds of FFmpeg turn YUV into RGB, each its own way.
  tolerance = {"atol": 2, "rtol": 0}
  np.testing.assert_allclose(np.stack(list(exported.read_video(path)[1])), shown, **tolerance)
  assert np.stack(list(exported.read_video(path, upright=False)[1])).shape == stored.shape
  assert video.frame_size(path) == shown.shape[1:3]
  clips = np.concatenate(list(video.interleaved_clips([path], 1, 3, seed=0, epoch=0)))
  np.testing.assert_allclose(clips, shown[-len(clips):], **tolerance)


def test_a_stream_of_videos_too_short_for_a_clip_stops_with_an_error(tmp_path):
  short = tmp_path / "short.mp4"
  write_moving_dot(short, 3)
  stream = video.clip_stream([str(short)], 8, 1, seed=0)
  with pytest.raises(tf.errors.InvalidArgumentError, match="No clip of 8 frames"):
    next(iter(stream))


@pytest.fixture(scope="module")
def project_with_video(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("MouseWithVideo"))
  write_project(root)
  os.makedirs(os.path.join(root, "videos"))
  write_moving_dot(os.path.join(root, "videos", "session.mp4"), 24)
  return root


def video_config(data_dir, root):
  config = file_source_config(data_dir, "deeplabcut", project=root, box_padding=1.0,
                              input_size=(32, 32), unlabelled_batch_size=4, clip_length=3)
  config.model.head = {"name": "integral", "stride": 4, "features": 8, "loss": "l1"}
  return config


def test_clips_ride_beside_the_labelled_batch(data_dir, project_with_video):
  config = video_config(data_dir, project_with_video)
  config.unsupervised.consistency.weight = 1.0  # the teacher's second view too
  source = pipeline.get_source(config.data)
  batch = next(pipeline.train_iterator(config, source, start_step=0, local_devices=1))
  assert batch["image"].shape == (config.batch_size, 32, 32, 3)  # the project's RGB frames
  assert batch["unlabelled"].shape == (4, 3, 32, 32, 3)  # 4 clips of 3 frames, as the labelled
  assert batch["teacher"].shape == (4, 3, 32, 32, 3)
  assert batch["unlabelled_matrix"].shape == batch["teacher_matrix"].shape == (4, 3, 3)
  # One geometry per clip: the dot (frame i at x = 4 + i) lands where the clip's matrix takes
  # it, in every frame; the teacher's view through its own matrix.
  assert batch["unlabelled"].dtype == batch["teacher"].dtype == np.uint8  # pixels, as images
  for frames, matrix in ((batch["unlabelled"][0], batch["unlabelled_matrix"][0]),
                         (batch["teacher"][0], batch["teacher_matrix"][0])):
    for frame in frames:
      bright = np.argwhere(frame[..., 0] > 127)
      assert len(bright)  # the dot stays in view (rotations of at most 10 degrees)
      centre_in_input = bright.mean(0)[::-1]  # (x, y)
      source = np.linalg.inv(matrix) @ np.array([*centre_in_input, 1.0])
      assert abs(source[1] - 12.0) < 1.5  # the square's rows 10-14


def test_a_run_learns_from_the_project_video(data_dir, project_with_video, tmp_path):
  config = video_config(data_dir, project_with_video)
  for name in unsupervised.LOSSES:
    config.unsupervised[name].weight, config.unsupervised[name].ramp_steps = 0.5, 2
  config.unsupervised.pca.keypoints = ("snout", "leftEar", "rightEar")  # always labelled
  config.data.same_point = (("leftEar", "rightEar"),)
  config.optimizer.ema_decay = 0.9
  config.num_train_steps, config.batch_size = 4, 8
  config.log_every_steps = config.eval_every_steps = config.checkpoint_every_steps = 4
  workdir = str(tmp_path / "run")
  summary = train.train_and_evaluate(config, workdir)
  assert np.isfinite(summary["error_image_px"])
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    logged = [line for line in f if '"train"' in line][-1]
  for name in unsupervised.LOSSES:
    assert f'"unsupervised/{name}"' in logged
  # predict on the project's video, smoothed, with its jump figure per body part.
  out = predict.predict_video(predict.Predictor(workdir, likelihood_cutoff=0.0),
                              os.path.join(project_with_video, "videos", "session.mp4"),
                              str(tmp_path / "out"), smooth="median")
  assert set(out["jumps"]) == set(out["smoothed_jumps"]) == set(BODYPARTS)
  assert os.path.exists(out["smoothed_csv"])
  assert "| **mean** |" in predict.jitter_table(out, 20.0)
  # Without the overlay video: the same keypoints, and no video.
  bare = predict.predict_video(predict.Predictor(workdir, likelihood_cutoff=0.0),
                               os.path.join(project_with_video, "videos", "session.mp4"),
                               str(tmp_path / "bare"), overlay=False)
  assert "video" not in bare and os.path.exists(out["video"])
  assert sorted(os.listdir(tmp_path / "bare")) == ["session_keypoints.csv",
                                                   "session_keypoints.json"]
  assert open(bare["csv"]).read() == open(out["csv"]).read()
