import io
import math

import cv2
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import bilinear_reference, opencv_warp_tolerance, save_turned
from kp_jax import exported
from kp_jax.data import faces, transforms
from kp_jax.data.keypoints import FACE15

SIZE = 48


def dots_example(points, intensities, height=SIZE, width=SIZE):
  """An image with a Gaussian dot (sigma 1.5 px) of its own intensity at each keypoint."""
  yy, xx = np.mgrid[0:height, 0:width]
  image = np.zeros((height, width, 1), np.float32)
  for (x, y), v in zip(points, intensities):
    image[..., 0] += v * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.5**2))
  return {"image": tf.constant(image), "keypoints": tf.constant(points, tf.float32),
          "visible": tf.ones(len(points)), "norm": tf.constant(10.0)}


def centroid_near(image, point, radius=3):
  """Intensity-weighted centroid of the image within `radius` px of `point`."""
  yy, xx = np.mgrid[0:image.shape[0], 0:image.shape[1]]
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
  op = lambda ex: transforms.warp(ex, matrix, (SIZE, SIZE), SWAP_FIRST_TWO, flip)
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
                                     max_shift=0.0, flip_probability=1.0, output_hw=(64, 64))
  pairs = [(FACE15.index(a), FACE15.index(b)) for a, b in FACE15.flip_pairs]
  for i in range(20):
    raw = faces.render_example(np.random.default_rng(i), 64)
    example = {k: tf.constant(v) for k, v in raw.items()}
    example = transforms.identity_matrix(example)
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
  augment = transforms.random_affine(np.arange(3), 30, (0.8, 1.2), 0.1, 0.5, (SIZE, SIZE))
  example = transforms.identity_matrix(dots_example(POINTS, INTENSITIES))
  a = augment(example, tf.constant([7, 3], tf.int64))
  b = augment(example, tf.constant([7, 3], tf.int64))
  c = augment(example, tf.constant([7, 4], tf.int64))
  np.testing.assert_array_equal(a["image"], b["image"])
  assert not np.allclose(a["keypoints"], c["keypoints"])


def test_keypoints_pushed_out_of_the_image_become_invisible():
  example = dots_example(np.array([[2.0, 24.0], [24.0, 24.0]], np.float32), [1.0, 1.0])
  matrix = transforms.affine_matrix(0.0, 1.0, tf.constant([-5.0, 0.0]), False, SIZE, SIZE)
  out = transforms.warp(example, matrix, (SIZE, SIZE))
  np.testing.assert_array_equal(out["visible"], [0.0, 1.0])


@pytest.mark.parametrize("box, output_hw", [
    ((40.0, 30.0, 60.0, 50.0), (48, 48)),  # wide box into a square: height grows
    ((52.0, 12.0, 30.0, 70.0), (64, 48)),  # tall box into a 4:3 portrait input
    ((0.0, 0.0, 120.0, 90.0), (30, 40)),  # the whole image, downscaled
])
def test_box_crop_maps_the_padded_box_onto_the_input(box, output_hw):
  matrix = transforms.box_matrix(tf.constant(box), output_hw, padding=1.25).numpy()
  x, y, w, h = box
  out_h, out_w = output_hw
  # The box's centre goes to the input's centre; one scale for both axes (no distortion).
  centre = matrix @ [x + w / 2 - 0.5, y + h / 2 - 0.5, 1]
  np.testing.assert_allclose(centre[:2], [(out_w - 1) / 2, (out_h - 1) / 2], atol=1e-4)
  assert matrix[0, 0] == pytest.approx(matrix[1, 1]) and matrix[0, 1] == matrix[1, 0] == 0
  # The padded, aspect-fixed box fills the input exactly: 1.25 * max(w, h * aspect).
  assert matrix[0, 0] == pytest.approx(out_w / (1.25 * max(w, h * out_w / out_h)), rel=1e-6)


