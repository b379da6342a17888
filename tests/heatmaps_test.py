import jax.numpy as jnp
import numpy as np
import pytest

from kp_jax import heatmaps

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
