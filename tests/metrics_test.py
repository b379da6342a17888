import numpy as np
import pytest

from kp_jax import metrics


def reference_metrics(pred, true, visible, norm, mask):
  """Float64 loops over examples and keypoints, written from the definitions."""
  sq_sum = coords = 0.0
  nmes, pck = [], {t: [0, 0] for t in metrics.PCK_THRESHOLDS}
  for i in range(len(pred)):
    if not mask[i]:
      continue
    errors = []
    for k in range(pred.shape[1]):
      if visible[i, k]:
        dx, dy = float(pred[i, k, 0]) - true[i, k, 0], float(pred[i, k, 1]) - true[i, k, 1]
        sq_sum += dx * dx + dy * dy
        coords += 2
        e = np.hypot(dx, dy)
        errors.append(e)
        for t in pck:
          pck[t][0] += e <= t * norm[i]
          pck[t][1] += 1
    if errors:
      nmes.append(np.mean(errors) / norm[i])
  out = {"rmse_input_px": np.sqrt(sq_sum / coords), "nme": np.mean(nmes)}
  for t in metrics.FAILURE_THRESHOLDS:
    out[f"failure@{t}"] = np.mean(np.array(nmes) > t)
    # The cumulative error distribution on a fine grid, integrated by the trapezoid rule.
    grid = np.linspace(0, t, 20001)
    ced = (np.array(nmes)[None, :] <= grid[:, None]).mean(1)
    out[f"auc@{t}"] = np.trapezoid(ced, grid) / t
  out.update({f"pck@{t}": hits / total for t, (hits, total) in pck.items()})
  return out


def random_predictions(rng, b: int, k: int, size: float, noise: float, labelled: float):
  """(true, predicted [b, k, 2] float32, visible [b, k]): a `labelled` share visible."""
  true = rng.uniform(0, size, (b, k, 2)).astype(np.float32)
  pred = (true + rng.normal(0, noise, (b, k, 2))).astype(np.float32)
  return true, pred, (rng.uniform(size=(b, k)) < labelled).astype(np.float32)


def test_metrics_match_a_float64_reference_with_masks_and_invisible_keypoints():
  rng = np.random.default_rng(0)
  b, k = 37, 15
  true, pred, visible = random_predictions(rng, b, k, 96, 3, 0.8)
  visible[3] = 0  # an example with nothing visible counts in no average
  norm = rng.uniform(20, 40, b).astype(np.float32)
  mask = (np.arange(b) < 30).astype(np.float32)  # padding
  pred[30:] = 1e6  # padded rows must not matter
  sums = metrics.metric_sums(pred, true, visible, norm, mask)
  got = metrics.summarize({name: np.asarray(s) for name, s in sums.items()})
  want = reference_metrics(pred, true, visible, norm, mask)
  assert got.keys() == want.keys()
  for name in want:
    assert got[name] == pytest.approx(want[name], rel=1e-5 if "auc" not in name else 1e-3), name


def test_hand_computed_values():
  # Two keypoints, norm 10: errors 3-4-5 -> 5 px and 0 px.
  true = np.zeros((1, 2, 2), np.float32)
  pred = np.array([[[3.0, 4.0], [0.0, 0.0]]], np.float32)
  got = metrics.summarize(metrics.metric_sums(pred, true, np.ones((1, 2), np.float32),
                                              np.array([10.0], np.float32)))
  assert got["nme"] == pytest.approx(0.25)  # (5 + 0) / 2 / 10
  assert got["rmse_input_px"] == pytest.approx(np.sqrt(25 / 4))  # 9 + 16 over four coordinates
  assert got["pck@0.05"] == pytest.approx(0.5)  # 0 <= 0.5, 5 > 0.5
  assert got["pck@0.1"] == pytest.approx(0.5)  # 5 > 1
  assert got["failure@0.1"] == pytest.approx(1.0)


def test_sums_add_up_across_batches():
  rng = np.random.default_rng(1)
  args = [rng.uniform(0, 50, (8, 4, 2)), rng.uniform(0, 50, (8, 4, 2)),
          (rng.uniform(size=(8, 4)) > 0.3), rng.uniform(5, 9, 8)]
  args = [np.asarray(a, np.float32) for a in args]
  whole = metrics.summarize(metrics.metric_sums(*args))
  halves = [metrics.metric_sums(*[a[s] for a in args]) for s in (slice(0, 3), slice(3, 8))]
  summed = metrics.summarize({n: halves[0][n] + halves[1][n] for n in halves[0]})
  for name in whole:
    assert summed[name] == pytest.approx(whole[name], rel=1e-6)