def mmpose_udp_warp_matrix(box, output_hw, padding):
  """MMPose's top-down crop with use_udp (bbox_xywh2cs, _fix_aspect_ratio,
  get_udp_warp_matrix at rotation 0), NumPy float64, in MMPose's coordinates."""
  x, y, w, h = box
  out_h, out_w = output_hw
  center = np.array([x + w * 0.5, y + h * 0.5])
  scale_w, scale_h = w * padding, h * padding
  aspect = out_w / out_h
  scale_w, scale_h = (scale_w, scale_w / aspect) if scale_w > scale_h * aspect else (
      scale_h * aspect, scale_h)
  sx, sy = (out_w - 1) / scale_w, (out_h - 1) / scale_h
  input_size = center * 2
  return np.array([[sx, 0.0, sx * (-0.5 * input_size[0] + 0.5 * scale_w)],
                   [0.0, sy, sy * (-0.5 * input_size[1] + 0.5 * scale_h)], [0.0, 0.0, 1.0]])


@pytest.mark.parametrize("box, output_hw", [
    ((40.0, 30.0, 60.0, 50.0), (256, 192)), ((52.0, 12.0, 30.0, 70.0), (64, 48))])
def test_udp_box_crop_is_mmposes_udp_affine(box, output_hw):
  matrix = transforms.box_matrix(tf.constant(box), output_hw, padding=1.25, udp=True).numpy()
  # kp-jax's pixel centres are at integers, MMPose's coordinates half a pixel further: a point
  # p here is p + 0.5 there.
  to_mmpose = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
  np.testing.assert_allclose(matrix, mmpose_udp_warp_matrix(box, output_hw, 1.25) @ to_mmpose,
                             rtol=1e-5, atol=1e-4)


def test_crop_then_augmentation_moves_dots_exactly_as_the_pixels():
  # A 100x130 image (not square) with dots, cropped around them and rotated, scaled, shifted
  # and flipped by one warp: each dot must be found where its keypoint went.
  points = np.array([[50.2, 60.7], [80.9, 58.1], [66.4, 85.3]], np.float32)
  example = {**dots_example(points, INTENSITIES, height=100, width=130),
             "box": tf.constant([45.0, 50.0, 42.0, 42.0])}
  example = transforms.crop_to_box((SIZE, SIZE), 1.25)(example)
  augment = transforms.random_affine(SWAP_FIRST_TWO, 20, (0.9, 1.1), 0.05, 0.5, (SIZE, SIZE))
  for i in range(6):
    out = {k: np.asarray(v) for k, v in augment(example, tf.constant([1, i], tf.int64)).items()}
    assert out["image"].shape == (SIZE, SIZE, 1)
    for point in out["keypoints"]:
      np.testing.assert_allclose(centroid_near(out["image"], point), point, atol=0.15)
    # The matrix maps the source keypoints to the output ones (kept to map predictions back).
    moved = points @ out["matrix"][:2, :2].T + out["matrix"][:2, 2]
    flipped = out["matrix"][0, 0] * out["matrix"][1, 1] - out["matrix"][0, 1] * out["matrix"][1, 0] < 0
    np.testing.assert_allclose(out["keypoints"], moved[SWAP_FIRST_TWO] if flipped else moved,
                               atol=1e-4)


def test_half_body_boxes_the_chosen_half():
  points = np.array([[10, 10], [20, 12], [30, 40], [34, 60]], np.float32)
  example = {"keypoints": tf.constant(points), "visible": tf.ones(4),
             "box": tf.constant([0.0, 0.0, 50.0, 70.0])}
  op = transforms.half_body([0, 1], [2, 3], probability=1.0, min_keypoints=2, padding=1.0)
  boxes = {tuple(np.round(op(example, tf.constant([0, i], tf.int64))["box"].numpy(), 4))
           for i in range(20)}
  # Upper: pixel centres x 10..20, y 10..12 span pixels 10..20 and 10..12, so the box
  # (x, y, w, h) is (10, 10, 11, 3); lower: (30, 40, 5, 21).
  assert boxes == {(10.0, 10.0, 11.0, 3.0), (30.0, 40.0, 5.0, 21.0)}
  never = transforms.half_body([0, 1], [2, 3], probability=0.0, min_keypoints=2, padding=1.0)
  np.testing.assert_array_equal(never(example, tf.constant([0, 0], tf.int64))["box"],
                                [0, 0, 50, 70])


