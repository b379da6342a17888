"""Procedural face-like images with the 15 Kaggle Facial Keypoints, in NumPy alone.

Faces are built in a canonical frame whose unit is the inter-ocular distance (origin between
the eye centres, y down), drawn with anti-aliased signed distances, and placed by a random
similarity transform; keypoints go through the same transform, so they are exact to sub-pixel
precision. NumPy and SciPy only: the TFDS builder around it is in `synthetic.py`.
"""

import numpy as np
import scipy.ndimage

# Ranges of the random placement: the floor is +-30 degrees and 0.7-1.3 scale.
MAX_ROTATION_DEG = 30.0
SCALE_RANGE = (0.7, 1.3)
# Inter-ocular distance at scale 1, and the face centre's maximal shift, as fractions of the size.
BASE_INTEROCULAR = 0.3
MAX_SHIFT = 0.1
# The canonical point placed at the image centre (roughly the middle of the keypoints).
FACE_CENTRE = np.array([0.0, 0.45])
OCCLUSION_PROBABILITY = 0.35


# ---------------------------------------------------------------------------------------------
# Signed distances (negative inside), in the units of the points passed in.


def _ellipse_sdf(px, py, cx, cy, a, b, angle=0.0):
  c, s = np.cos(angle), np.sin(angle)
  x = c * (px - cx) + s * (py - cy)
  y = -s * (px - cx) + c * (py - cy)
  k = np.sqrt((x / a) ** 2 + (y / b) ** 2)
  grad = np.sqrt((x / a**2) ** 2 + (y / b**2) ** 2)
  # First-order distance to the boundary: exact on it, good within a few pixels of it.
  return k * (k - 1.0) / np.maximum(grad, 1e-9)


