"""Every instance in the picture: the synthetic scenes, multi-instance sources' image-level
view, the centre head with several instances, and a DeepLabCut multi-animal project that
trains both stages, predicts every instance of images and a video (tracks, the multi-animal
CSV) and is evaluated as COCO scores it."""

import csv
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from configs import deeplabcut as deeplabcut_config
from conftest import (ANIMAL_OFFSETS, animals_frame, file_source_config,
                      installed_export_formats, tiny_config, write_deeplabcut_labels)
from kp_jax import export, exported, heatmaps, predict, runs, two_stage
from kp_jax.data import faces, instances, pipeline
from kp_jax.models import heads

BODYPARTS = ["snout", "leftEar", "rightEar"]
MICE = ["mouse1", "mouse2"]
FRAME_HW = (64, 96)
OFFSETS = ANIMAL_OFFSETS  # a mouse: conftest's test animal


def mice_frame(centres) -> np.ndarray:
  return animals_frame(FRAME_HW, centres)


def write_multi_animal_project(root, num_frames: int = 25) -> dict:
  """A DeepLabCut multi-animal project: two mice in most frames, one (mouse1) in every 4th;
  returns {frame path: [points [K, 2] of each mouse in the frame]}."""
  rng = np.random.default_rng(2)
  with open(os.path.join(root, "config.yaml"), "w") as f:
    f.write("Task: mice\nscorer: Me\nmultianimalproject: true\nidentity: false\n"
            "individuals:\n" + "".join(f"- {m}\n" for m in MICE) + "uniquebodyparts: []\n"
            "multianimalbodyparts:\n" + "".join(f"- {b}\n" for b in BODYPARTS)
            + "bodyparts: MULTI!\nTrainingFraction:\n- 0.8\n")
  folder = os.path.join(root, "labeled-data", "cage")
  os.makedirs(folder)
  rows, truth = [], {}
  for i in range(num_frames):
    left = rng.uniform([10, 10], [FRAME_HW[1] / 2 - 12, FRAME_HW[0] - 11]).round()
    right = rng.uniform([FRAME_HW[1] / 2 + 12, 10], [FRAME_HW[1] - 11, FRAME_HW[0] - 11]).round()
    centres = [left] if i % 4 == 3 else [left, right]
    name = f"img{i:03d}.png"
    Image.fromarray(mice_frame(centres)).save(os.path.join(folder, name))
    points = [c + OFFSETS for c in centres]
    cells = [f"{v}" for p in points for v in p.ravel()]
    rows.append([f"labeled-data/cage/{name}"] + cells + [""] * (12 - len(cells)))
    truth[f"labeled-data/cage/{name}"] = points
  write_deeplabcut_labels(os.path.join(folder, "CollectedData_Me.csv"), BODYPARTS, rows,
                          individuals=MICE)
  return truth


@pytest.fixture(scope="module")
def project(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("MiceProject"))
  return root, write_multi_animal_project(root)


# ---------------------------------------------------------------------------------------------
# Data.


def test_multi_animal_project_reads_each_individual_as_an_instance(data_dir, project):
  root, truth = project
  config = file_source_config(data_dir, "deeplabcut", project=root, box_padding=1.0)
  source = pipeline.get_source(config.data)
  test_frames = sorted(truth)[4::5]  # every 5th frame is held out
  count = lambda frames: sum(len(truth[f]) for f in frames)
  assert source.split_sizes["test"] == count(test_frames)
  assert source.split_sizes["train"] == count(set(truth) - set(test_frames))
  assert source.images.split_sizes == {"train": 20, "test": 5, "validation": 5}
  frames = sorted(truth)
  for image in source.images.load("test", 0, 1).as_numpy_iterator():
    points = truth[frames[image["image_id"]]]
    assert image["keypoints"].shape == (len(points), 3, 2)
    np.testing.assert_allclose(image["keypoints"], points)
    assert image["image"].shape == (*FRAME_HW, 3)
  assert instances.most_instances(source) == 2