def test_per_keypoint_sums_match_loops():
  rng = np.random.default_rng(1)
  b, k = 9, 4
  true = rng.uniform(0, 50, (b, k, 2)).astype(np.float32)
  pred = (true + rng.normal(0, 2, (b, k, 2))).astype(np.float32)
  visible = (rng.uniform(size=(b, k)) > 0.3).astype(np.float32)
  norm = rng.uniform(10, 20, b).astype(np.float32)
  mask = (np.arange(b) < 7).astype(np.float32)
  names = ("a", "b", "c", "d")
  got = metrics.summarize_keypoints(
      metrics.keypoint_sums(pred, true, visible, norm, mask), names)
  for j, name in enumerate(names):
    rel = [np.hypot(*(pred[i, j] - true[i, j])) / norm[i]
           for i in range(7) if visible[i, j]]
    assert got[name]["nme"] == pytest.approx(np.mean(rel), rel=1e-5)
    assert got[name]["pck@0.1"] == pytest.approx(np.mean(np.array(rel) <= 0.1), rel=1e-6)


def test_image_pixel_errors_match_a_float64_reference():
  # Each example's crop is its own scale, rotation and shift: errors in the source image are
  # those in the model input divided by the crop's scale.
  rng = np.random.default_rng(1)
  b, k = 9, 4
  true, pred, visible = random_predictions(rng, b, k, 64, 2, 0.7)
  mask = (np.arange(b) < 7).astype(np.float32)
  angle, scale = rng.uniform(-1, 1, b), rng.uniform(0.2, 3, b)
  crop = np.zeros((b, 3, 3))
  crop[:, 0, 0] = crop[:, 1, 1] = scale * np.cos(angle)
  crop[:, 0, 1], crop[:, 1, 0] = -scale * np.sin(angle), scale * np.sin(angle)
  crop[:, :2, 2], crop[:, 2, 2] = rng.uniform(-50, 50, (b, 2)), 1
  to_image = np.linalg.inv(crop)
  sums = metrics.metric_sums(pred, true, visible, np.ones(b, np.float32), mask,
                             to_image.astype(np.float32))
  got = metrics.summarize({name: np.asarray(s) for name, s in sums.items()})
  errors = [np.hypot(*(np.float64(pred[i, j]) - true[i, j])) / scale[i]
            for i in range(b) for j in range(k) if mask[i] and visible[i, j]]
  assert got["error_image_px"] == pytest.approx(np.mean(errors), rel=1e-5)
  assert got["rmse_image_px"] == pytest.approx(np.sqrt(np.mean(np.square(errors)) / 2), rel=1e-5)
  per_keypoint = metrics.summarize_keypoints(metrics.keypoint_sums(
      pred, true, visible, np.ones(b, np.float32), mask, to_image.astype(np.float32)), "abcd")
  for j, name in enumerate("abcd"):
    want = [np.hypot(*(np.float64(pred[i, j]) - true[i, j])) / scale[i]
            for i in range(b) if mask[i] and visible[i, j]]
    assert per_keypoint[name]["error_image_px"] == pytest.approx(np.mean(want), rel=1e-5)


def mmpose_pck(pred, true, mask, threshold, norm):
  """mmpose.evaluation.functional.keypoint_pck_accuracy's average accuracy, re-implemented in
  float64 from its definition: each coordinate divided by the example's normaliser, distances
  of unmasked keypoints (and of examples with a zero normaliser) left out, accuracy (d < t)
  per keypoint over its valid examples, then the mean over keypoints with any."""
  valid = mask & (norm > 0).all(1)[:, None]
  distances = np.linalg.norm((pred - true) / norm[:, None, :], axis=-1)
  accuracies = [np.mean(distances[valid[:, k], k] < threshold)
                for k in range(pred.shape[1]) if valid[:, k].any()]
  return np.mean(accuracies) if accuracies else 0.0


def mmpose_auc(pred, true, mask, norm_factor=30.0, num_thrs=20):
  """keypoint_auc: the mean PCK at thresholds i / num_thrs, i < num_thrs, distances / norm."""
  norm = np.full((len(pred), 2), norm_factor)
  return np.mean([mmpose_pck(pred, true, mask, i / num_thrs, norm) for i in range(num_thrs)])


def mmpose_epe(pred, true, mask):
  """keypoint_epe: the mean distance over unmasked keypoints."""
  return np.linalg.norm(pred - true, axis=-1)[mask].mean()


