"""Exported models (kp_jax.export), run in their own runtimes (kp_jax.exported), against
kp_jax.predict's jitted function on the same inputs: the integral head of `default`, the seed
CNN (its fused CPU conv+ReLU+pool kernels), a heatmap model (the deconvolution kernel,
DARK decoding) and a ViT, each in every format."""

import csv
import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import installed_export_formats, save_turned, tiny_config
from configs import default, seed
from deeplabcut_test import write_video
from kp_jax import export, exported, pick_frames, predict, train

# The same keypoints within 1e-3 input pixels (the bar); measured differences are
# float32 rounding, about 1e-5 px.
TOLERANCE_PX = 1e-3
# The runner fits a picture with a float64 matrix, predict with the pipeline's float32 one: a
# sample on a half grey level can round the other way (1 input pixel in 1,024 of a 46x38 frame
# fitted into 32x32), and a 2-step heatmap model's flat maps moved their peak 0.012 px for it.
WARP_ROUNDING_PX = 0.05


def run_config(name, data_dir):
  """A 2-step run of `name`'s model on the tiny synthetic faces."""
  config = tiny_config(data_dir)
  if name == "default":
    config.model = default.get_config().model
    config.model.backbone.output_stride = 16  # 32x32 inputs
    config.model.head.stride = 4
  elif name == "seed":
    seed_config = seed.get_config()
    config.model, config.data.keypoints = seed_config.model, seed_config.data.keypoints
  elif name == "vit":  # one block over 4x4 patches of 8x8, its heatmaps at stride 4
    config.model.backbone = {"name": "vit", "dim": 16, "depth": 1, "heads": 2, "mlp_dim": 32,
                             "patch_size": 8, "patch_padding": 0}
  config.num_train_steps = config.eval_every_steps = config.checkpoint_every_steps = 2
  config.optimizer.warmup_steps = 1
  return config


@pytest.fixture(scope="module", params=["default", "seed", "heatmap"])
def workdir(request, tmp_path_factory, data_dir):
  workdir = str(tmp_path_factory.mktemp(request.param))
  train.train_and_evaluate(run_config(request.param, data_dir), workdir)
  return workdir


@pytest.mark.parametrize("fmt, batch", [("stablehlo", None), ("savedmodel", None),
                                        ("onnx", 2), ("tflite", 2)])
def test_exported_models_give_predicts_keypoints(workdir, tmp_path, fmt, batch):
  if fmt not in installed_export_formats():
    pytest.skip(f"{fmt}'s converter or runtime is not installed")
  path = export.export(workdir, fmt, batch, str(tmp_path / f"model{export.FORMATS[fmt]}"))
  assert_gives_predicts_keypoints(exported.ExportedModel(path), predict.Predictor(workdir))


def test_a_run_on_boxes_exported_gives_predicts_keypoints_for_a_box(data_dir, tmp_path):
  """A model trained on crops of boxes with UDP's affine (as ViTPose's COCO config), exported,
  crops a box as predict does: the runner, given a box, gives predict's keypoints."""
  config = run_config("heatmap", data_dir)
  config.data.input_size = (32, 32)  # crops of each example's box
  config.data.udp = config.model.head.udp = True
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(config, workdir)
  model = exported.ExportedModel(export.export(workdir, "stablehlo",
                                               out=str(tmp_path / "model.stablehlo")))
  assert model.meta["udp"] and model.meta["box_padding"] == config.data.box_padding
  image = np.random.default_rng(1).integers(0, 256, (60, 80, 1), np.uint8)
  path = str(tmp_path / "frame.png")
  Image.fromarray(image[..., 0]).save(path)
  box = [12.0, 8.0, 30.0, 40.0]
  want = predict.predict_files(workdir, [path], str(tmp_path / "pred"), box=box,
                               likelihood_cutoff=0.0)[path]
  points, _ = model.on_image(image, box)
  np.testing.assert_allclose(points, [want[name][:2] for name in model.names], atol=1e-3)


def assert_gives_predicts_keypoints(model, predictor):
  pixels = np.random.default_rng(0).uniform(0, 255, (3, *model.input_shape)).astype(np.float32)
  data = predictor.config.data
  want_points, want_likelihood = predictor.on_inputs(
      (pixels / 255.0 - data.image_mean) / data.image_std)
  points, likelihood = model.on_inputs(pixels)  # 3 images: a fixed batch of 2 runs padded
  assert points.shape == want_points.shape and likelihood.shape == want_likelihood.shape
  np.testing.assert_allclose(points, want_points, atol=TOLERANCE_PX)
  np.testing.assert_allclose(likelihood, want_likelihood, atol=1e-5)
  assert model.names == predictor.names


