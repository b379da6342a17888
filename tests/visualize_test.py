"""The overlays predict, the exported runner and training draw (kp_jax/visualize.py): where a
keypoint lands, its colour blended at its likelihood's opacity (a float64 hand computation),
the legend's colour squares, and every pixel nothing was drawn on left as it was."""

import numpy as np
import pytest

from kp_jax import visualize

NAMES = ("snout", "left_ear", "right_ear", "tail")


def blended(colour, alpha, below):
  """Pillow's alpha compositing of `colour` at `alpha` (0..255) over an opaque pixel."""
  return np.round((np.asarray(colour, np.float64) * alpha
                   + np.asarray(below, np.float64) * (255 - alpha))
                  / 255)


def frame(height, width, channels=3, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (height, width, channels), np.uint8)


@pytest.mark.parametrize("channels", [3, 1])
def test_a_keypoint_is_its_colour_at_its_likelihood_and_the_rest_is_untouched(channels):
  image = frame(300, 400, channels)
  points = np.array([[350.0, 260.0], [40.0, 250.0], [380.0, 20.0], [-30.0, 500.0]])
  likelihood = np.array([0.9, 0.2, 0.6, 0.8])  # the second under the cutoff: hidden
  drawn = visualize.draw_frame(image, points, likelihood, NAMES, [(0, 1), (0, 2)], cutoff=0.5,
                               legend=False)
  rgb = np.repeat(image, 3, -1) if channels == 1 else image
  assert drawn.shape == (300, 400, 3) and drawn.dtype == np.uint8
  colors = visualize.keypoint_colors(4)
  for i in (0, 2):  # a disc's centre: its colour over the frame's pixel
    x, y = points[i].astype(int)
    alpha = int(255 * (0.35 + 0.65 * likelihood[i]))
    np.testing.assert_allclose(drawn[y, x], blended(colors[i], alpha, rgb[y, x]), atol=1)
  x, y = points[1].astype(int)
  np.testing.assert_array_equal(drawn[y - 5:y + 6, x - 5:x + 6], rgb[y - 5:y + 6, x - 5:x + 6])
  # Nothing else: away from the discs and the one shown skeleton line (0-2), the frame as it was.
  far = np.ones((300, 400), bool)
  far[200:, 290:] = far[:80, 320:] = False  # about 0 and 2; line 0-2 runs between them
  far[:, 340:] = False
  np.testing.assert_array_equal(drawn[far], rgb[far])
  assert (drawn[~far] != rgb[~far]).any()


def test_true_keypoints_are_crosses_joined_to_their_prediction():
  image = np.zeros((120, 160, 3), np.uint8)
  points = np.array([[40.0, 40.0], [120.0, 80.0]])
  true = np.array([[60.0, 40.0], [np.nan, np.nan]])  # the second not labelled
  drawn = visualize.draw_frame(image, points, [1.0, 1.0], NAMES[:2], [], true=true,
                               visible=[1, 0], legend=False)
  colour = visualize.keypoint_colors(2)[0]
  np.testing.assert_allclose(drawn[40, 60], blended(colour, 230, 0), atol=1)  # the cross
  np.testing.assert_allclose(drawn[40, 50], blended(colour, 230, 0), atol=1)  # its line
  assert not drawn[60:100, 0:20].any()  # no cross for the unlabelled one


def test_the_legend_has_a_square_of_each_keypoints_colour_and_fits_any_frame():
  image = np.zeros((200, 300, 3), np.uint8)
  points = np.array([[250.0, 150.0]] * 4)
  likelihood = np.array([0.9, 0.1, 0.7, 0.8])
  drawn = visualize.draw_frame(image, points, likelihood, NAMES, [], cutoff=0.5)
  radius = max(3, round(200 / 100))
  line = max(10, 2 * radius + 4) + 4  # the legend's line height
  for i, colour in enumerate(visualize.keypoint_colors(4)):
    centre_y, centre_x = 4 + i * line + (line - 6) // 2, 4 + (line - 6) // 2
    alpha = 90 if i == 1 else 255  # a hidden keypoint's square is faint
    np.testing.assert_allclose(drawn[centre_y, centre_x], blended(colour, alpha, 0), atol=1)
  assert drawn[4:4 + 4 * line, 4 + line:100].any()  # the names
  # A frame smaller than its legend: cut at the frame's edge.
  small = visualize.draw_frame(frame(20, 30), np.array([[10.0, 10.0]] * 4), likelihood, NAMES,
                               [])
  assert small.shape == (20, 30, 3)


def test_instances_are_drawn_in_their_tracks_colours():
  image = np.zeros((240, 320, 3), np.uint8)
  instances = [(1, np.array([[100.0, 120.0], [130.0, 150.0]]), np.array([0.9, 0.9])),
               (2, np.array([[250.0, 60.0], [280.0, 90.0]]), np.array([0.9, 0.1]))]
  drawn = visualize.draw_instances(image, instances, [(0, 1)], cutoff=0.5)
  for (track, points, likelihood) in instances:
    colour = visualize.TAB10[track - 1]
    for (x, y), p in zip(points.astype(int), likelihood):
      want = blended(colour, 230, 0) if p >= 0.5 else np.zeros(3)
      np.testing.assert_allclose(drawn[y, x], want, atol=1)
  assert not drawn[200:, :60].any()
