"""Trajectories after prediction: smoothing and a jitter figure. Pure NumPy over a video's
keypoints [frames, K, 3] (x, y, likelihood; NaN where missing); the models do not change.

  median   each coordinate replaced by the median of the present values in a window about
           its frame (DeepLabCut's median filter); missing frames stay missing
  kalman   a constant-velocity Kalman filter and Rauch-Tung-Striebel smoother per keypoint and
           coordinate, its observation noise growing as the likelihood falls (a confident
           detection pins the track, a doubtful one barely moves it); missing frames get the
           track's prediction where the gap is at most `max_gap` frames, longer gaps stay
           missing
"""

import warnings

import numpy as np

METHODS = ("median", "kalman")


def median(trajectory: np.ndarray, window: int = 5) -> np.ndarray:
  """`trajectory` [F, K, 3] with x and y the median over `window` frames (odd) about each
  frame, ignoring missing values; the likelihoods are kept."""
  if window < 1 or window % 2 == 0:
    raise ValueError(f"The median window must be odd and positive, not {window}.")
  half = window // 2
  xy = trajectory[..., :2]
  padded = np.pad(xy, ((half, half), (0, 0), (0, 0)), constant_values=np.nan)
  windows = np.lib.stride_tricks.sliding_window_view(padded, window, axis=0)  # [F, K, 2, w]
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # all-missing windows: NaN, as meant
    smoothed = np.nanmedian(windows, axis=-1)
  return np.concatenate([np.where(np.isnan(xy), np.nan, smoothed), trajectory[..., 2:]], -1)


def kalman(trajectory: np.ndarray, *, process_noise_px: float = 2.0,
           observation_noise_px: float = 2.0, max_gap: int = 10,
           min_likelihood: float = 0.05) -> np.ndarray:
  """`trajectory` [F, K, 3] smoothed by a constant-velocity Kalman smoother per keypoint and
  coordinate. Each frame's observation has standard deviation `observation_noise_px` /
  likelihood (a likelihood under `min_likelihood`, or a missing value, is no observation);
  the velocity changes by `process_noise_px` a frame. Gaps of at most `max_gap` frames between
  observations are bridged; the rest stay missing. The likelihoods are kept."""
  frames = len(trajectory)
  xy = trajectory[..., :2].astype(np.float64)
  likelihood = np.nan_to_num(trajectory[..., 2].astype(np.float64))
  observed = np.isfinite(xy).all(-1) & (likelihood >= min_likelihood)  # [F, K]
  noise = observation_noise_px / np.maximum(likelihood, min_likelihood)  # [F, K]
  transition = np.array([[1.0, 1.0], [0.0, 1.0]])
  q = process_noise_px ** 2 * np.array([[0.25, 0.5], [0.5, 1.0]])  # a velocity kick a frame
  shape = xy.shape[1:]  # [K, 2]: every keypoint and coordinate filtered at once
  mean = np.zeros((*shape, 2))
  cov = np.broadcast_to(np.diag([1e6, 1e6]), (*shape, 2, 2)).copy()  # unknown until seen
  means, covs, predicted_means, predicted_covs = [], [], [], []
  for t in range(frames):
    if t:
      mean = mean @ transition.T
      cov = transition @ cov @ transition.T + q
    predicted_means.append(mean)
    predicted_covs.append(cov)
    seen = observed[t][:, None] & np.ones(shape, bool)
    r = (noise[t] ** 2)[:, None] * np.ones(shape)
    innovation = np.where(seen, np.nan_to_num(xy[t]) - mean[..., 0], 0.0)
    gain = cov[..., :, 0] / (cov[..., 0, 0] + r)[..., None]  # [K, 2, 2]
    gain = np.where(seen[..., None], gain, 0.0)
    mean = mean + gain * innovation[..., None]
    cov = cov - gain[..., :, None] * cov[..., None, 0, :]
    means.append(mean)
    covs.append(cov)
  smoothed = [means[-1]]
  for t in range(frames - 2, -1, -1):  # Rauch-Tung-Striebel
    gain = covs[t] @ transition.T @ np.linalg.inv(predicted_covs[t + 1])
    smoothed.append(means[t] + (gain @ (smoothed[-1] - predicted_means[t + 1])[..., None])[..., 0])
  positions = np.stack(smoothed[::-1])[..., 0]  # [F, K, 2]
  bridged = _within_bridgeable_gaps(observed, max_gap)
  return np.concatenate([np.where(bridged[..., None], positions, np.nan),
                         trajectory[..., 2:]], -1)


def _within_bridgeable_gaps(observed: np.ndarray, max_gap: int) -> np.ndarray:
  """[F, K]: observed frames, and unobserved ones in a run of at most `max_gap` between two
  observed frames."""
  keep = observed.copy()
  for k in range(observed.shape[1]):
    seen = np.flatnonzero(observed[:, k])
    for before, after in zip(seen[:-1], seen[1:]):
      if 1 < after - before <= max_gap + 1:
        keep[before + 1:after, k] = True
  return keep


def smooth(trajectory: np.ndarray, method: str) -> np.ndarray:
  if method not in METHODS:
    raise ValueError(f"--smooth {method!r}: choose one of {METHODS}.")
  return median(trajectory) if method == "median" else kalman(trajectory)


def jumps(trajectory: np.ndarray, threshold_px: float) -> np.ndarray:
  """Per keypoint [K], the share of frames (with the frame before) where it moved more than
  `threshold_px` from the frame before; NaN for a keypoint never seen in two frames running."""
  xy = trajectory[..., :2]
  move = np.linalg.norm(xy[1:] - xy[:-1], axis=-1)  # NaN where either frame misses it
  counted = np.isfinite(move)
  with np.errstate(invalid="ignore"):
    return np.where(counted.any(0), (np.nan_to_num(move) > threshold_px).sum(0)
                    / np.maximum(counted.sum(0), 1), np.nan)
