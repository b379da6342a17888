"""Find, then refine: instance centres from labels, the centre head's peaks, the JAX warp and
crop geometry against the pipeline's, a centre model that finds a planted object, and a
two-stage run on a DeepLabCut project written here (train, resume, predict, evaluate)."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from configs import deeplabcut as deeplabcut_config
from conftest import (ANIMAL_OFFSETS, animals_frame, bilinear_reference, file_source_config,
                      installed_export_formats, opencv_warp_tolerance, write_deeplabcut_labels)
from kp_jax import (export, exported, find_refine, heatmaps, predict, runs, steps, train,
                    two_stage)
from kp_jax.data import instances, pipeline, pixels, transforms
from kp_jax.models import heads

BODYPARTS = ["snout", "leftEar", "rightEar"]
FRAME_HW = (64, 80)
OFFSETS = ANIMAL_OFFSETS


def animal_frame(centre) -> np.ndarray:
  return animals_frame(FRAME_HW, [centre])


def write_project(root, num_frames: int = 20) -> dict:
  """A DeepLabCut project of `num_frames` frames, the animal at a random place in each;
  returns {frame path: points [K, 2]}."""
  rng = np.random.default_rng(1)
  with open(os.path.join(root, "config.yaml"), "w") as f:
    f.write("Task: mouse\nscorer: Me\nbodyparts:\n" + "".join(f"- {b}\n" for b in BODYPARTS)
            + "TrainingFraction:\n- 0.8\n")
  folder = os.path.join(root, "labeled-data", "vid1")
  os.makedirs(folder)
  rows, truth = [], {}
  for i in range(num_frames):
    centre = rng.uniform([12, 12], [FRAME_HW[1] - 13, FRAME_HW[0] - 13]).round()
    name = f"img{i:03d}.png"
    Image.fromarray(animal_frame(centre)).save(os.path.join(folder, name))
    points = centre + OFFSETS
    rows.append([f"labeled-data/vid1/{name}"] + [f"{v}" for p in points for v in p])
    truth[f"labeled-data/vid1/{name}"] = points
  write_deeplabcut_labels(os.path.join(folder, "CollectedData_Me.csv"), BODYPARTS, rows)
  return truth


@pytest.fixture(scope="module")
def project(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("AnimalProject"))
  return root, write_project(root)


def two_stage_config(data_dir, root):
  """configs/deeplabcut.py's two-stage section on the tiny model and the project above."""
  config = file_source_config(data_dir, "deeplabcut", project=root, box_padding=1.0,
                              channels=1)
  config.data.augment.flip_probability = 0.0
  config.two_stage = deeplabcut_config.get_config().two_stage
  centre = config.two_stage.centre
  centre.input_size = (32, 32)
  centre.model = {"backbone": dict(config.model.backbone),
                  "head": {"name": "centre", "stride": 4, "features": 8, "sigma": 1.0}}
  config.two_stage.crop_multiple, config.two_stage.crop_scale = 8, 1.0
  config.num_train_steps, config.batch_size, config.eval_batch_size = 4, 8, 4
  config.log_every_steps = config.eval_every_steps = config.checkpoint_every_steps = 4
  centre.num_train_steps, centre.batch_size = 4, 8
  return config


# ---------------------------------------------------------------------------------------------
# Pure pieces.


@pytest.mark.parametrize("anchor, centre_from, want_centre, want_size", [
    (None, "keypoints", (15.0, 30.0), (11.0 * 1.2, 21.0 * 1.2)),  # the extent's middle
    ((2,), "keypoints", (20.0, 40.0), (11.0 * 1.2, 21.0 * 1.2)),  # the anchor keypoint
    ((0, 1), "keypoints", (10.0, 20.0), (11.0 * 1.2, 21.0 * 1.2)),  # the labelled anchors
    (None, "box", (104.5, 204.5), (10.0, 10.0)),  # the box's centre: x + w / 2 - 0.5
])
def test_instance_centre_from_labels(anchor, centre_from, want_centre, want_size):
  keypoints = np.array([[10.0, 20.0], [99.0, 99.0], [20.0, 40.0]], np.float32)
  visible = np.array([1.0, 0.0, 1.0], np.float32)  # the middle one is not labelled
  box = np.array([100.0, 200.0, 10.0, 10.0], np.float32)
  centre, size, found = instances.instance_centre(keypoints, visible, box, anchor, 0.2,
                                                  centre_from)
  np.testing.assert_allclose(centre, want_centre)
  np.testing.assert_allclose(size, want_size, rtol=1e-6)
  assert float(found) == 1.0