def test_half_body_draws_for_each_instance_of_an_image():
  points = np.array([[10, 10], [20, 12], [30, 40], [34, 60]], np.float32)
  group = {"keypoints": tf.constant([points, points + 5, points]),
           "visible": tf.constant([[1.0] * 4, [1.0] * 4, [1.0, 0.0, 1.0, 0.0]]),
           "box": tf.constant([[0.0, 0.0, 50.0, 70.0]] * 3)}
  op = transforms.half_body([0, 1], [2, 3], probability=1.0, min_keypoints=2, padding=1.0)
  boxes = np.stack([op(group, tf.constant([0, i], tf.int64))["box"].numpy() for i in range(20)])
  upper, lower = [10.0, 10.0, 11.0, 3.0], [30.0, 40.0, 5.0, 21.0]  # as in the test above
  for instance, shift in ((0, 0.0), (1, 5.0)):
    chosen = {tuple(np.round(box - [shift, shift, 0, 0], 4)) for box in boxes[:, instance]}
    assert chosen == {tuple(upper), tuple(lower)}
  # Each instance draws its own half: the first two do not always agree.
  assert not np.allclose(boxes[:, 0, :2] + 5, boxes[:, 1, :2])
  # The third sees one keypoint of each half, fewer than min_keypoints: its box stays.
  np.testing.assert_array_equal(boxes[:, 2], np.tile([0.0, 0.0, 50.0, 70.0], (20, 1)))


def test_instances_of_one_image_are_warped_together_as_each_alone():
  image = dots_example(POINTS * 2.5, INTENSITIES, height=100, width=130)["image"]
  boxes = np.array([[30.0, 35.0, 42.0, 42.0], [10.0, 20.0, 60.0, 50.0], [70, 5, 40, 80]],
                   np.float32)
  labels = {"keypoints": tf.constant(np.stack([POINTS * 2.5, POINTS * 2, POINTS * 3])),
            "visible": tf.ones((3, 3)), "norm": tf.constant([10.0, 12.0, 14.0]),
            "box": tf.constant(boxes)}
  crop = transforms.crop_to_box((SIZE, SIZE), 1.25)
  augment = transforms.random_affine(SWAP_FIRST_TWO, 20, (0.9, 1.1), 0.05, 0.5, (SIZE, SIZE))
  together = augment(crop({**labels, "image": image}), tf.constant([2, 0], tf.int64))
  assert together["image"].shape == (3, SIZE, SIZE, 1)
  matrices = together["matrix"].numpy()
  assert len({m.tobytes() for m in matrices}) == 3  # a draw each
  for i in range(3):
    alone = crop({**{k: v[i] for k, v in labels.items()}, "image": image})
    np.testing.assert_allclose(crop({**labels, "image": image})["matrix"][i], alone["matrix"],
                               rtol=1e-6)
    flip = np.linalg.det(matrices[i][:2, :2]) < 0
    want = transforms.warp(alone, matrices[i], (SIZE, SIZE), SWAP_FIRST_TWO, flip)
    np.testing.assert_array_equal(together["image"][i], want["image"])  # the same OpenCV call
    np.testing.assert_array_equal(together["visible"][i], want["visible"])
    for key in ("keypoints", "norm"):  # a batched matmul, a hair from the single one
      np.testing.assert_allclose(together[key][i], want[key], rtol=1e-5, atol=1e-4)


def test_frames_of_a_clip_are_warped_together_as_each_alone():
  clip = np.random.default_rng(2).integers(0, 256, (3, 40, 50, 3), dtype=np.uint8)
  matrix = transforms.affine_matrix(0.3, 1.2, tf.constant([2.0, -1.0]), True, 40, 50)
  together = transforms.warp_clip(tf.constant(clip), matrix, (32, 36)).numpy()
  assert together.shape == (3, 32, 36, 3) and together.dtype == np.uint8
  for frame, warped in zip(clip, together):  # each frame's own pixels, in its own slot
    np.testing.assert_array_equal(warped, transforms.resample(frame, matrix, (32, 36)))