def _capsule_sdf(px, py, x0, y0, x1, y1, radius):
  dx, dy = x1 - x0, y1 - y0
  t = np.clip(((px - x0) * dx + (py - y0) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
  return np.hypot(px - (x0 + t * dx), py - (y0 + t * dy)) - radius


def _triangle_sdf(px, py, vertices):
  """Max of the three edge half-plane distances (exact along edges, rounder at corners)."""
  d = -np.inf
  for (x0, y0), (x1, y1) in zip(vertices, np.roll(vertices, -1, axis=0)):
    nx, ny = y1 - y0, x0 - x1  # outward normal for counter-clockwise vertices (y down)
    norm = np.hypot(nx, ny)
    d = np.maximum(d, ((px - x0) * nx + (py - y0) * ny) / norm)
  return d


def _coverage(sdf_px):
  """Anti-aliased pixel coverage from a signed distance in pixels."""
  return np.clip(0.5 - sdf_px, 0.0, 1.0)


def _paint(canvas, coverage, value):
  canvas *= 1.0 - coverage
  canvas += coverage * value


# ---------------------------------------------------------------------------------------------
# The face.


def _sample_face(rng):
  """Random face-part geometry in the canonical frame; returns (parts, keypoints [15, 2])."""
  u = rng.uniform
  eye_tilt = u(-0.15, 0.15)
  eye_w, eye_h = u(0.13, 0.22), u(0.06, 0.11)
  brow_y, brow_in, brow_out, brow_dy = u(-0.45, -0.25), u(0.12, 0.3), u(0.62, 0.85), u(-0.12, 0.1)
  nose = np.array([u(-0.08, 0.08), u(0.45, 0.72)])
  mouth = np.array([u(-0.06, 0.06), nose[1] + u(0.3, 0.45)])
  mouth_w, lip_top, lip_bottom = u(0.25, 0.45), u(0.05, 0.12), u(0.07, 0.16)

  def eye(side):  # side +1: subject's left (image right)
    centre = np.array([0.5 * side, 0.0])
    axis = np.array([np.cos(eye_tilt * side), np.sin(eye_tilt * side)]) * side
    return centre, centre - eye_w * axis, centre + eye_w * axis

  left, right = eye(+1), eye(-1)
  brow = lambda side: (np.array([brow_in * side, brow_y]),
                       np.array([brow_out * side, brow_y + brow_dy]))
  (lb_in, lb_out), (rb_in, rb_out) = brow(+1), brow(-1)
  keypoints = np.stack([
      left[0], right[0], left[1], left[2], right[1], right[2],
      lb_in, lb_out, rb_in, rb_out,
      nose,
      mouth + [mouth_w, 0.0], mouth - [mouth_w, 0.0],
      mouth - [0.0, lip_top], mouth + [0.0, lip_bottom],
  ])
  parts = dict(
      face=(u(-0.05, 0.05), u(0.3, 0.45), u(0.95, 1.2), u(1.3, 1.55)),
      eye=(eye_w, eye_h, eye_tilt), iris=u(0.45, 0.8) * eye_h,
      brow_radius=u(0.03, 0.06), mouth=(mouth, mouth_w, lip_top, lip_bottom),
      nose=nose, nose_half_width=u(0.1, 0.16), nostril=u(0.03, 0.05),
  )
  return parts, keypoints


def _draw_face(canvas, x, y, scale, parts, keypoints, shades):
  """Paints the face on `canvas`; (x, y) are the canonical coordinates of every pixel."""
  to_px = lambda sdf: _coverage(sdf * scale)
  fx, fy, fa, fb = parts["face"]
  _paint(canvas, to_px(_ellipse_sdf(x, y, fx, fy, fa, fb)), shades["skin"])

  eye_w, eye_h, tilt = parts["eye"]
  for centre, side in ((keypoints[0], 1), (keypoints[1], -1)):
    _paint(canvas, to_px(_ellipse_sdf(x, y, *centre, eye_w, eye_h, tilt * side)), shades["sclera"])
    _paint(canvas, to_px(_ellipse_sdf(x, y, *centre, parts["iris"], parts["iris"])), shades["iris"])

  for inner, outer in ((keypoints[6], keypoints[7]), (keypoints[8], keypoints[9])):
    _paint(canvas, to_px(_capsule_sdf(x, y, *inner, *outer, parts["brow_radius"])), shades["brow"])

  nose, half = parts["nose"], parts["nose_half_width"]
  bridge = np.array([[nose[0], 0.12], [nose[0] - half, nose[1]], [nose[0] + half, nose[1]]])
  _paint(canvas, to_px(_triangle_sdf(x, y, bridge)), shades["nose"])
  _paint(canvas, to_px(_ellipse_sdf(x, y, *nose, parts["nostril"], parts["nostril"])),
         shades["nostril"])

  mouth, mouth_w, lip_top, lip_bottom = parts["mouth"]
  lip_b = np.where(y < mouth[1], lip_top, lip_bottom)  # two half-ellipses share the corners
  _paint(canvas, to_px(_ellipse_sdf(x, y, *mouth, mouth_w, lip_b)), shades["lips"])
  _paint(canvas, to_px(_capsule_sdf(x, y, *keypoints[11], *keypoints[12], 0.012)),
         shades["mouth_line"])


def _draw_clutter(canvas, rng, size):
  """A background gradient and random shapes, in pixel coordinates."""
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
  gx, gy = rng.uniform(-0.4, 0.4, size=2) / size
  canvas += rng.uniform(0.1, 0.9) + gx * (xx - size / 2) + gy * (yy - size / 2)
  for _ in range(rng.integers(3, 10)):
    cx, cy = rng.uniform(-0.1, 1.1, size=2) * size
    value = rng.uniform(0.0, 1.0)
    if rng.uniform() < 0.5:
      a, b = rng.uniform(0.03, 0.25, size=2) * size
      sdf = _ellipse_sdf(xx, yy, cx, cy, a, b, rng.uniform(0, np.pi))
    else:
      dx, dy = rng.uniform(-0.4, 0.4, size=2) * size
      sdf = _capsule_sdf(xx, yy, cx, cy, cx + dx, cy + dy, rng.uniform(0.5, 0.06 * size))
    _paint(canvas, _coverage(sdf), value)


def _occluder_sdf(rng, size, target, scale):
  """A random ellipse or bar over a random keypoint; returns its sdf as a function of pixels."""
  centre = target + rng.uniform(-0.3, 0.3, size=2) * scale
  a, b = rng.uniform(0.2, 0.6, size=2) * scale
  angle = rng.uniform(0, np.pi)
  if rng.uniform() < 0.5:
    return lambda px, py: _ellipse_sdf(px, py, *centre, a, b, angle)
  d = np.array([np.cos(angle), np.sin(angle)]) * a
  return lambda px, py: _capsule_sdf(px, py, *(centre - d), *(centre + d), b * 0.6)


def _draw_placed(canvas, rng, parts, canonical, scale, rotation, shift):
  """Paints a sampled face with random shades, its canonical point FACE_CENTRE at pixel `shift`,
  `scale` pixels per canonical unit; returns (keypoints [15, 2] in pixels, a function telling
  which pixel points [N, 2] the face's outline covers)."""
  yy, xx = np.mgrid[0:canvas.shape[0], 0:canvas.shape[1]].astype(np.float64)
  to_canonical = lambda points: (points - shift) @ rotation / scale + FACE_CENTRE
  canon = to_canonical(np.stack([xx, yy], axis=-1))  # every pixel centre: the inverse placement
  skin = rng.uniform(0.3, 0.85)
  shades = dict(skin=skin, sclera=min(skin + rng.uniform(0.15, 0.4), 1.0),
                iris=rng.uniform(0.0, 0.25), brow=skin * rng.uniform(0.1, 0.5),
                nose=skin * rng.uniform(0.8, 0.95), nostril=skin * rng.uniform(0.1, 0.4),
                lips=skin * rng.uniform(0.4, 0.75), mouth_line=skin * rng.uniform(0.0, 0.3))
  _draw_face(canvas, canon[..., 0], canon[..., 1], scale, parts, canonical, shades)

  def covers(points):
    c = to_canonical(points)
    return _ellipse_sdf(c[:, 0], c[:, 1], *parts["face"]) < 0
  return scale * (canonical - FACE_CENTRE) @ rotation.T + shift, covers


def _rotation(angle):
  return np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])