def test_an_instance_without_labels_is_not_found():
  centre, _, found = instances.instance_centre(
      np.zeros((2, 2), np.float32), np.zeros(2, np.float32),
      np.array([0.0, 0.0, 8.0, 6.0], np.float32), None, 0.2)
  np.testing.assert_allclose(centre, (3.5, 2.5))  # the box's centre
  assert float(found) == 0.0
  # An anchor that is not labelled: not found either.
  _, _, found = instances.instance_centre(
      np.ones((2, 2), np.float32), np.array([1.0, 0.0], np.float32),
      np.array([0.0, 0.0, 8.0, 6.0], np.float32), (1,), 0.2)
  assert float(found) == 0.0


def test_instances_config_errors_name_the_key(data_dir, project):
  config = two_stage_config(data_dir, project[0])
  config.data.instances.anchor = ("snout", "tail")
  with pytest.raises(ValueError, match=r"config.data.instances.anchor=.*\['tail'\] are not "
                     r"keypoints of .*snout"):
    pipeline.get_source(config.data)
  config.data.instances.anchor, config.data.instances.stage = (), "crop"
  with pytest.raises(ValueError, match=r"config.data.instances.crop_size"):
    pipeline.get_source(config.data)


def test_a_stage_two_config_error_stops_the_run_before_stage_one_trains(data_dir, project,
                                                                         tmp_path):
  config = two_stage_config(data_dir, project[0])
  config.optimizer.warmup_steps = 10  # stage 2 trains 4 steps; stage 1 shortens its own warmup
  with pytest.raises(ValueError, match=r"config.optimizer.warmup_steps=10 must be in \[0, "
                     r"config.num_train_steps=4\)"):
    two_stage.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run" / "centre").exists()


def test_top_peaks_finds_each_local_maximum_best_first():
  points = jnp.array([[[5.0, 6.0], [20.0, 14.0], [12.0, 25.0]]])  # input pixels, stride 2
  heights = jnp.array([0.5, 1.0, 0.8])
  maps = (heatmaps.gaussian_maps(points, (16, 16), 2, 1.0) * heights).max(-1, keepdims=True)
  peaks, values = heatmaps.top_peaks(maps, 4)
  # NumPy reference: pixels that equal their 3x3 neighbourhood's maximum, highest first.
  m = np.asarray(maps[0, ..., 0], np.float64)
  padded = np.pad(m, 1, constant_values=-np.inf)
  local = np.max([padded[dy:dy + 16, dx:dx + 16] for dy in range(3) for dx in range(3)], 0)
  ys, xs = np.nonzero(m == local)
  order = np.argsort(-m[ys, xs])
  assert len(order) == 3
  np.testing.assert_array_equal(peaks[0, :3], np.stack([xs, ys], -1)[order])
  np.testing.assert_allclose(values[0, :3], m[ys, xs][order], rtol=1e-6)
  assert values[0, 3] == -np.inf  # there is no fourth peak
  np.testing.assert_allclose(heatmaps.from_map(peaks[0, :3], 2),
                             points[0, jnp.array([1, 2, 0])], atol=1.0)


def test_top_k_is_lax_top_k_ties_and_minus_infinity_included():
  rows = jnp.array([[0.5, 2.0, 2.0, -jnp.inf, 1.0, -jnp.inf, 2.0, -jnp.inf],
                    [-jnp.inf] * 8,
                    [3.0, 1.0, 2.0, 0.0, -1.0, 7.0, 5.0, 4.0]])
  for k in (1, 3, 6, 8):
    values, index = heatmaps.top_k(rows, k)
    want_values, want_index = jax.lax.top_k(rows, k)
    np.testing.assert_array_equal(index, want_index)
    np.testing.assert_array_equal(values, want_values)


def test_affine_inverse_is_the_matrix_inverse():
  rng = np.random.default_rng(0)
  matrices = np.zeros((5, 3, 3))
  matrices[:, :2] = rng.uniform(-3, 3, (5, 2, 3))
  matrices[:, 2, 2] = 1.0
  got = find_refine.affine_inverse(jnp.asarray(matrices, jnp.float32))
  np.testing.assert_allclose(got, np.linalg.inv(matrices), rtol=1e-4, atol=1e-4)