def test_unique_bodyparts_are_left_out(data_dir, tmp_path):
  root = str(tmp_path)
  with open(os.path.join(root, "config.yaml"), "w") as f:
    f.write("multianimalproject: true\nindividuals: [a, b]\nuniquebodyparts: [corner]\n"
            "multianimalbodyparts: [snout, tail]\nTrainingFraction: [0.5]\n")
  folder = os.path.join(root, "labeled-data", "v")
  os.makedirs(folder)
  for name in ("f0.png", "f1.png"):
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(os.path.join(folder, name))
  columns = [("a", "snout"), ("a", "tail"), ("b", "snout"), ("b", "tail"),
             ("single", "corner")]
  with open(os.path.join(folder, "CollectedData_Me.csv"), "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["scorer"] + ["Me"] * 10)
    writer.writerow(["individuals"] + [i for i, _ in columns for _ in "xy"])
    writer.writerow(["bodyparts"] + [p for _, p in columns for _ in "xy"])
    writer.writerow(["coords"] + ["x", "y"] * 5)
    writer.writerow(["labeled-data/v/f0.png", 1, 2, 3, 4, 5, 6, 7, 8, 19, 19])
    writer.writerow(["labeled-data/v/f1.png", 1, 2, 3, 4, "", "", "", "", 19, 19])
  config = file_source_config("", "deeplabcut", project=root, box_padding=1.0)
  source = pipeline.get_source(config.data)
  assert source.spec.names == ("snout", "tail")
  assert source.split_sizes == {"train": 2, "test": 1, "validation": 1}  # b is not in f1
  (image,) = list(source.images.load("train", 0, 1).as_numpy_iterator())
  np.testing.assert_allclose(image["keypoints"], [[[1, 2], [3, 4]], [[5, 6], [7, 8]]])


def test_scenes_hold_several_faces_some_overlapping_or_cut():
  scenes = [faces.render_scene(np.random.default_rng([3, i]), 128, 4) for i in range(30)]
  again = faces.render_scene(np.random.default_rng([3, 0]), 128, 4)
  np.testing.assert_array_equal(again["image"], scenes[0]["image"])  # one seed, one scene
  counts = [len(s["keypoints"]) for s in scenes]
  assert min(counts) >= 1 and max(counts) == 4 and len(set(counts)) > 1
  hidden_inside, cut = 0, 0
  for s in scenes:
    inside = ((s["keypoints"] >= -0.5) & (s["keypoints"] <= 127.5)).all(-1)
    assert not (s["visible"] > 0)[~inside].any()  # outside the picture: never visible
    hidden_inside += int(((s["visible"] == 0) & inside).sum())  # under a later face
    cut += int((~inside).any(-1).sum())
    low, high = s["boxes"][:, :2] - 0.5, s["boxes"][:, :2] + s["boxes"][:, 2:] - 0.5
    visible = s["visible"] > 0
    assert ((s["keypoints"] >= low[:, None] - 1e-4) | ~visible[..., None]).all()
    assert ((s["keypoints"] <= high[:, None] + 1e-4) | ~visible[..., None]).all()
  assert hidden_inside > 0 and cut > 0


def test_scene_source_views(data_dir):
  config = tiny_config(data_dir)
  config.data.image_size, config.data.scene_faces = 64, 3
  config.data.num_train, config.data.num_validation, config.data.num_test = 6, 3, 3
  source = pipeline.get_source(config.data)
  scenes = list(source.images.load("validation", 0, 1).as_numpy_iterator())
  assert source.images.split_sizes["validation"] == len(scenes) == 3
  labelled = [(scene["visible"].sum(-1) > 0) for scene in scenes]
  assert source.split_sizes["validation"] == sum(int(m.sum()) for m in labelled)
  faces_seen = list(source.load("validation", 0, 1).as_numpy_iterator())
  want = [(s["image_id"], k) for s, m in zip(scenes, labelled) for k in s["keypoints"][m]]
  assert len(faces_seen) == len(want)
  for face, (image_id, keypoints) in zip(faces_seen, want):
    assert face["image_id"] == image_id
    np.testing.assert_array_equal(face["keypoints"], keypoints)
  # The centre model's view: each scene's face centres in max_instances slots.
  config.data.instances.stage, config.data.instances.max_instances = "centre", 3
  centres = pipeline.get_source(config.data)
  for scene, example in zip(scenes, centres.load("validation", 0, 1).as_numpy_iterator()):
    n, visible = len(scene["keypoints"]), scene["visible"] > 0
    assert example["keypoints"].shape == (3, 2) and example["size"].shape == (3, 2)
    np.testing.assert_array_equal(example["visible"][n:], 0.0)
    for i in range(n):
      if not visible[i].any():
        assert example["visible"][i] == 0
        continue
      labelled = scene["keypoints"][i][visible[i]]
      np.testing.assert_allclose(example["keypoints"][i],
                                 (labelled.min(0) + labelled.max(0)) / 2, atol=1e-4)
      np.testing.assert_allclose(example["size"][i],
                                 (labelled.max(0) - labelled.min(0) + 1) * 1.2, rtol=1e-5)
  config.data.instances.max_instances = 1
  too_few = pipeline.get_source(config.data).load("validation", 0, 1)
  with pytest.raises(Exception, match=r"config.data.instances.max_instances=1; raise it"):
    list(too_few.as_numpy_iterator())


# ---------------------------------------------------------------------------------------------
# The centre head.


def test_centre_head_finds_every_planted_instance():
  head = heads.Centre(num_keypoints=3, image_hw=(32, 48), stride=4, sigma=1.0)
  points = jnp.array([[[13.3, 9.7], [35.0, 22.2], [0.0, 0.0]]])  # the third slot is unused
  visible = jnp.array([[1.0, 1.0, 0.0]])
  size = jnp.array([[[20.0, 12.0], [8.0, 16.0], [0.0, 0.0]]])
  maps = (heatmaps.gaussian_maps(points, (8, 12), 4, 1.0) * visible[:, None, None]).max(
      -1, keepdims=True)
  # log(size / stride) of the first instance everywhere, of the second at its map pixel.
  log_size = jnp.broadcast_to(jnp.log(size[0, 0] / 4), (1, 8, 12, 2))
  x, y = np.round(heatmaps.to_map(np.asarray(points[0, 1]), 4)).astype(int)
  log_size = log_size.at[0, y, x].set(jnp.log(size[0, 1] / 4))
  outputs = {"maps": jnp.concatenate([maps, log_size], -1)}
  centres, sizes, scores = head.detect(outputs, 3)
  np.testing.assert_allclose(centres[0, :2], points[0, :2], atol=0.1)  # DARK on Gaussians
  np.testing.assert_allclose(sizes[0, :2], size[0, :2], rtol=1e-5)
  assert float(scores[0, 2]) == 0.0  # no third peak
  batch = {"keypoints": points, "visible": visible, "size": size}
  assert float(head.compute_loss(outputs, batch)) == pytest.approx(0.0, abs=1e-8)
  # A region marked `ignore` (a COCO crowd) is neither instance nor background: a peak there
  # costs nothing, while the same peak elsewhere does.
  region = {**batch, "keypoints": points.at[0, 2].set(jnp.array([40.0, 8.0])),
            "size": size.at[0, 2].set(jnp.array([24.0, 24.0])),
            "ignore": jnp.array([[0.0, 0.0, 1.0]])}
  blob = heatmaps.gaussian_maps(jnp.array([[[40.0, 8.0]]]), (8, 12), 4, 0.5)
  with_blob = {"maps": outputs["maps"].at[..., :1].add(blob)}
  assert float(head.compute_loss(with_blob, region)) == pytest.approx(0.0, abs=1e-8)
  assert float(head.compute_loss(with_blob, {**region, "ignore": jnp.zeros((1, 3))})) > 1e-4
  # Trained by binary cross-entropy, the centre map is logits: the same map as logits gives
  # the same instances, sizes and scores.
  bce = heads.Centre(num_keypoints=3, image_hw=(32, 48), stride=4, sigma=1.0, loss="bce")
  logits = jax.scipy.special.logit(jnp.clip(maps, 1e-6, 1 - 1e-6))
  as_logits = {"maps": outputs["maps"].at[..., :1].set(logits)}
  for got, want in zip(bce.detect(as_logits, 3), (centres, sizes, scores)):
    np.testing.assert_allclose(got, want, atol=2e-3)
  # The evaluation pairs each labelled centre with its nearest peak, whatever their order.
  swapped = points[:, jnp.array([1, 0, 2])]
  matched, score = head.match_labels(head.decode(outputs), head.likelihood(outputs), swapped)
  np.testing.assert_allclose(matched[0, :2], swapped[0, :2], atol=0.1)
  assert score.shape == (1, 3)


# ---------------------------------------------------------------------------------------------
# Both stages on the mice.


def mice_config(data_dir, root):
  config = file_source_config(data_dir, "deeplabcut", project=root, box_padding=1.0,
                              channels=1)
  config.data.augment.flip_probability = 0.0
  config.data.augment.max_rotation_deg = 0.0
  config.two_stage = section = deeplabcut_config.find_then_refine()
  section.crop_multiple, section.crop_scale = 8, 1.0
  section.score_threshold = section.keypoint_threshold = 0.0  # young models: keep every peak
  section.centre.input_size = (32, 48)
  section.centre.model = {"backbone": dict(config.model.backbone),
                          "head": {"name": "centre", "stride": 4, "features": 8, "sigma": 1.0}}
  section.centre.num_train_steps, section.centre.batch_size = 150, 8
  section.centre.learning_rate = 5e-3
  config.num_train_steps, config.batch_size, config.eval_batch_size = 10, 8, 4
  config.log_every_steps = config.eval_every_steps = config.checkpoint_every_steps = 10
  return config


def test_mice_train_predict_track_and_evaluate(data_dir, project, tmp_path):
  root, truth = project
  workdir = str(tmp_path / "run")
  summary = two_stage.train_and_evaluate(mice_config(data_dir, root), workdir)
  assert summary["num_images"] == 5 and summary["instances"]["labelled"] == 9
  centre_run = runs.load_config(os.path.join(workdir, "centre"))
  assert centre_run.data.instances.max_instances == 2  # counted from the labels

  # Images: a list of instances each, best first, with the keypoints' names.
  test_frames = sorted(truth)[4::5]
  paths = [os.path.join(root, f) for f in test_frames]
  results = predict.predict_files(workdir, paths, str(tmp_path / "pred"))
  for path in paths:
    found = results[path]
    assert 1 <= len(found) <= 2
    assert [x["score"] for x in found] == sorted((x["score"] for x in found), reverse=True)
    assert set(found[0]["keypoints"]) == set(BODYPARTS)
  assert os.path.exists(tmp_path / "pred" / "img004_keypoints.png")

  # The export: every instance slot with its score, from which the one-file runner keeps the
  # instances predict keeps (the same threshold and OKS-NMS), in the same order.
  # In every format whose runtime is installed.
  models = {}
  for fmt in installed_export_formats():
    model = models[fmt] = exported.ExportedModel(export.export(
        workdir, fmt, frame_hw=FRAME_HW, out=str(tmp_path / f"mice{export.FORMATS[fmt]}")))
    for path in paths:
      with Image.open(path) as image:
        got = model.instances(np.asarray(image.convert("L"))[..., None])  # as the run: gray
      want = results[path]
      assert [x["score"] for x in got] == pytest.approx([x["score"] for x in want], abs=1e-4)
      for g, w in zip(got, want):
        points = np.array([w["keypoints"][name][:2] for name in BODYPARTS], float)
        np.testing.assert_allclose(g["keypoints"], points, atol=1e-3, err_msg=fmt)
  with pytest.raises(ValueError, match="use tracked_frames"):
    next(model.on_frames([np.zeros((*FRAME_HW, 1), np.uint8)]))

  # A video of the two mice walking towards each other on their own rows: two tracks, each
  # mouse keeping its id, written in DeepLabCut's multi-animal CSV layout.
  steps = 10
  walks = [np.stack([np.linspace(14, 40, steps), np.full(steps, 16.0)], -1),
           np.stack([np.linspace(82, 56, steps), np.full(steps, 46.0)], -1)]
  video = str(tmp_path / "mice.mp4")
  writer = predict.VideoWriter(video, 10)
  for t in range(steps):
    writer.write(mice_frame([walks[0][t], walks[1][t]]))
  writer.close()
  predictor = predict.open_predictor(workdir)
  out = predict.predict_video(predictor, video, str(tmp_path / "pred"))
  record = json.loads(open(out["json"]).read())
  ids_of = {0: set(), 1: set()}
  for t, frame in enumerate(record["frames"]):
    assert len(frame) == 2
    for instance in frame:
      snout = np.array(instance["keypoints"]["snout"][:2], float)
      mouse = int(np.argmin([np.linalg.norm(snout - (w[t] + OFFSETS[0])) for w in walks]))
      ids_of[mouse].add(instance["track"])
  assert len(ids_of[0]) == len(ids_of[1]) == 1 and ids_of[0] != ids_of[1]
  assert record["tracks"] == sorted(ids_of[0] | ids_of[1])
  with open(out["csv"], newline="") as f:
    rows = list(csv.reader(f))
  assert [r[0] for r in rows[:4]] == ["scorer", "individuals", "bodyparts", "coords"]
  assert rows[1][1:] == [f"track{i}" for i in record["tracks"] for _ in range(9)]
  assert len(rows) == 4 + steps
  (second,) = ids_of[1]
  column = 1 + 9 * record["tracks"].index(second)  # its snout's x
  want = [next(x for x in frame if x["track"] == second)["keypoints"]["snout"][0]
          for frame in record["frames"]]
  np.testing.assert_allclose([float(r[column]) for r in rows[4:]], want, atol=1e-3)
  # The one-file runner on the same video, each format: predict's tracks, ids and keypoints.
  keypoints = lambda instance: predict.trajectory([[instance["keypoints"][n] for n in BODYPARTS]])
  drawn = np.stack(list(exported.read_video(out["video"])[1])).astype(int)
  for fmt, model in models.items():
    overlay = str(tmp_path / f"mice_{fmt}_labeled.mp4")
    ran = exported.on_video(model, video, overlay=overlay)
    assert ran["tracks"] == record["tracks"], fmt
    # Its overlay: predict's, each track in its colour; keypoints within 1e-3 px of predict's
    # move a point or label that sits on a pixel boundary one pixel over (measured: 0.26 grey
    # levels in the mean, where the drawing itself changes the frames by 5.4).
    assert np.abs(np.stack(list(exported.read_video(overlay)[1])) - drawn).mean() < 0.5, fmt
    assert exported.video_csv(ran).splitlines()[:4] == [",".join(r) for r in rows[:4]]
    for got, want in zip(ran["frames"], record["frames"], strict=True):
      assert [x["track"] for x in got] == [x["track"] for x in want], fmt
      for g, w in zip(got, want):
        np.testing.assert_allclose(keypoints(g), keypoints(w), atol=1e-3, err_msg=fmt)

  # Evaluation: COCO AP end to end and on crops about the labelled centres, and the counts.
  result = two_stage.evaluate(workdir, "test", str(tmp_path / "eval"))
  counts = result["instances"]
  assert counts["found"] + counts["missed"] == counts["labelled"] == 9
  assert 0.0 <= result["coco_AP"] <= 1.0 and 0.0 <= result["coco_AP_true_centres"] <= 1.0
  assert "COCO AP" in two_stage.format_table(result)