def test_photometric_ops_leave_geometry_alone_and_follow_the_seed():
  example = {**dots_example(POINTS, INTENSITIES), "image": tf.random.uniform((SIZE, SIZE, 3))}
  jitter = transforms.color_jitter(0.2, 0.3, 0.3)
  a = jitter(example, tf.constant([3, 1], tf.int64))
  b = jitter(example, tf.constant([3, 1], tf.int64))
  np.testing.assert_array_equal(a["image"], b["image"])
  np.testing.assert_array_equal(a["keypoints"], example["keypoints"])
  assert float(tf.reduce_min(a["image"])) >= 0 and float(tf.reduce_max(a["image"])) <= 1


def test_photometric_ops_run_on_unit_floats_and_return_pixels():
  pixels = tf.reshape(tf.range(256, dtype=tf.int32), (16, 16, 1))
  example = {"image": tf.cast(pixels, tf.uint8)}
  seen = {}

  def record(example, seed):
    seen["image"] = example["image"]
    return example
  same = transforms.on_unit_float(record)(example, tf.constant([0, 0], tf.int64))
  np.testing.assert_allclose(seen["image"], pixels.numpy() / 255, atol=1e-7)  # [0, 1] inside
  assert same["image"].dtype == tf.uint8
  np.testing.assert_array_equal(same["image"], example["image"])  # every grey level back
  brighter = transforms.on_unit_float(lambda ex, seed: {**ex, "image": ex["image"] + 0.2})(
      example, tf.constant([0, 0], tf.int64))  # 0.2 of white: 51 grey levels, clipped at 255
  np.testing.assert_array_equal(brighter["image"].numpy().ravel(),
                                np.minimum(np.arange(256) + 51, 255))


def test_gaussian_blur_matches_a_float64_convolution():
  image = np.random.default_rng(0).uniform(size=(20, 24, 2)).astype(np.float32)
  got = transforms.gaussian_blur(tf.constant(image), 1.2, radius=4).numpy()
  x = np.arange(-4, 5)
  kernel = np.exp(-x**2 / (2 * 1.2**2))
  kernel /= kernel.sum()
  padded = np.pad(image.astype(np.float64), ((4, 4), (4, 4), (0, 0)))
  rows = sum(kernel[i] * padded[i:i + 20] for i in range(9))
  want = sum(kernel[i] * rows[:, i:i + 24] for i in range(9))
  np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("flip", [False, True])
def test_identity_and_mirror_copies_equal_the_bilinear_warp(flip):
  image = tf.random.uniform((SIZE, SIZE + 4, 3))  # not square: the mirror is about x
  matrix = transforms.affine_matrix(0.0, 1.0, tf.zeros(2), flip, SIZE, SIZE + 4)
  fast = transforms.resample(image, matrix, (SIZE, SIZE + 4))
  np.testing.assert_allclose(fast, bilinear_reference(image, matrix, (SIZE, SIZE + 4)),
                             atol=1e-6)
  # A near-mirror (a hair of rotation) must take the bilinear path.
  tilted = transforms.affine_matrix(1e-3, 1.0, tf.zeros(2), flip, SIZE, SIZE + 4)
  assert not np.allclose(transforms.resample(image, tilted, (SIZE, SIZE + 4)), fast)


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("angle_deg, scale, shift", [
    (23.0, 1.4, (3.0, -2.0)),  # enlarged: most samples between pixels
    (-40.0, 0.6, (-7.5, 4.25)),  # shrunk, reaching outside the image
])
def test_warp_is_bilinear_within_opencvs_sampling_step(dtype, channels, angle_deg, scale, shift):
  rng = np.random.default_rng(1)
  image = rng.uniform(0, 255 if dtype == np.uint8 else 1, (37, 45, channels)).astype(dtype)
  matrix = transforms.affine_matrix(math.radians(angle_deg), scale, tf.constant(shift), False,
                                    37, 45).numpy()
  matrix = matrix @ np.array([[1, 0, -4.5], [0, 1, 3.25], [0, 0, 1]], np.float32)
  got = transforms.resample(tf.constant(image), tf.constant(matrix), (30, 34)).numpy()
  assert got.dtype == dtype and got.shape == (30, 34, channels)
  want = bilinear_reference(image, matrix, (30, 34))
  rounding = 0.5 if dtype == np.uint8 else 0.0  # a uint8 warp rounds its values
  np.testing.assert_allclose(got, want, atol=opencv_warp_tolerance(image) + rounding)
  # The bound is loose where pixels jump: most values are much closer than it.
  assert np.median(np.abs(got - want)) < opencv_warp_tolerance(image) / 4