def test_centre_head_reads_back_its_centres_and_sizes():
  head = heads.Centre(num_keypoints=1, image_hw=(32, 40), stride=4, sigma=1.0)
  points, size = jnp.array([[[13.3, 9.7]]]), jnp.array([[20.0, 12.0]])
  # The outputs a perfect model would give: the Gaussian target, log(size / stride) everywhere.
  maps = heatmaps.gaussian_maps(points, (8, 10), 4, 1.0)
  log_size = jnp.broadcast_to(jnp.log(size / 4)[:, None, None, :], (1, 8, 10, 2))
  outputs = {"maps": jnp.concatenate([maps, log_size], -1)}
  centres, sizes, scores = head.detect(outputs, 2)
  np.testing.assert_allclose(centres[0, 0], points[0, 0], atol=0.05)  # DARK on a Gaussian
  np.testing.assert_allclose(sizes[0, 0], size[0], rtol=1e-5)
  # The peak is the map pixel nearest (13.3, 9.7): map (3, 2), 0.05 map pixels off on each axis.
  assert float(scores[0, 0]) == pytest.approx(math.exp(-0.05**2), rel=1e-5)
  assert float(scores[0, 1]) == 0.0  # there is no second instance
  np.testing.assert_allclose(head.decode(outputs), centres[:, :1], atol=1e-6)
  batch = {"keypoints": points, "visible": jnp.ones((1, 1)), "size": size}
  assert float(head.compute_loss(outputs, batch)) == pytest.approx(0.0, abs=1e-10)
  wrong = {**batch, "size": size * math.e}  # log-size off by 1 on both axes
  assert float(head.compute_loss(outputs, wrong)) == pytest.approx(head.size_weight * 2)


def test_jax_warp_is_exact_bilinear_and_equals_the_pipeline_warp():
  rng = np.random.default_rng(0)
  image = rng.uniform(0, 1, (37, 45, 2)).astype(np.float32)
  matrix = transforms.affine_matrix(0.3, 1.4, tf.constant([3.0, -2.0]), False, 37, 45).numpy()
  matrix = matrix @ np.array([[1, 0, -4.5], [0, 1, 3.25], [0, 0, 1]], np.float32)
  got = jax.jit(find_refine.warp, static_argnums=2)(image, matrix, (30, 34))
  # Bilinear weights of the same inverse matrix; float32 rounding of coordinates ~1e-5.
  np.testing.assert_allclose(got, bilinear_reference(image, matrix, (30, 34)), atol=2e-4)
  pipeline = transforms.resample(tf.constant(image), tf.constant(matrix), (30, 34)).numpy()
  np.testing.assert_allclose(got, pipeline, atol=opencv_warp_tolerance(image) + 2e-4)


def test_crop_matrices_are_the_pipelines_and_map_back_exactly():
  centre, crop_size, input_hw = np.array([40.3, 21.7]), (48.0, 40.0), (24, 20)
  box = instances.crop_box(tf.constant(centre, tf.float32), crop_size)
  want = transforms.box_matrix(box, input_hw, 1.0).numpy()
  scale = find_refine.crop_scale(crop_size, input_hw)
  assert scale == 0.5
  got = np.asarray(find_refine.centred_matrix(centre, scale, input_hw))
  np.testing.assert_allclose(got, want, atol=1e-5)
  # The crop's middle is the centre, and crop pixels map back to source pixels exactly.
  middle = find_refine.apply_matrix(got, jnp.array([centre], jnp.float32))
  np.testing.assert_allclose(middle, [[(input_hw[1] - 1) / 2, (input_hw[0] - 1) / 2]],
                             atol=1e-5)
  points = jnp.array([[0.0, 0.0], [19.0, 23.0], [7.25, 11.5]])
  back = find_refine.apply_matrix(jnp.linalg.inv(got), points)
  np.testing.assert_allclose(back, centre + (np.asarray(points) - [9.5, 11.5]) / scale,
                             atol=1e-4)
  # A planted pixel lands where the matrix says.
  frame = np.zeros((64, 80, 1), np.float32)
  frame[30, 44] = 1.0
  crop = find_refine.warp(frame, got, input_hw)
  expected = find_refine.apply_matrix(got, jnp.array([[44.0, 30.0]]))[0]
  y, x = np.unravel_index(np.argmax(crop[..., 0]), input_hw)
  assert abs(x - expected[0]) <= 0.5 and abs(y - expected[1]) <= 0.5


