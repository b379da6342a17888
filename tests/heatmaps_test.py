import jax.numpy as jnp
import numpy as np
import pytest

from kp_jax import heatmaps
from kp_jax.models import heads

STRIDE, SIGMA, SIZE = 4, 2.0, 96
# Sub-pixel points, several within a pixel or two of the image's borders and corners.
POINTS = np.array([[[0.0, 0.0], [95.0, 95.0], [0.3, 94.6], [47.3, 12.9], [3.9, 60.1],
                    [93.7, 1.2], [50.0, 50.0], [22.6, 71.45]]], np.float32)
# At least 3 sigma (24 px) inside, where a Gaussian is not cut by the border.
INTERIOR = np.array([[[47.3, 40.9], [50.0, 50.0], [25.6, 71.45], [70.2, 24.0]]], np.float32)


def encode(points):
  return heatmaps.gaussian_maps(jnp.asarray(points), (SIZE // STRIDE,) * 2, STRIDE, SIGMA)


def test_gaussian_target_peaks_at_the_point():
  # Pixel (5.5, 9.5) is map point ((5.5 + 0.5) / 4 - 0.5, (9.5 + 0.5) / 4 - 0.5) = (1, 2).
  maps = encode(np.array([[[5.5, 9.5]]]))
  assert maps.shape == (1, 24, 24, 1)
  assert maps[0, 2, 1, 0] == pytest.approx(1.0)
  assert maps[0, 2, 2, 0] == pytest.approx(np.exp(-1 / (2 * SIGMA**2)))
  assert maps[0, 3, 2, 0] == pytest.approx(np.exp(-2 / (2 * SIGMA**2)))


def test_dark_decodes_encoded_points_within_a_twentieth_of_a_pixel():
  decoded = heatmaps.decode_dark(encode(POINTS), STRIDE)
  np.testing.assert_allclose(decoded, POINTS, atol=0.05)


def test_dark_with_modulation_blur_stays_sub_pixel_inside():
  decoded = heatmaps.decode_dark(encode(INTERIOR), STRIDE, blur_sigma=SIGMA)
  np.testing.assert_allclose(decoded, INTERIOR, atol=0.1)


def test_quarter_offset_is_within_a_quarter_map_pixel_and_beats_argmax():
  maps = encode(POINTS)
  quarter = np.abs(heatmaps.decode_quarter_offset(maps, STRIDE) - POINTS)
  argmax = np.abs(heatmaps.decode_argmax(maps, STRIDE) - POINTS)
  # argmax is off by up to half a map pixel (2 px), quarter offset by at most a quarter (1 px).
  assert argmax.max() <= 0.5 * STRIDE + 1e-4 and quarter.max() <= 0.25 * STRIDE + 1e-4
  assert quarter.mean() < argmax.mean()


def test_soft_argmax_of_a_peaked_map_returns_the_peak():
  logits = np.zeros((1, 24, 24, 2), np.float32)
  logits[0, 7, 19, 0] = 60.0  # map point (19, 7): pixel (19.5 * 4 - 0.5, 7.5 * 4 - 0.5)
  logits[0, 0, 0, 1] = 60.0
  np.testing.assert_allclose(heatmaps.soft_argmax(jnp.asarray(logits), STRIDE),
                             [[[77.5, 29.5], [1.5, 1.5]]], atol=1e-3)


def test_soft_argmax_of_a_symmetric_blob_returns_its_centre():
  # The log of a Gaussian: softmax turns it back into the (normalised) Gaussian, whose mean is
  # its centre up to the tails the map's border cuts off 3 sigma away (a few hundredths).
  logits = jnp.log(encode(INTERIOR) + 1e-30)
  np.testing.assert_allclose(heatmaps.soft_argmax(logits, STRIDE), INTERIOR, atol=0.05)


# MMPose's UDP codec (mmpose/codecs/udp_heatmap.py and codecs/utils), re-implemented in NumPy
# float64 as the reference: input 192x256 (w, h), maps 48x64, sigma 2, blur kernel 11.
UDP_INPUT_HW, UDP_MAP_HW, UDP_SIGMA = (256, 192), (64, 48), 2.0


def mmpose_udp_encode(points):
  """generate_udp_gaussian_heatmaps(heatmap_size, points / scale_factor, visible, sigma):
  [K, 2] input pixels -> [H, W, K] (here channels last)."""
  (h_in, w_in), (h, w) = UDP_INPUT_HW, UDP_MAP_HW
  scale_factor = (np.array([w_in, h_in]) - 1) / (np.array([w, h]) - 1)
  radius = int(UDP_SIGMA * 3)
  size = 2 * radius + 1
  x = np.arange(size, dtype=np.float64)
  y = x[:, None]
  maps = np.zeros((h, w, len(points)))
  for k, point in enumerate(np.asarray(points, np.float64) / scale_factor):
    mu = (point + 0.5).astype(np.int64)
    left, top = mu - radius
    right, bottom = mu + radius + 1
    x0 = y0 = size // 2
    gaussian = np.exp(-((x - x0 - (point[0] - mu[0])) ** 2
                        + (y - y0 - (point[1] - mu[1])) ** 2) / (2 * UDP_SIGMA**2))
    g_x = max(0, -left), min(right, w) - left
    g_y = max(0, -top), min(bottom, h) - top
    h_x = max(0, left), min(right, w)
    h_y = max(0, top), min(bottom, h)
    maps[h_y[0]:h_y[1], h_x[0]:h_x[1], k] = gaussian[g_y[0]:g_y[1], g_x[0]:g_x[1]]
  return maps


def cv2_gaussian_blur(image, ksize: int):
  """cv2.GaussianBlur(image, (ksize, ksize), 0) on a zero-bordered copy (MMPose's
  gaussian_blur pads by the kernel's radius with zeros first): sigma from ksize as cv2."""
  sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8
  r = (ksize - 1) // 2
  taps = np.exp(-np.arange(-r, r + 1) ** 2 / (2 * sigma**2))
  taps /= taps.sum()
  padded = np.pad(image, r)
  rows = np.stack([np.convolve(col, taps, "valid") for col in padded.T], 1)
  return np.stack([np.convolve(row, taps, "valid") for row in rows])


def mmpose_udp_decode(maps, ksize: int = 11):
  """get_heatmap_maximum, refine_keypoints_dark_udp, then UDP's map -> input scale: [H, W, K]
  -> [K, 2] input pixels."""
  (h_in, w_in), (h, w) = UDP_INPUT_HW, UDP_MAP_HW
  out = []
  for k in range(maps.shape[-1]):
    heatmap = maps[..., k]
    y, x = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    blurred = cv2_gaussian_blur(heatmap, ksize)
    blurred *= heatmap.max() / blurred.max()
    log = np.pad(np.log(np.clip(blurred, 1e-3, 50.0)), 1, mode="edge")
    at = lambda dx, dy: log[y + 1 + dy, x + 1 + dx]
    dx, dy = 0.5 * (at(1, 0) - at(-1, 0)), 0.5 * (at(0, 1) - at(0, -1))
    dxx = at(1, 0) - 2 * at(0, 0) + at(-1, 0)
    dyy = at(0, 1) - 2 * at(0, 0) + at(0, -1)
    dxy = 0.5 * (at(1, 1) - at(1, 0) - at(0, 1) + 2 * at(0, 0) - at(-1, 0) - at(0, -1)
                 + at(-1, -1))
    hessian = np.array([[dxx, dxy], [dxy, dyy]]) + np.finfo(np.float32).eps * np.eye(2)
    out.append(np.array([x, y], np.float64) - np.linalg.solve(hessian, [dx, dy]))
  return np.array(out) * (np.array([w_in, h_in]) - 1) / (np.array([w, h]) - 1)


# Three points at least 3 sigma inside the map, then four at its borders and corners.
UDP_POINTS = np.array([[95.5, 127.5], [37.2, 201.9], [100.25, 64.75], [0.0, 0.0],
                       [191.0, 255.0], [150.6, 12.3], [3.1, 128.0]])


def test_udp_targets_equal_mmposes():
  got = heatmaps.udp_gaussian_maps(jnp.asarray(UDP_POINTS[None], jnp.float32), UDP_INPUT_HW,
                                   UDP_MAP_HW, UDP_SIGMA)[0]
  np.testing.assert_allclose(got, mmpose_udp_encode(UDP_POINTS), atol=1e-6)
  # The first and last pixel centres of the input sit on the map's: peaks of exactly 1 there.
  assert got[0, 0, 3] == pytest.approx(1.0) and got[63, 47, 4] == pytest.approx(1.0)


def test_udp_decoding_matches_mmposes_and_returns_the_encoded_points():
  # The DARK step of both on UDP targets, after MMPose's blur (kernel 11, sigma 2) and ours
  # (sigma 2, radius 6: two more taps, each below 1% of the centre's weight).
  maps = mmpose_udp_encode(UDP_POINTS)
  want = mmpose_udp_decode(maps)
  head = heads.Heatmap(num_keypoints=len(UDP_POINTS), image_hw=UDP_INPUT_HW, stride=4,
                       udp=True, blur_sigma=2.0)
  got = np.asarray(head.decode({"maps": jnp.asarray(maps[None], jnp.float32)}))[0]
  interior, corners = [0, 1, 2], [3, 4]
  not_corners = [0, 1, 2, 5, 6]
  # Both land on the interior points within 0.1 input pixels (0.025 map pixels); next to a
  # border (a Gaussian cut short: 0.2 and 0.8 map pixels from it) both are off alike, by up to
  # 2.8 px, and agree with each other within 0.1 px.
  np.testing.assert_allclose(got[interior], UDP_POINTS[interior], atol=0.1)
  np.testing.assert_allclose(want[interior], UDP_POINTS[interior], atol=0.1)
  np.testing.assert_allclose(got[not_corners], want[not_corners], atol=0.1)
  # On a corner pixel they part (MMPose pads the log-map by its edge, kp-jax's DARK expands
  # one pixel inside): each stays within 1.25 map pixels of the point.
  np.testing.assert_allclose(got[corners], UDP_POINTS[corners], atol=5.0)
  np.testing.assert_allclose(want[corners], UDP_POINTS[corners], atol=5.0)