def test_the_runner_needs_neither_jax_nor_tensorflow_and_matches_predict(workdir, tmp_path):
  if "onnx" not in installed_export_formats():
    pytest.skip("jax2onnx or onnxruntime is not installed")
  path = export.export(workdir, "onnx", 1, str(tmp_path / "model.onnx"))
  rng = np.random.default_rng(1)
  image, turned = tmp_path / "frame.png", tmp_path / "turned.png"
  pixels = rng.integers(0, 255, (45, 37), np.uint8)
  Image.fromarray(pixels).save(image)
  save_turned(pixels, 6, turned)  # stored as a phone held on its side stores it
  video = str(tmp_path / "clip.mp4")
  frames = rng.integers(0, 255, (5, 46, 38, 3), np.uint8)
  write_video(video, frames)
  out = tmp_path / "keypoints.json"
  code = ("import sys; import kp_jax.exported as e; e.main(sys.argv[1:]); "
          "assert not {'jax', 'tensorflow', 'flax'} & set(sys.modules), 'imported the stack'")
  subprocess.run([sys.executable, "-c", code, path, str(image), str(turned), video,
                  "--out", str(out), "--overlay"],
                 check=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  got = json.load(open(out))[str(image)]
  assert json.load(open(out))[str(turned)] == got  # read upright, as predict reads it
  want = predict.predict_files(workdir, [str(image)], str(tmp_path / "predict"))[str(image)]
  for name, (x, y, p) in want.items():
    assert got[name][:2] == pytest.approx([x, y], abs=WARP_ROUNDING_PX)
    assert got[name][2] == pytest.approx(p, abs=1e-4)

  # A video: the record predict writes of it, frame by frame, which pick-frames reads, and
  # its CSV in DeepLabCut's layout.
  predicted = predict.predict_video(predict.Predictor(workdir), video, str(tmp_path / "predict"))
  rows = [list(csv.reader(open(f))) for f in (tmp_path / "clip_keypoints.csv", predicted["csv"])]
  assert rows[0][:3] == rows[1][:3] and len(rows[0]) == len(rows[1]) == 3 + len(frames)
  cells = [np.array([[float(c) if c else np.nan for c in r] for r in f[3:]]) for f in rows]
  np.testing.assert_allclose(*cells, atol=WARP_ROUNDING_PX)
  got = json.load(open(tmp_path / "clip_keypoints.json"))
  want = json.load(open(predicted["json"]))
  assert {k: v for k, v in got.items() if k != "frames"} == {
      k: v for k, v in want.items() if k != "frames"}
  # Its overlay video: predict's drawing of the same keypoints, through the same encoder.
  overlays = [np.stack(list(exported.read_video(f)[1])).astype(int)
              for f in (str(tmp_path / "clip_labeled.mp4"), predicted["video"])]
  assert overlays[0].shape == overlays[1].shape == frames.shape
  assert np.abs(overlays[0] - overlays[1]).mean() < 0.5  # keypoints within WARP_ROUNDING_PX
  assert np.abs(overlays[0] - frames).mean() > 10  # drawn on: the legend, the points
  trajectory = pick_frames.read_predictions(str(tmp_path / "clip_keypoints.json"))["trajectory"]
  assert trajectory.shape == (5, len(want["keypoints"]), 3)
  want = predict.trajectory(want["frames"])
  np.testing.assert_allclose(trajectory[..., :2], want[..., :2], atol=WARP_ROUNDING_PX)
  np.testing.assert_allclose(trajectory[..., 2], want[..., 2], atol=1e-4)
  # In batches of any size (the last one short), as one frame at a time: the same program.
  model, decoded = exported.ExportedModel(path), list(exported.read_video(video)[1])
  grey = [exported.in_channels(Image.fromarray(f), model.input_shape[-1]) for f in decoded]
  one_by_one = [model.on_image(frame) for frame in grey]
  for (points, likelihood), (p, l) in zip(model.on_frames(iter(grey), batch_size=2), one_by_one,
                                          strict=True):
    np.testing.assert_array_equal(points, p)
    np.testing.assert_array_equal(likelihood, l)
  with pytest.raises(ValueError, match=r"A frame of \(44, 38, 1\) among frames of \(46, 38, 1\)"):
    list(model.on_frames([grey[0], grey[1][:-2]]))


def assert_runs_on_every_platform(path: str, fmt: str):
  """The StableHLO or SavedModel export at `path` holds one XLA program, lowered for every
  platform, and (StableHLO's, whose text this can read) without a cuDNN call."""
  if fmt == "stablehlo":
    artifact = jax.export.deserialize(bytearray(open(path, "rb").read()))
    calls = re.findall(r'call_target_name = "([^"]+)"', artifact.mlir_module())
    assert not [call for call in calls if "cudnn" in call.lower()], calls
    platforms = [artifact.platforms]
  else:
    graph = tf.saved_model.load(path).signatures["serving_default"].graph.as_graph_def()
    nodes = [*graph.node, *(node for f in graph.library.function for node in f.node_def)]
    platforms = [tuple(platform.decode().lower() for platform in node.attr["platforms"].list.s)
                 for node in nodes if node.op == "XlaCallModule"]
  assert platforms == [("cpu", "cuda", "rocm", "tpu")], (fmt, platforms)


def test_a_run_trained_with_cudnn_attention_predicts_here_and_exports_for_every_platform(
    data_dir, tmp_path):
  """A ViT run whose config names cuDNN's fused attention and bfloat16 arithmetic (as one
  trained on a GPU may) loads on this CPU with XLA's attention, and exports in every format
  (those whose runtime is installed) computing in float32, with the keypoints of predict in
  float32, its StableHLO and SavedModel programs lowered for every platform and the StableHLO
  one with no cuDNN call."""
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(run_config("vit", data_dir), workdir)  # "auto": XLA's on a CPU
  predictor = predict.Predictor(workdir)  # float32, XLA's attention
  config_path = os.path.join(workdir, "config.json")
  saved = json.load(open(config_path))
  saved["model"]["backbone"]["attention"] = "cudnn"  # cannot run on a CPU
  saved["model"]["dtype"] = "bfloat16"  # ONNX's and TFLite's CPU runtimes lack its convolutions
  json.dump(saved, open(config_path, "w"))
  as_trained = predict.Predictor(workdir)
  points, _ = as_trained.on_inputs(np.zeros((1, *as_trained.image_shape), np.float32))
  assert np.isfinite(points).all()
  for fmt in installed_export_formats():
    path = export.export(workdir, fmt, out=str(tmp_path / f"model{export.FORMATS[fmt]}"))
    assert_gives_predicts_keypoints(exported.ExportedModel(path), predictor)
    if fmt in ("stablehlo", "savedmodel"):
      assert_runs_on_every_platform(path, fmt)