def _photo(height: int, width: int, channels: int, amplitude: float = 100) -> np.ndarray:
  """Smooth shapes and noise, as a photo's pixels; colours saturate where `amplitude` passes
  127."""
  rng = np.random.default_rng(0)
  yy, xx = np.mgrid[0:height, 0:width]
  smooth = np.stack([np.sin(xx / 23 + c) * np.cos(yy / 17 - c) for c in range(channels)], -1)
  return np.clip(127 + amplitude * smooth + rng.normal(0, 8, smooth.shape), 0,
                 255).astype(np.uint8)


@pytest.mark.parametrize("stored, subsampling, channels", [
    ("RGB", "4:2:0", 3), ("RGB", "4:4:4", 3), ("L", "4:4:4", 1), ("L", "4:4:4", 3),
    ("RGB", "4:2:0", 1)])  # the last: PIL's grey of the colours, not libjpeg's own luma
def test_a_jpeg_decodes_to_the_pixels_pil_and_opencv_read(stored, subsampling, channels):
  """transforms.decode_image decodes a JPEG with libjpeg's accurate IDCT, as PIL and OpenCV do
  (so MMPose, and kp-jax's prediction on pictures). It is integer arithmetic that every
  libjpeg-turbo build (SIMD or not) computes bit for bit, so the values are equal; TensorFlow's
  default, the fast IDCT, differs in most of them."""
  # Odd sizes: partial blocks at the right and bottom. Saturated colours: where libjpeg's luma
  # and PIL's grey of the colours differ.
  pixels = _photo(101, 67, 3, amplitude=200)
  stream = io.BytesIO()
  Image.fromarray(pixels).convert(stored).save(stream, format="JPEG", quality=90,
                                               subsampling=subsampling)
  encoded = stream.getvalue()
  ours = transforms.decode_image(tf.constant(encoded), channels).numpy()
  mode = "RGB" if channels == 3 else "L"
  np.testing.assert_array_equal(ours, np.asarray(Image.open(stream).convert(mode)).reshape(
      ours.shape))
  if stored == mode:  # OpenCV reads a colour JPEG's grey as libjpeg's luma
    flags = cv2.IMREAD_COLOR if channels == 3 else cv2.IMREAD_GRAYSCALE
    opencv = cv2.imdecode(np.frombuffer(encoded, np.uint8), flags | cv2.IMREAD_IGNORE_ORIENTATION)
    np.testing.assert_array_equal(ours, opencv[..., ::-1] if channels == 3 else opencv[..., None])
    fast = tf.io.decode_jpeg(encoded, channels=channels).numpy()
    assert np.mean(fast != ours) > 0.3


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "GIF", "WEBP", "TIFF"])
@pytest.mark.parametrize("stored", ["RGB", "L"])
@pytest.mark.parametrize("channels", [1, 3])
def test_other_formats_decode_to_the_pixels_pil_reads(fmt, stored, channels):
  """Lossless formats, in colour or grey, read as PIL reads them: one channel of colour is
  PIL's grey (TensorFlow decodes BMP and GIF in colour only, and TIFF not at all)."""
  stream = io.BytesIO()
  Image.fromarray(_photo(31, 45, 3)).convert(stored).save(stream, format=fmt, lossless=True)
  ours = transforms.decode_image(tf.constant(stream.getvalue()), channels).numpy()
  want = np.asarray(Image.open(stream).convert("RGB" if channels == 3 else "L"))
  np.testing.assert_array_equal(ours, want.reshape(31, 45, channels))


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_sixteen_bit_grey_reads_as_its_high_byte_everywhere(fmt, tmp_path):
  """A 16-bit grey picture (scientific and thermal cameras) is read as OpenCV and libpng make
  8 bits of it, its samples' high byte, by training and by prediction alike (PIL's own
  conversion clips at 255)."""
  samples = np.arange(0, 65536, 37, dtype=np.uint16)[:40 * 30].reshape(30, 40)
  path = str(tmp_path / f"grey16.{fmt.lower()}")
  Image.fromarray(samples).save(path, format=fmt)
  opencv = cv2.imread(path, cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION)
  np.testing.assert_array_equal(opencv, samples >> 8)
  for channels in (1, 3):
    want = np.repeat(opencv[..., None], channels, -1)
    np.testing.assert_array_equal(
        transforms.decode_image(tf.io.read_file(path), channels), want)  # training
    np.testing.assert_array_equal(exported.read_image(path, channels), want)  # prediction


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_turned_photo_is_read_upright_as_pil_shows_it(orientation):
  """A file stored turned or mirrored under an EXIF orientation tag: `upright` gives the pixels
  PIL's exif_transpose shows, and `upright_matrix` takes each stored pixel to its place in
  them."""
  stream = io.BytesIO()
  shown = save_turned(_photo(31, 45, 3), orientation, stream, format="PNG")
  stored = transforms.decode_image(tf.constant(stream.getvalue()), 3)
  np.testing.assert_array_equal(transforms.upright(stored, orientation), shown)
  height, width = stored.shape[:2]
  yy, xx = np.mgrid[0:height, 0:width]
  matrix = transforms.upright_matrix(tf.constant(orientation), (height, width)).numpy()
  place = np.stack([xx, yy, np.ones_like(xx)], -1) @ matrix.T
  x, y = np.round(place[..., 0]).astype(int), np.round(place[..., 1]).astype(int)
  np.testing.assert_allclose(place[..., :2], np.stack([x, y], -1), atol=1e-4)
  np.testing.assert_array_equal(shown[y, x], stored)