def test_mmpose_metrics_match_a_numpy_reimplementation_of_mmpose():
  # Keypoints in source pixels, seen through per-example similarity crops as the evaluation
  # sees them; one keypoint never labelled, one example with nothing labelled, padding rows.
  rng = np.random.default_rng(3)
  b, k = 23, 5
  true = rng.uniform(20, 300, (b, k, 2))
  pred = true + rng.normal(0, 1, (b, 1, 1)) * rng.normal(0, 12, (b, k, 2))
  labelled = rng.uniform(size=(b, k)) < 0.8
  labelled[:, 2] = False
  labelled[4] = False
  real = np.arange(b) < 20
  boxes = np.concatenate([rng.uniform(0, 50, (b, 2)), rng.uniform(40, 400, (b, 2))], 1)
  norm_image = rng.uniform(20, 60, b)  # the dataset's normaliser (a head size, a torso)
  angle, scale = rng.uniform(-1, 1, b), rng.uniform(0.2, 3, b)
  crop = np.zeros((b, 3, 3))
  crop[:, 0, 0] = crop[:, 1, 1] = scale * np.cos(angle)
  crop[:, 0, 1], crop[:, 1, 0] = -scale * np.sin(angle), scale * np.sin(angle)
  crop[:, :2, 2], crop[:, 2, 2] = rng.uniform(-50, 50, (b, 2)), 1
  to_input = lambda points: (np.einsum("bkj,bij->bki", points, crop[:, :2, :2])
                             + crop[:, None, :2, 2])
  f32 = lambda array: np.asarray(array, np.float32)
  sums = metrics.keypoint_sums(f32(to_input(pred)), f32(to_input(true)), f32(labelled),
                               f32(norm_image * scale), f32(real), f32(np.linalg.inv(crop)),
                               f32(boxes))
  got = metrics.keypoint_means({name: np.asarray(s) for name, s in sums.items()})
  mask = labelled & real[:, None]
  for t in metrics.MMPOSE_PCK_THRESHOLDS:
    by_norm = mmpose_pck(pred, true, mask, t, np.stack([norm_image] * 2, 1))
    by_box = mmpose_pck(pred, true, mask, t, np.stack([boxes[:, 2:].max(1)] * 2, 1))
    assert 0 < by_box < 1 and 0 < by_norm < 1  # neither trivially all nor nothing
    assert got[f"mmpose_pck@{t}"] == pytest.approx(by_norm, abs=1e-6)
    assert got[f"mmpose_pck_bbox@{t}"] == pytest.approx(by_box, abs=1e-6)
  assert got["mmpose_auc@30px"] == pytest.approx(mmpose_auc(pred, true, mask), abs=1e-6)
  pooled = metrics.summarize({n: np.asarray(s) for n, s in metrics.metric_sums(
      f32(to_input(pred)), f32(to_input(true)), f32(labelled), f32(norm_image * scale),
      f32(real), f32(np.linalg.inv(crop))).items()})
  assert pooled["error_image_px"] == pytest.approx(mmpose_epe(pred, true, mask), rel=1e-5)
  # The never-labelled keypoint is left out, as None, never NaN.
  per_keypoint = metrics.summarize_keypoints({n: np.asarray(s) for n, s in sums.items()},
                                             "abcde")
  assert set(per_keypoint["c"].values()) == {None}
  assert None not in per_keypoint["a"].values()


def test_nothing_labelled_gives_none_not_nan():
  zeros = np.zeros((2, 3), np.float32)
  points = np.ones((2, 3, 2), np.float32)
  sums = metrics.metric_sums(points, points, zeros, np.ones(2, np.float32), np.ones(2, np.float32))
  assert set(metrics.summarize({n: np.asarray(s) for n, s in sums.items()}).values()) == {None}
  per_keypoint = metrics.keypoint_sums(points, points, zeros, np.ones(2, np.float32),
                                       np.ones(2, np.float32), np.tile(np.eye(3), (2, 1, 1)),
                                       np.ones((2, 4), np.float32))
  assert set(metrics.keypoint_means({n: np.asarray(s) for n, s in per_keypoint.items()})
             .values()) == {None}


def test_an_error_on_the_threshold_counts_for_pck_but_not_for_mmpose_pck():
  # e = 5 (a 3-4-5 triangle), d = 50: e == 0.1 * d. Ours counts e <= t * d; MMPose e < t * d.
  true = np.zeros((1, 1, 2), np.float32)
  pred = np.array([[[3.0, 4.0]]], np.float32)
  ones = np.ones((1, 1), np.float32)
  norm, mask = np.array([50.0], np.float32), np.ones(1, np.float32)
  pooled = metrics.summarize({n: np.asarray(s) for n, s in metrics.metric_sums(
      pred, true, ones, norm, mask).items()})
  means = metrics.keypoint_means({n: np.asarray(s) for n, s in metrics.keypoint_sums(
      pred, true, ones, norm, mask).items()})
  assert pooled["pck@0.1"] == 1.0 and means["mmpose_pck@0.1"] == 0.0