def test_crop_size_is_derived_from_the_largest_labelled_instance(data_dir, project):
  config = two_stage_config(data_dir, project[0])
  # The animal's keypoints span 9 x 9 pixels (the extent counts pixels): with the margin 0.2,
  # 10.8; the input rounds up to a multiple of 8 at crop_scale 1.
  derived = two_stage.derive_crops(config, centre_error_px=1.0)
  assert derived["crop_size"] == [16.0, 16.0] and derived["input_size"] == [16, 16]
  assert derived["centre_jitter_px"] == pytest.approx(min(8.0, 0.125 * 16))
  config.two_stage.crop_size, config.two_stage.crop_scale = (20.0, 30.0), 0.5
  derived = two_stage.derive_crops(config, centre_error_px=1.0)
  assert derived["crop_size"] == [20.0, 30.0] and derived["input_size"] == [16, 16]
  assert derived["crop_scale"] == pytest.approx(16 / 30)


# ---------------------------------------------------------------------------------------------
# Training.


def test_centre_model_finds_a_planted_animal_within_a_map_pixel(data_dir, project, tmp_path):
  root, truth = project
  config = two_stage.centre_config(two_stage_config(data_dir, root))
  config.num_train_steps, config.optimizer.learning_rate = 150, 5e-3
  config.eval_every_steps = config.checkpoint_every_steps = 150
  config.data.augment.max_rotation_deg = 0.0
  summary = train.train_and_evaluate(config, str(tmp_path / "centre"))
  # One map pixel of the centre model, in source pixels: stride 4 at the fitted scale.
  scale = find_refine.fit_scale(FRAME_HW, config.data.input_size)
  map_pixel = 4 / scale
  assert summary["error_image_px"] < map_pixel, summary["error_image_px"]

  # Pictures unlike the training frames, seen at the training scale (the fully convolutional
  # centre model on an input as large as each needs): one animal in a picture twice the
  # frames' size, and two frames side by side, each animal found where it is.
  run = runs.load_run(str(tmp_path / "centre"))
  stages = find_refine.Stages(
      run.model.apply, run.head, tuple(run.image_shape[:2]), None, None, (8, 8), 1.0,
      *pixels.normalisation(config.data, 1), max_instances=2, centre_scale=scale)
  variables = steps.eval_variables(run.state)
  gray = lambda frame: frame[..., :1].astype(np.float32)[None] / 255
  big_centre = np.array([90.0, 70.0])
  found = find_refine.find(stages, variables, gray(animals_frame(
      (2 * FRAME_HW[0], 2 * FRAME_HW[1]), [big_centre])))
  assert np.linalg.norm(found["centres"][0, 0] - big_centre) < map_pixel
  left, right = np.array([20.0, 30.0]), np.array([50.0, 40.0])
  pair = np.concatenate([animal_frame(left), animal_frame(right)], axis=1)
  found = find_refine.find(stages, variables, gray(pair))
  both = [left, right + [FRAME_HW[1], 0]]
  assert found["scores"][0].min() > 0.3  # two peaks, not one and noise
  for centre in both:
    assert np.linalg.norm(found["centres"][0] - centre, axis=-1).min() < map_pixel


