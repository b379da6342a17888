"""Find, then refine: one run that trains a centre model and a centred-instance keypoint model.

A config with a `two_stage` section (configs/deeplabcut.py) is two ordinary runs under one
workdir, each trained, checkpointed and resumed by kp_jax.train like any other:

  WORKDIR/centre/     stage 1: whole frames fitted into `two_stage.centre.input_size`, the
                      instance centre as the one keypoint, a heads.Centre model
  WORKDIR/keypoints/  stage 2: `crop_size` crops about each labelled instance's centre, at
                      `two_stage.crop_scale` input pixels per source pixel
  WORKDIR/two_stage.json  what stage 2 was derived with: the crop size from the labels, the
                      centre jitter from stage 1's measured error (reused when the run
                      resumes), and the scale the centre model saw the frames at
  WORKDIR/summary.json    the end-to-end evaluation (`evaluate`) on the validation split

`FindRefinePredictor` runs both stages' best checkpoints as one compiled function of whole
frames (kp_jax.find_refine), for predict, evaluate and export.

Stage 2's crops are jittered by up to `centre_jitter_px` source pixels (0: three times the centre
model's mean error on the training frames, at least `min_centre_jitter_px` and at most
`max_centre_jitter_fraction` of the crop), so it learns to work wherever stage 1 puts the crop.
"""

import copy
import dataclasses
import functools
import json
import math
import time

import jax
import ml_collections
import numpy as np
import tensorflow as tf
from absl import logging
from etils import epath

from kp_jax import coco_eval, evaluation, find_refine, poses, runs, steps, train
from kp_jax.data import instances, pipeline, pixels
from kp_jax.exported import fit_matrix


def _plain(config) -> ml_collections.ConfigDict:
  """An unlocked copy of `config` without its two_stage section."""
  values = copy.deepcopy(config.to_dict())
  values.pop("two_stage", None)
  return ml_collections.ConfigDict(values)