def _inside(keypoints, height, width):
  return ((keypoints >= -0.5) & (keypoints <= np.array([width, height]) - 0.5)).all(axis=1)


def _photograph(canvas, rng, size):
  """Contrast, brightness, blur and noise, then uint8 [h, w, 1]."""
  contrast, brightness = rng.uniform(0.5, 1.3), rng.uniform(-0.2, 0.2)
  canvas = contrast * (canvas - 0.5) + 0.5 + brightness
  canvas = scipy.ndimage.gaussian_filter(canvas, sigma=rng.uniform(0.0, 1.2) * size / 96)
  canvas += rng.normal(0.0, rng.uniform(0.0, 0.05), size=canvas.shape)
  return np.round(np.clip(canvas, 0.0, 1.0) * 255).astype(np.uint8)[..., None]


def render_example(rng: np.random.Generator, size: int, clean: bool = False) -> dict:
  """One example of the common form, with a uint8 [size, size, 1] image.

  `clean` leaves out the nuisances (clutter, occluders, contrast and brightness changes, blur,
  noise) but keeps the random face, pose and shades: for measuring pure localisation error.
  """
  parts, canonical = _sample_face(rng)
  angle = np.deg2rad(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
  scale = BASE_INTEROCULAR * size * rng.uniform(*SCALE_RANGE)
  shift = np.full(2, (size - 1) / 2) + rng.uniform(-MAX_SHIFT, MAX_SHIFT, size=2) * size

  canvas = np.zeros((size, size))
  if not clean:
    _draw_clutter(canvas, rng, size)
  keypoints, _ = _draw_placed(canvas, rng, parts, canonical, scale, _rotation(angle), shift)

  visible = _inside(keypoints, size, size)
  if not clean and rng.uniform() < OCCLUSION_PROBABILITY:
    target = keypoints[rng.integers(len(keypoints))]
    sdf = _occluder_sdf(rng, size, target, scale)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    _paint(canvas, _coverage(sdf(xx, yy)), rng.uniform(0.0, 1.0))
    visible &= sdf(keypoints[:, 0], keypoints[:, 1]) > 0.0

  if clean:
    image = np.round(np.clip(canvas, 0.0, 1.0) * 255).astype(np.uint8)[..., None]
  else:
    image = _photograph(canvas, rng, size)
  return dict(image=image, keypoints=keypoints.astype(np.float32),
              visible=visible.astype(np.float32),
              norm=np.float32(np.linalg.norm(keypoints[0] - keypoints[1])))


# ---------------------------------------------------------------------------------------------
# Scenes of several faces.

# Inter-ocular distance as a fraction of the scene's side: faces of 5-14% of the picture.
SCENE_INTEROCULAR = (0.05, 0.14)
# Face centres lie at least this fraction of the side inside the border: faces near it are cut.
SCENE_BORDER = 0.02
# Centres at least this many (summed) face scales apart: faces overlap, a few keypoints are
# hidden, no face is.
SCENE_MIN_SEPARATION = 0.8


def _face_box(keypoints, height, width):
  """The (x, y, w, h) of a face: its keypoints' extent grown by half on each side (the outline
  reaches past the brows and the mouth), within the image."""
  low, high = keypoints.min(0), keypoints.max(0)
  grow = (high - low) / 2
  low = np.maximum(low - grow, -0.5)
  high = np.minimum(high + grow, np.array([width, height]) - 0.5)
  return np.concatenate([low + 0.5, high - low]).astype(np.float32)


def render_scene(rng: np.random.Generator, size: int, max_faces: int) -> dict:
  """A [size, size, 1] picture of 1 to `max_faces` faces at different sizes, some overlapping
  (a later face hides the keypoints of earlier ones under its outline) or cut by the border:
  `keypoints` [N, 15, 2], `visible` [N, 15], `boxes` [N, 4] (x, y, w, h), `norm` [N]."""
  count = int(rng.integers(1, max_faces + 1))
  canvas = np.zeros((size, size))
  _draw_clutter(canvas, rng, size)
  faces, scales, centres = [], [], []
  for _ in range(count):
    parts, canonical = _sample_face(rng)
    angle = np.deg2rad(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
    scale = size * rng.uniform(*SCENE_INTEROCULAR)  # pixels per inter-ocular distance
    for _ in range(20):  # a free place, else the last one drawn
      shift = rng.uniform(SCENE_BORDER, 1 - SCENE_BORDER, size=2) * size
      if all(np.linalg.norm(shift - c) > SCENE_MIN_SEPARATION * (scale + s)
             for c, s in zip(centres, scales)):
        break
    keypoints, covers = _draw_placed(canvas, rng, parts, canonical, scale, _rotation(angle),
                                     shift)
    for earlier in faces:  # this face now hides what lies under it
      earlier["visible"] &= ~covers(earlier["keypoints"])
    faces.append({"keypoints": keypoints, "visible": _inside(keypoints, size, size)})
    scales.append(scale)
    centres.append(shift)
  image = _photograph(canvas, rng, size)
  keypoints = np.stack([f["keypoints"] for f in faces]).astype(np.float32)
  return dict(image=image, keypoints=keypoints,
              visible=np.stack([f["visible"] for f in faces]).astype(np.float32),
              boxes=np.stack([_face_box(k, size, size) for k in keypoints]),
              norm=np.linalg.norm(keypoints[:, 0] - keypoints[:, 1], axis=-1).astype(np.float32))
