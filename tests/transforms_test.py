import math

import numpy as np
import pytest
import tensorflow as tf

from kp_jax.data import faces, transforms
from kp_jax.data.keypoints import FACE15

SIZE = 48


def dots_example(points, intensities):
  """An image with a Gaussian dot (sigma 1.5 px) of its own intensity at each keypoint."""
  yy, xx = np.mgrid[0:SIZE, 0:SIZE]
  image = np.zeros((SIZE, SIZE, 1), np.float32)
  for (x, y), v in zip(points, intensities):
    image[..., 0] += v * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.5**2))
  return {"image": tf.constant(image), "keypoints": tf.constant(points, tf.float32),
          "visible": tf.ones(len(points)), "norm": tf.constant(10.0)}


def centroid_near(image, point, radius=3):
  """Intensity-weighted centroid of the image within `radius` px of `point`."""
  yy, xx = np.mgrid[0:SIZE, 0:SIZE]
  weight = image[..., 0] * (np.hypot(xx - point[0], yy - point[1]) <= radius)
  return np.array([(weight * xx).sum(), (weight * yy).sum()]) / weight.sum()


# Dots well apart and inside the image under every transform of the table below.
POINTS = np.array([[16.3, 18.7], [30.8, 17.2], [23.5, 30.1]], np.float32)
INTENSITIES = np.array([1.0, 2.0, 3.0])
SWAP_FIRST_TWO = np.array([1, 0, 2])


@pytest.mark.parametrize("in_tf_data", [False, True])
@pytest.mark.parametrize("angle_deg, scale, shift, flip", [
    (0.0, 1.0, (0.0, 0.0), False),
    (0.0, 1.0, (0.0, 0.0), True),
    (17.0, 1.0, (0.0, 0.0), False),
    (-25.0, 1.15, (2.5, -1.75), True),
    (8.0, 0.85, (-3.0, 2.0), False),
])
def test_warp_moves_keypoints_exactly_as_the_pixels(angle_deg, scale, shift, flip, in_tf_data):
  example = dots_example(POINTS, INTENSITIES)
  matrix = transforms.affine_matrix(math.radians(angle_deg), scale, tf.constant(shift), flip,
                                    SIZE, SIZE)
  op = lambda ex: transforms.warp(ex, matrix, SWAP_FIRST_TWO, flip)
  if in_tf_data:
    out = next(iter(tf.data.Dataset.from_tensors(example).map(op).as_numpy_iterator()))
  else:
    out = {k: np.asarray(v) for k, v in op(example).items()}
  for j, point in enumerate(out["keypoints"]):
    np.testing.assert_allclose(centroid_near(out["image"], point), point, atol=0.1)
    # The keypoint keeps its identity: under a flip, label j sits on dot SWAP_FIRST_TWO[j].
    source = SWAP_FIRST_TWO[j] if flip else j
    peak = out["image"][int(round(point[1])), int(round(point[0])), 0]
    assert peak == pytest.approx(INTENSITIES[source], rel=0.15)
  assert out["norm"] == pytest.approx(10.0 * scale, rel=1e-5)


def test_flip_keeps_left_and_right_keypoints_on_the_subjects_sides():
  # In an upright face the subject's left_* keypoints lie to the right (larger x) of the
  # matching right_* ones. A flip with swap must keep that true; without swap it would invert.
  perm = FACE15.flip_permutation()
  augment = transforms.random_affine(perm, max_rotation_deg=5, scale_range=(1, 1),
                                     max_shift=0.0, flip_probability=1.0)
  pairs = [(FACE15.index(a), FACE15.index(b)) for a, b in FACE15.flip_pairs]
  for i in range(20):
    raw = faces.render_example(np.random.default_rng(i), 64)
    example = {k: tf.constant(v) for k, v in raw.items()}
    example["image"] = tf.cast(example["image"], tf.float32)
    out = augment(example, tf.constant([0, i], tf.int64))
    k, v = out["keypoints"].numpy(), out["visible"].numpy()
    for left, right in pairs:
      assert raw["keypoints"][left, 0] > raw["keypoints"][right, 0]
      if v[left] and v[right]:
        assert k[left, 0] > k[right, 0], (i, FACE15.names[left])
    # Mirroring: the flipped left eye sits where the original right eye was, mirrored.
    x_right = raw["keypoints"][FACE15.index("right_eye_center"), 0]
    assert k[FACE15.index("left_eye_center"), 0] == pytest.approx(63 - x_right, abs=1.5)


def test_random_affine_is_a_function_of_the_seed():
  augment = transforms.random_affine(np.arange(3), 30, (0.8, 1.2), 0.1, 0.5)
  example = dots_example(POINTS, INTENSITIES)
  a = augment(example, tf.constant([7, 3], tf.int64))
  b = augment(example, tf.constant([7, 3], tf.int64))
  c = augment(example, tf.constant([7, 4], tf.int64))
  np.testing.assert_array_equal(a["image"], b["image"])
  assert not np.allclose(a["keypoints"], c["keypoints"])


def test_keypoints_pushed_out_of_the_image_become_invisible():
  example = dots_example(np.array([[2.0, 24.0], [24.0, 24.0]], np.float32), [1.0, 1.0])
  matrix = transforms.affine_matrix(0.0, 1.0, tf.constant([-5.0, 0.0]), False, SIZE, SIZE)
  out = transforms.warp(example, matrix)
  np.testing.assert_array_equal(out["visible"], [0.0, 1.0])