def centre_config(config, max_instances: int = 1) -> ml_collections.ConfigDict:
  """Stage 1's config: the keypoint config's data and optimiser, the centre section's model,
  input size and budget, `max_instances` instance slots per image."""
  section, out = config.two_stage.centre, _plain(config)
  out.name = f"{config.name}/centre"
  out.data.instances.stage = "centre"
  out.data.instances.max_instances = max_instances
  out.data.input_size = tuple(section.input_size)
  out.data.box_padding = 1.0  # the whole frame
  out.data.augment.flip_probability = 0.0  # centres: nothing to swap
  out.data.augment.half_body_probability = 0.0
  out.model = ml_collections.ConfigDict(section.model.to_dict())
  out.optimizer.learning_rate = section.learning_rate
  out.flip_test = False
  out.likelihood_cutoff = 0.0
  for key in ("num_train_steps", "batch_size"):
    out[key] = section[key]
  out.eval_batch_size = section.batch_size
  out.eval_every_steps = out.checkpoint_every_steps = out.num_train_steps
  out.optimizer.warmup_steps = min(out.optimizer.warmup_steps, out.num_train_steps // 10)
  return out


def keypoint_config(config, derived: dict) -> ml_collections.ConfigDict:
  """Stage 2's config: `config` on crops of `derived["crop_size"]` about each instance centre,
  jittered by `derived["centre_jitter_px"]`."""
  out = _plain(config)
  out.name = f"{config.name}/keypoints"
  out.data.instances.stage = "crop"
  out.data.instances.crop_size = tuple(derived["crop_size"])
  out.data.input_size = tuple(derived["input_size"])
  out.data.box_padding = 1.0  # the crop already holds the margin
  jitter_input_px = derived["centre_jitter_px"] * derived["crop_scale"]
  out.data.augment.max_shift = jitter_input_px / min(out.data.input_size)
  return out


def derive_crops(config, centre_error_px: float) -> dict:
  """Stage 2's crop (from the labels unless `two_stage.crop_size` is set) and centre jitter."""
  section = config.two_stage
  scale, multiple = section.crop_scale, section.crop_multiple
  if section.crop_size:
    crop = np.array(section.crop_size, np.float64)
  else:  # the largest instance, with margin
    source = pipeline.get_source(_plain(config).data)  # the source's own view (stage "")
    crop = instances.largest_crop(source, config.data.instances)
  input_size = tuple(int(multiple * math.ceil(n * scale / multiple)) for n in crop)
  if section.crop_size:  # as set: fitted into the rounded input
    scale = find_refine.crop_scale(crop, input_size)
  else:  # grown to fill the rounded input at exactly crop_scale
    crop = np.array(input_size) / scale
  jitter = section.centre_jitter_px or float(np.clip(
      3 * centre_error_px, section.min_centre_jitter_px,
      section.max_centre_jitter_fraction * crop.min()))
  return {"crop_size": [float(v) for v in crop], "input_size": list(input_size),
          "crop_scale": float(scale), "centre_error_train_px": centre_error_px,
          "centre_jitter_px": float(jitter), "instances": _instances_record(config),
          "centre_scale": training_centre_scale(config)}


def training_centre_scale(config, frames: int = 256) -> float:
  """The centre model's input pixels per source pixel in training: the median, over the first
  `frames` training frames, of the scale fitting each into `two_stage.centre.input_size`.
  Prediction runs the centre model at this scale on frames of any size."""
  source = pipeline.get_source(_plain(config).data)
  sizes = source.load("train", 0, 1).take(frames).map(lambda ex: tf.shape(ex["image"])[:2])
  centre_hw = tuple(config.two_stage.centre.input_size)
  return float(np.median([find_refine.fit_scale(hw, centre_hw)
                          for hw in sizes.as_numpy_iterator()]))


def _instances_record(config) -> dict:
  """What places an instance's centre: the stages' one definition, as JSON reads it back."""
  fields = config.data.instances
  return json.loads(json.dumps({key: fields[key] for key in ("centre", "anchor", "margin")}))


def _check_same_instances(derived: dict, config, record):
  """A resumed two-stage run must place centres as its stages were trained to."""
  saved, now = derived["instances"], _instances_record(config)
  differences = [f"data.instances.{key}: run {saved[key]!r}, config {now[key]!r}"
                 for key in saved if saved[key] != now[key]]
  if differences:
    raise ValueError(f"{record}: this run's stages were trained with other instance centres ("
                     + "; ".join(differences) + "). Set them as the run had them, or use "
                     "another --workdir.")


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains both stages into `workdir` (each resuming where it stopped), then evaluates the
  two end to end on the validation split; returns the summary (also summary.json)."""
  start = time.time()
  root = epath.Path(workdir)
  root.mkdir(parents=True, exist_ok=True)
  record = root / "two_stage.json"
  derived = json.loads(record.read_text()) if record.exists() else None
  if derived is not None:  # resuming: stage 2 keeps the crops it started with
    _check_same_instances(derived, config, record)
  # Stage 2's config errors before stage 1 trains (train.train_and_evaluate checks stage 1's;
  # stage 2's config differs from the plain one only in its crops, which it does not read).
  train.check_config(_plain(config))
  max_instances = (config.data.instances.get("max_instances", 0) or
                   instances.most_instances(pipeline.get_source(_plain(config).data)))
  centre_summary = train.train_and_evaluate(centre_config(config, max_instances),
                                            str(root / "centre"))
  if "preempted_at_step" in centre_summary:
    return centre_summary
  if derived is None:
    centre_train = evaluation.evaluate_run(str(root / "centre"), "train")
    derived = derive_crops(config, centre_train["error_image_px"])
    if jax.process_index() == 0:
      record.write_text(json.dumps(derived, indent=2))
      (root / "config.json").write_text(config.to_json_best_effort(indent=2))
  logging.info("Stage 2 crops: %s", derived)
  keypoint_summary = train.train_and_evaluate(keypoint_config(config, derived),
                                              str(root / "keypoints"))
  if "preempted_at_step" in keypoint_summary:
    return keypoint_summary
  result = evaluate(workdir, "validation", write=jax.process_index() == 0)
  summary = {"config": config.name, "split": "validation",
             **{k: v for k, v in result.items() if k != "per_keypoint"},
             "wall_seconds": time.time() - start,
             "centre_run": centre_summary, "keypoint_run": keypoint_summary}
  if jax.process_index() == 0:
    (root / "summary.json").write_text(json.dumps(summary, indent=2))
  logging.info("Summary: %s", json.dumps({k: v for k, v in summary.items()
                                           if not k.endswith("_run")}))
  return summary


# ---------------------------------------------------------------------------------------------
# Prediction: both stages composed into one compiled function of whole frames.


def is_find_refine(workdir: str) -> bool:
  """Whether `workdir` is a two-stage run (kp_jax.two_stage): centre/ and keypoints/ runs."""
  return (epath.Path(workdir) / "two_stage.json").exists()



class FindRefinePredictor(runs.Drawing):
  """The best checkpoints of a two-stage workdir's centre and keypoint models, composed into
  one compiled function of whole frames (kp_jax.find_refine)."""

  def __init__(self, workdir: str, likelihood_cutoff: float | None = None,
               score_threshold: float | None = None, scale: float = 1.0,
               portable: bool = False):
    """`scale`: how much larger the animals look in the frames to predict than in the
    labelled ones (2: a camera zoomed in twice as far); both stages see them at their
    training size. `portable`: layers that lower alike for every platform (runs.load_run)."""
    if scale <= 0:
      raise ValueError(f"--scale {scale}: the frames' magnification must be positive.")
    centre = runs.load_run(str(epath.Path(workdir) / "centre"), portable=portable)
    keypoints = runs.load_run(str(epath.Path(workdir) / "keypoints"), portable=portable)
    data = keypoints.config.data
    self.config = keypoints.config
    self.step = {"centre": centre.step, "keypoints": keypoints.step}
    self._describe(keypoints, likelihood_cutoff)
    self.crop_size = tuple(data.instances.crop_size)
    self.max_instances = int(centre.config.data.instances.get("max_instances", 1))
    self.selection, self.tracking = None, None
    if self.multi_instance:  # how candidates become instances, and instances tracks
      section = runs.load_config(workdir).two_stage
      self.selection = poses.Selection(
          section.score_threshold if score_threshold is None else score_threshold,
          section.nms_threshold, section.keypoint_threshold,
          tuple(float(s) for s in keypoints.oks_sigmas))
      self.tracking = {"min_iou": section.track_min_iou, "max_age": section.track_max_age}
    centre_scale = json.loads((epath.Path(workdir) / "two_stage.json").read_text()).get(
        "centre_scale")  # None in runs from before it was recorded
    self.stages = find_refine.Stages(
        centre.model.apply, centre.head, tuple(centre.image_shape[:2]), keypoints.model.apply,
        keypoints.head, tuple(keypoints.image_shape[:2]),
        find_refine.crop_scale(self.crop_size, keypoints.image_shape[:2]) / scale,
        *pixels.normalisation(data, keypoints.image_shape[2]), self.max_instances,
        flip_permutation=keypoints.flip_permutation,
        centre_scale=None if centre_scale is None else centre_scale / scale)
    self._predict = jax.jit(functools.partial(find_refine.predict_frames, self.stages))
    self._refine = jax.jit(functools.partial(find_refine.refine, self.stages))
    self.variables = (steps.eval_variables(centre.state), steps.eval_variables(keypoints.state))

  @property
  def multi_instance(self) -> bool:
    return self.max_instances > 1

  def with_stages(self, **changes) -> "FindRefinePredictor":
    """This predictor with `find_refine.Stages` fields changed (e.g. `centre_scale=None`: every
    frame fitted into the centre model's training input, as before the scale was recorded)."""
    other = copy.copy(self)
    other.stages = dataclasses.replace(self.stages, **changes)
    other._predict = jax.jit(functools.partial(find_refine.predict_frames, other.stages))
    other._refine = jax.jit(functools.partial(find_refine.refine, other.stages))
    return other

  def on_frames(self, images) -> dict:
    """`find_refine.predict_frames` of frames [B, H, W, C] (uint8 pixels, or floats in
    [0, 1]), as NumPy."""
    return jax.device_get(self._predict(*self.variables, images))

  def at_centres(self, images, centres) -> dict:
    """`find_refine.refine` of frames (as `on_frames`') about given centres [B, N, 2] (the
    labels', a detector's)."""
    return jax.device_get(self._refine(self.variables[1], images, centres))

  def instances(self, result: dict, scores=None, selection=None) -> list[list[dict]]:
    """Each frame's instances, best first ({"score", "keypoints" [K, 2], "likelihood" [K],
    "box" [4]: the centre model's, x0, y0, x1, y1}): the candidates of `result` (`on_frames`;
    detection scores `scores` [B, N], default the centre model's) scoring at least the
    threshold, OKS duplicates removed (`selection`, default the run's)."""
    scores = result["scores"] if scores is None else scores
    selection = selection or self.selection
    frames = []
    for points, likelihood, detection, box in zip(result["keypoints"], result["likelihood"],
                                                  scores, result["boxes"]):
      kept, instance_scores = poses.select(selection, points, likelihood, detection)
      frames.append([{"score": float(instance_scores[i]), "keypoints": points[i],
                      "likelihood": likelihood[i], "box": box[i]} for i in kept])
    return frames

  def crop_matrix(self, image_hw, box=None):
    del image_hw
    if box is not None:
      raise ValueError("--box: a two-stage model finds the instance itself; leave --box out.")
    return None

  def on_images(self, images, matrix=None) -> tuple[np.ndarray, np.ndarray]:
    """(keypoints [B, K, 2] in the images' pixels, likelihoods [B, K]) of the best instance."""
    del matrix  # the centre model places the crops
    result = self.on_frames(images)
    return result["keypoints"][:, 0], result["likelihood"][:, 0]


# ---------------------------------------------------------------------------------------------
# Evaluation.


def _frames_of(examples, batch_size: int):
  """Batches of (uint8 frames [B, H, W, C], examples) of one frame size, in order, from a
  dataset of examples (one per frame)."""
  batch = []
  for example in examples.as_numpy_iterator():
    if batch and (len(batch) == batch_size or
                  batch[0]["image"].shape != example["image"].shape):
      yield np.stack([e["image"] for e in batch]), batch
      batch = []
    batch.append(example)
  if batch:
    yield np.stack([e["image"] for e in batch]), batch


def _mean_over(values, mask) -> float | None:
  return float(values[mask].mean()) if mask.any() else None


def evaluate(workdir: str, split: str, output_dir: str | None = None,
             write: bool = True) -> dict:
  """Both stages on `split`'s raw frames, in source pixels: stage 1 alone (centre error,
  instances found: every labelled anchor keypoint inside the crop it places), end to end (keypoint
  error per keypoint, PCK at 5 and 10 px), beside the keypoint model on crops placed by the true
  labels and the mean-shape baseline (`_training_mean`)."""
  config = runs.load_config(workdir)
  source = pipeline.get_source(_plain(config).data)
  pipeline.check_split(source, split)
  predictor = FindRefinePredictor(workdir)
  several = source.images is not None
  summary = (_evaluate_instances if several else _evaluate_single)(
      workdir, split, config, predictor, source)
  if write:
    output_dir = epath.Path(output_dir or epath.Path(workdir) / "eval" / split)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
  return summary


def _evaluate_single(workdir: str, split: str, config, predictor, source) -> dict:
  """`evaluate` where each frame holds one instance."""
  names = source.spec.names
  resolved = instances.resolve(config.data.instances, source.spec)
  # Found: the crop holds the keypoints that place it (a far, rarely labelled one may not fit).
  anchor = list(resolved.anchor or range(source.spec.num_keypoints))
  mean_shape = _training_mean(source, predictor.stages.centre_hw)
  errors, baseline, labelled, centre_errors, found, centre_labelled = [], [], [], [], [], []
  for frames, examples in _frames_of(source.load(split, 0, 1), config.eval_batch_size):
    result = predictor.on_frames(frames)
    to_frame = np.linalg.inv(fit_matrix(frames.shape[1:3], predictor.stages.centre_hw))
    for i, example in enumerate(examples):
      visible = example["visible"] > 0
      errors.append(np.linalg.norm(result["keypoints"][i, 0] - example["keypoints"], axis=-1))
      baseline.append(np.linalg.norm(mean_shape @ to_frame[:2, :2].T + to_frame[:2, 2]
                                     - example["keypoints"], axis=-1))
      labelled.append(visible)
      centre, _, has_centre = (np.asarray(t) for t in resolved.centre(example))
      centre_labelled.append(bool(has_centre))
      centre_errors.append(float(np.linalg.norm(result["centres"][i, 0] - centre)))
      inside = np.abs(example["keypoints"] - result["centres"][i, 0]) <= (
          np.array(predictor.crop_size[::-1]) / 2)
      found.append(bool(np.all((inside.all(-1) | ~visible)[anchor])))
  errors, baseline, labelled = np.array(errors), np.array(baseline), np.array(labelled)
  centre_labelled = np.array(centre_labelled)
  true_crops = evaluation.evaluate_run(str(epath.Path(workdir) / "keypoints"), split)
  per_keypoint = {
      name: {"error_px": _mean_over(errors[:, k], labelled[:, k]),
             "error_px_true_crops": true_crops["per_keypoint"][name]["error_image_px"],
             "baseline_error_px": _mean_over(baseline[:, k], labelled[:, k]),
             "num_labelled": int(labelled[:, k].sum())}
      for k, name in enumerate(names)}
  summary = {
      "workdir": workdir, "split": split, "num_frames": len(errors),
      "error_px": _mean_over(errors, labelled),
      "error_px_true_crops": true_crops["error_image_px"],
      "baseline_error_px": _mean_over(baseline, labelled),
      "pck@5px": _mean_over(errors <= 5, labelled),
      "pck@10px": _mean_over(errors <= 10, labelled),
      "centre_error_px": _mean_over(np.array(centre_errors), centre_labelled),
      "instances_found": float(np.mean(found)), "instances_missed": int(len(found) - sum(found)),
      "crop_size": list(predictor.crop_size), "per_keypoint": per_keypoint}
  return summary


def _evaluate_instances(workdir: str, split: str, config, predictor, source) -> dict:
  """`evaluate` where an image holds several instances: COCO keypoint AP of the instances
  found end to end (every candidate after OKS-NMS, ranked by score) beside the keypoint model
  on crops about the labelled centres (the "ground-truth boxes" rows of top-down tables); at
  the score threshold, the labelled instances found, missed and duplicated and the false
  positives (matched as COCO matches, OKS >= 0.5); the pixel error of the found ones."""
  del workdir
  spec = source.spec
  sigmas = spec.oks_sigmas()
  resolved = instances.resolve(config.data.instances, spec)
  every_candidate = dataclasses.replace(predictor.selection, score_threshold=0.0)
  truth, found_results, true_results, errors, visible = [], [], [], [], []
  counts = {"labelled": 0, "found": 0, "missed": 0, "duplicates": 0, "false_positives": 0}
  as_array = lambda xs, key, shape: np.array([x[key] for x in xs]).reshape(len(xs), *shape)
  k = spec.num_keypoints
  for frames, images in _frames_of(source.images.load(split, 0, 1), config.eval_batch_size):
    result = predictor.on_frames(frames)
    chosen = predictor.instances(result)
    candidates = predictor.instances(result, selection=every_candidate)
    centres = [np.asarray(resolved.centre(image)[0]) for image in images]
    most = max(len(c) for c in centres)
    true = predictor.at_centres(frames, np.stack(
        [np.pad(c, ((0, most - len(c)), (0, 0))) for c in centres]).astype(np.float32))
    for i, image in enumerate(images):
      image_id, n = int(image["image_id"]), len(image["keypoints"])
      truth += [(image_id, *labels) for labels in zip(image["box"], image["keypoints"],
                                                      image["visible"])]
      true_scores = poses.instance_scores(np.ones(n), true["likelihood"][i, :n],
                                          predictor.selection.keypoint_threshold)
      true_results += coco_eval.results([image_id] * n, true["keypoints"][i, :n], true_scores, 1)
      found_results += coco_eval.results(
          [image_id] * len(candidates[i]), as_array(candidates[i], "keypoints", (k, 2)),
          [x["score"] for x in candidates[i]], 1)
      points = as_array(chosen[i], "keypoints", (k, 2))
      match = poses.match_labels(points, [x["score"] for x in chosen[i]], image["keypoints"],
                                 image["visible"], image["box"][:, 2] * image["box"][:, 3],
                                 sigmas)
      counts["labelled"] += int((image["visible"].sum(-1) > 0).sum())
      counts["found"] += len(match["pairs"])
      for key in ("missed", "duplicates", "false_positives"):
        counts[key] += match[key]
      for p, g in match["pairs"]:
        errors.append(np.linalg.norm(points[p] - image["keypoints"][g], axis=-1))
        visible.append(image["visible"][g] > 0)
  ids, boxes, keypoints, labelled = (np.array(column) for column in zip(*truth))
  ground_truth = coco_eval.ground_truth_from_examples(ids, boxes, keypoints, labelled,
                                                      spec.names)
  ap = coco_eval.keypoint_ap(ground_truth, found_results, sigmas, 1)
  ap_true = coco_eval.keypoint_ap(ground_truth, true_results, sigmas, 1)
  errors, visible = np.array(errors).reshape(-1, k), np.array(visible).reshape(-1, k)
  return {"split": split, "num_images": len(set(ids.tolist())), "coco_AP": ap["AP"],
          "coco_AP_true_centres": ap_true["AP"],
          "ap_ratio_to_true_centres": ap["AP"] / ap_true["AP"] if ap_true["AP"] > 0 else None,
          **{f"coco_{key}": value for key, value in ap.items() if key != "AP"},
          "score_threshold": predictor.selection.score_threshold, "instances": counts,
          "instances_found": counts["found"] / max(counts["labelled"], 1),
          "error_px_found": _mean_over(errors, visible), "crop_size": list(predictor.crop_size),
          "per_keypoint": {name: {"error_px_found": _mean_over(errors[:, j], visible[:, j])}
                           for j, name in enumerate(spec.names)}}


def _training_mean(source, input_hw) -> np.ndarray:
  """The mean-shape baseline: each keypoint's mean labelled position [K, 2] over the training
  frames, each frame fitted whole into `input_hw` (so frames of other sizes or zooms average
  where they sit in the frame, as a whole-frame model's baseline)."""
  total, count = 0.0, 0.0
  for example in source.load("train", 0, 1).as_numpy_iterator():
    matrix = fit_matrix(example["image"].shape[:2], input_hw)
    points = example["keypoints"] @ matrix[:2, :2].T + matrix[:2, 2]
    total = total + points * example["visible"][:, None]
    count = count + example["visible"]
  return total / np.maximum(count, 1)[:, None]


def format_table(summary: dict) -> str:
  cell = lambda value, spec: "-" if value is None else format(value, spec)
  if "coco_AP_true_centres" in summary:  # several instances per image
    counts = summary["instances"]
    lines = [f"find-then-refine, every instance, {summary['split']} ({summary['num_images']} "
             f"images), source pixels; crops {summary['crop_size']}",
             f"  COCO AP {summary['coco_AP']:.3f} end to end, {summary['coco_AP_true_centres']:.3f}"
             f" on crops about the labelled centres (ratio "
             f"{cell(summary['ap_ratio_to_true_centres'], '.3f')})",
             f"  at score >= {summary['score_threshold']}: {counts['found']} of "
             f"{counts['labelled']} instances found, {counts['missed']} missed, "
             f"{counts['duplicates']} duplicated, {counts['false_positives']} false positives; "
             f"found ones' error {cell(summary['error_px_found'], '.2f')} px",
             "| keypoint | error of found instances px |", "| --- | --- |"]
    lines += [f"| {name} | {cell(m['error_px_found'], '.2f')} |"
              for name, m in summary["per_keypoint"].items()]
    return "\n".join(lines)
  lines = [f"find-then-refine, {summary['split']} ({summary['num_frames']} frames), source "
           f"pixels; crops {summary['crop_size']}",
           f"  stage 1: centre error {cell(summary['centre_error_px'], '.2f')} px, instances "
           f"found {summary['instances_found']:.3f} ({summary['instances_missed']} missed)",
           f"  end to end: {cell(summary['error_px'], '.2f')} px, PCK@5px "
           f"{cell(summary['pck@5px'], '.3f')}, PCK@10px {cell(summary['pck@10px'], '.3f')}; "
           f"crops from the labels: {cell(summary['error_px_true_crops'], '.2f')} px; "
           f"baseline {cell(summary['baseline_error_px'], '.2f')} px",
           "| body part | end to end px | crops from labels px | baseline px | labelled |",
           "| --- | --- | --- | --- | --- |"]
  rows = [*summary["per_keypoint"].items(), ("all", {**summary, "num_labelled": ""})]
  lines += [f"| {name} | {cell(m['error_px'], '.2f')} | {cell(m['error_px_true_crops'], '.2f')} "
            f"| {cell(m['baseline_error_px'], '.2f')} | {m['num_labelled']} |"
            for name, m in rows]
  return "\n".join(lines)
