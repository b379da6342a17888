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