@pytest.mark.parametrize("orientation", [None, 6, 7])  # None: no tag; 7 mirrors and turns
@pytest.mark.parametrize("fmt", ["jpeg", "png"])
@pytest.mark.parametrize("angle_deg, scale, box", [
    (0.0, 1.0, (200, 120, 80, 160)),  # a person inside the photo
    (35.0, 1.3, (20, 10, 150, 300)),  # rotated and zoomed out, cut by the top-left border
    (-40.0, 0.7, (560, 300, 120, 200)),  # reaching past the right and bottom borders
])
def test_warp_of_an_encoded_image_decodes_only_its_window(fmt, angle_deg, scale, box,
                                                         orientation):
  """Decoding the window the warp reads (transforms.decode_window) gives the warp of the whole
  decoded image: the same crop of a 640x480 photo through the same matrix; of a photo stored
  turned, the same crop of it upright (the matrix is from the upright pixels)."""
  pixels = _photo(480, 640, 3)
  encoded = (tf.io.encode_jpeg(pixels, quality=95) if fmt == "jpeg"
             else tf.io.encode_png(pixels))
  turned = {} if orientation is None else {"orientation": tf.constant(orientation)}
  output_hw = (256, 192)
  crop = transforms.box_matrix(tf.constant(box, tf.float32), output_hw, 1.25)
  augment = transforms.affine_matrix(math.radians(angle_deg), scale, tf.zeros(2), False,
                                     *output_hw)
  matrix = augment @ crop
  labels = {"keypoints": tf.zeros((3, 2)), "visible": tf.ones(3), "norm": tf.constant(1.0)}
  image = transforms.decode_image(encoded, 3)
  if orientation is not None:
    image = transforms.upright(image, orientation)
  whole = transforms.warp({**labels, "image": image}, matrix, output_hw)
  window = transforms.warp({**labels, "encoded": encoded, **turned}, matrix, output_hw,
                           channels=3)
  assert not {"encoded", "orientation"} & window.keys() and window["image"].dtype == tf.uint8
  # libjpeg decodes a window's pixels as in the whole image, but for the chroma upsampling at
  # the window's edge, which moves a few warped pixels by one grey level.
  difference = np.abs(window["image"].numpy().astype(int) - whole["image"].numpy())
  assert difference.max() <= 1 and np.mean(difference > 0) < 0.01
  np.testing.assert_allclose(window["matrix"], whole["matrix"])
