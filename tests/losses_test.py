import numpy as np
import pytest

from kp_jax import losses

# Two examples x two keypoints; errors in pixels. The second keypoint of example 1 is not
# visible: it adds nothing, yet counts in the denominator (B * K = 4).
ERROR = np.array([[[3.0, 4.0], [0.5, 0.0]], [[-12.0, 0.0], [100.0, 100.0]]], np.float32)
VISIBLE = np.array([[1.0, 1.0], [1.0, 0.0]], np.float32)


@pytest.mark.parametrize("name, per_keypoint", [
    ("l2", [25.0, 0.25, 144.0]),
    ("l1", [7.0, 0.5, 12.0]),
    # beta 1: 0.5 e^2 below 1 px, |e| - 0.5 above.
    ("smooth_l1", [2.5 + 3.5, 0.125, 11.5]),
    # width 10, curvature 2: 10 ln(1 + |e| / 2) below 10 px, |e| - C above, with
    # C = 10 - 10 ln 6 = -7.917595.
    ("wing", [10 * np.log(2.5) + 10 * np.log(3.0), 10 * np.log(1.25), 12 + 7.917595]),
])
def test_coordinate_losses_against_hand_computed_values(name, per_keypoint):
  loss = losses.COORDINATE_LOSSES[name](ERROR, VISIBLE)
  assert float(loss) == pytest.approx(sum(per_keypoint) / 4, rel=1e-5)


def test_wing_is_continuous_at_its_width():
  below = losses.wing(np.array([[[10.0 - 1e-4, 0.0]]]), np.ones((1, 1)))
  above = losses.wing(np.array([[[10.0 + 1e-4, 0.0]]]), np.ones((1, 1)))
  assert float(below) == pytest.approx(float(above), abs=1e-3)


def test_heatmap_mse_weights_maps_by_visibility():
  pred = np.zeros((1, 2, 2, 2), np.float32)
  target = np.ones((1, 2, 2, 2), np.float32)
  target[..., 1] = 3.0
  # map 0 visible: 4 cells of error 1; map 1 invisible; mean over 8 cells.
  visible = np.array([1.0, 0.0])[None, None, None]  # [B, 1, 1, K]
  assert float(losses.heatmap_mse(pred, target, visible)) == pytest.approx(0.5)


def test_heatmap_bce_is_the_weighted_mean_binary_cross_entropy_of_the_logits():
  rng = np.random.default_rng(0)
  logits = rng.normal(0, 3, size=(2, 3, 4, 2))
  target = rng.uniform(0, 1, size=logits.shape)
  weight = np.array([[1.0, 0.0], [1.0, 1.0]])[:, None, None]  # [B, 1, 1, K]
  p = 1 / (1 + np.exp(-logits))  # float64 reference
  want = np.mean(-(target * np.log(p) + (1 - target) * np.log(1 - p)) * weight)
  got = losses.heatmap_bce(logits.astype(np.float32), target.astype(np.float32), weight)
  assert float(got) == pytest.approx(want, rel=1e-5)