def test_two_stage_run_trains_resumes_predicts_and_evaluates(data_dir, project, tmp_path):
  root, truth = project
  config = two_stage_config(data_dir, root)
  workdir = str(tmp_path / "run")
  summary = two_stage.train_and_evaluate(config, workdir)
  for stage in ("centre", "keypoints"):
    assert os.listdir(os.path.join(workdir, stage, "checkpoints"))
  derived = json.loads((tmp_path / "run" / "two_stage.json").read_text())
  assert derived["crop_size"] == [16.0, 16.0]
  assert derived["centre_scale"] == pytest.approx(find_refine.fit_scale(FRAME_HW, (32, 32)))
  assert summary["num_frames"] == 4  # the held-out frames: every 5th of 20

  # Resuming a finished run trains nothing and evaluates the same checkpoints again.
  again = two_stage.train_and_evaluate(config, workdir)
  assert again["centre_run"]["steps"] == again["keypoint_run"]["steps"] == 4
  assert again["error_px"] == pytest.approx(summary["error_px"], rel=1e-6)

  # Resuming with other instance centres than the stages were trained with is refused.
  moved = two_stage_config(data_dir, root)
  moved.data.instances.anchor = ("snout",)
  with pytest.raises(ValueError, match=r"data.instances.anchor: run \[\], config \['snout'\]"):
    two_stage.train_and_evaluate(moved, workdir)

  # predict on the held-out frames' files: one instance per frame, in the frames' pixels,
  # the same as the composed function on the decoded frames.
  predictor = predict.open_predictor(workdir, likelihood_cutoff=0.0)
  assert isinstance(predictor, two_stage.FindRefinePredictor)
  test_frames = sorted(truth)[4::5]
  paths = [os.path.join(root, f) for f in test_frames]
  results = predict.predict_files(workdir, paths, str(tmp_path / "pred"), likelihood_cutoff=0.0)
  frames = np.stack([exported.read_image(p, 1) for p in paths])
  composed = predictor.on_frames(frames)
  for i, path in enumerate(paths):
    got = np.array([results[path][name][:2] for name in BODYPARTS])
    np.testing.assert_allclose(got, composed["keypoints"][i, 0], atol=1e-4)
  # Each crop is centred on its found centre.
  middle = find_refine.apply_matrix(composed["matrices"][:, 0], composed["centres"][:, :1])
  np.testing.assert_allclose(middle[:, 0], [[7.5, 7.5]] * len(paths), atol=1e-4)

  # export: both stages as one program of whole frames in every format whose runtime is
  # installed, run by the one-file runner as any exported model, equal to predict's keypoints
  # (float32 programs compiled apart).
  for fmt in installed_export_formats():
    model = exported.ExportedModel(export.export(
        workdir, fmt, out=str(tmp_path / f"model{export.FORMATS[fmt]}"), frame_hw=FRAME_HW))
    for i, path in enumerate(paths):
      with Image.open(path) as image:
        pixels = np.asarray(image.convert("L"))[..., None]
      points, likelihood = model.on_image(pixels)
      np.testing.assert_allclose(points, composed["keypoints"][i, 0], atol=1e-3, err_msg=fmt)
      np.testing.assert_allclose(likelihood, composed["likelihood"][i, 0], atol=1e-4,
                                 err_msg=fmt)
  with pytest.raises(ValueError, match="--frame_size=HxW"):
    export.export(workdir, "stablehlo", out=str(tmp_path / "m2.stablehlo"))

  # predict on a video of the frames tinted: this grey model sees each frame as PIL's grey of
  # its colours, as training reads frames (not as their mean).
  video = str(tmp_path / "tinted.mp4")
  writer = predict.VideoWriter(video, 10)
  for path in paths:
    writer.write((np.asarray(Image.open(path).convert("RGB")) * [1.0, 0.55, 0.2]).astype(np.uint8))
  writer.close()
  out = predict.predict_video(predictor, video, str(tmp_path / "video"))
  grey = np.stack([np.asarray(Image.fromarray(frame).convert("L"))[..., None]
                   for frame in predict.read_video(video)[1]])
  want = predictor.on_frames(grey.astype(np.float32) / 255)["keypoints"][:, 0]
  got = np.array(json.loads(open(out["json"]).read())["frames"], np.float64)[..., :2]
  np.testing.assert_allclose(got, want, atol=1e-4)
  # The one-file runner on the same video (the last export above): the same frames, each seen
  # as PIL's grey.
  ran = np.array(exported.on_video(model, video)["frames"], np.float64)[..., :2]
  np.testing.assert_allclose(ran, want, atol=1e-3)

  # evaluate: the end-to-end errors are the composed predictions' distances to the labels.
  result = two_stage.evaluate(workdir, "test", str(tmp_path / "eval"))
  errors = np.stack([np.linalg.norm(composed["keypoints"][i, 0] - truth[f], axis=-1)
                     for i, f in enumerate(test_frames)])
  assert result["num_frames"] == len(test_frames)
  assert result["error_px"] == pytest.approx(errors.mean(), rel=1e-4)
  for k, name in enumerate(BODYPARTS):
    assert result["per_keypoint"][name]["error_px"] == pytest.approx(errors[:, k].mean(),
                                                                     rel=1e-4)
  centres = np.stack([(truth[f].min(0) + truth[f].max(0)) / 2 for f in test_frames])
  assert result["centre_error_px"] == pytest.approx(
      np.linalg.norm(composed["centres"][:, 0] - centres, axis=-1).mean(), rel=1e-4)
  assert 0 <= result["instances_found"] <= 1
  assert math.isfinite(result["error_px_true_crops"])
  table = two_stage.format_table(result)
  assert "end to end" in table and f"| all | {result['error_px']:.2f} |" in table
  assert f"| snout | {result['per_keypoint']['snout']['error_px']:.2f} |" in table
  with pytest.raises(ValueError, match=r"has no split 'tset'; it has \['test', 'train', "
                     r"'validation'\]"):
    two_stage.evaluate(workdir, "tset", str(tmp_path / "eval"))
