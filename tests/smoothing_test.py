"""kp_jax/smoothing.py: median and Kalman smoothing of trajectories, and the jump figure."""

import numpy as np
import pytest

from kp_jax import smoothing


def track(xy, likelihood=None):
  """[F, K, 2] positions (NaN: missing) -> [F, K, 3] with likelihoods (default 1)."""
  xy = np.asarray(xy, np.float64)
  likelihood = np.ones(xy.shape[:2]) if likelihood is None else np.asarray(likelihood)
  return np.concatenate([xy, likelihood[..., None]], -1)


def test_median_removes_a_one_frame_spike_and_keeps_gaps():
  x = np.arange(9.0)
  xy = np.stack([x, 2 * x], -1)[:, None]  # one keypoint on a straight line
  xy[4] = [40.0, -30.0]  # a one-frame jump
  xy[7] = np.nan  # a missing frame
  out = smoothing.median(track(xy), window=3)
  # Per coordinate, the median of frames 3-5: x of (3, 40, 5), y of (6, -30, 10).
  assert out[4, 0, :2].tolist() == [5.0, 6.0]
  assert np.isnan(out[7, 0, :2]).all()  # missing stays missing
  assert out[8, 0, :2].tolist() == [8.0, 16.0]  # the median of the present values (8 alone)
  np.testing.assert_array_equal(out[..., 2], 1.0)  # likelihoods kept
  with pytest.raises(ValueError, match="odd"):
    smoothing.median(track(xy), window=4)


def test_kalman_follows_a_moving_point_closer_than_its_noisy_detections():
  rng = np.random.default_rng(0)
  frames = 200
  truth = np.stack([np.linspace(10, 110, frames), 50 + 20 * np.sin(np.arange(frames) / 30)], -1)
  noisy = truth + rng.normal(0, 2.0, truth.shape)
  out = smoothing.kalman(track(noisy[:, None]))
  raw_error = np.linalg.norm(noisy - truth, axis=-1).mean()
  smooth_error = np.linalg.norm(out[:, 0, :2] - truth, axis=-1).mean()
  assert smooth_error < 0.6 * raw_error  # measured: 0.52 of it


def test_kalman_trusts_likelihood_and_bridges_only_short_gaps():
  frames = 60
  truth = np.stack([np.arange(frames, dtype=float), np.full(frames, 5.0)], -1)[:, None]
  xy, likelihood = truth.copy(), np.ones((frames, 1))
  xy[20] += [0.0, 40.0]  # a doubtful detection far off the track
  likelihood[20] = 0.06
  xy[30:34] = np.nan  # a short gap: bridged
  xy[45:58] = np.nan  # a gap longer than max_gap: stays missing
  out = smoothing.kalman(track(xy, likelihood), max_gap=10)
  assert abs(out[20, 0, 1] - 5.0) < 2.0  # the doubtful detection barely moves the track
  np.testing.assert_allclose(out[30:34, 0, :2], truth[30:34, 0], atol=0.5)  # on the line
  assert np.isnan(out[45:58, 0, :2]).all() and np.isfinite(out[58:, 0, :2]).all()


def test_jumps_count_moves_above_the_threshold_between_present_frames():
  xy = np.zeros((6, 2, 2))
  xy[:, 0, 0] = [0, 5, 30, 31, 31, 80]  # moves 5, 25, 1, 0, 49: two above 20
  xy[:, 1] = np.nan  # never seen
  xy[3, 0] = np.nan  # frames 2-3 and 3-4 have no move to count: 3 of 5 left
  shares = smoothing.jumps(track(xy), threshold_px=20.0)
  assert shares[0] == pytest.approx(2 / 3) and np.isnan(shares[1])
