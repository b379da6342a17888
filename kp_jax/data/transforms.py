"""Preprocessing ops on common examples: small dict -> dict functions usable inside tf.data.

Geometry is carried as one 3x3 `matrix` taking the source image's pixels to the model input's:
the crop to an object's box starts it, augmentation multiplies onto it, and a single `warp`
resamples the image, so a crop followed by a rotation interpolates once and keeps the context
around the box. Keypoints, visibility and the normaliser move with the same matrix; a flip also
swaps left/right keypoints. Evaluation keeps the matrix to map predictions back to the source
image. Random ops are stateless: they take a `seed` tensor of shape [2], so an example's
augmentation depends only on (run seed, example index) and a resumed run repeats it exactly.
"""

import io
import math

import cv2
import numpy as np
import tensorflow as tf

from kp_jax import exported

# tf.data already runs a warp on every core; OpenCV's own threads, splitting each crop's warp,
# would only add CPU time (`benchmarks/input_pipeline.py --ops`).
cv2.setNumThreads(1)


def select_keypoints(indices):
  """Keeps the keypoints at `indices` (a keypoint subset, in the subset's order), of one
  instance (`keypoints` [K, 2]) or of several ([N, K, 2])."""
  indices = tf.constant(indices, tf.int32)

  def op(example):
    return {**example, "keypoints": tf.gather(example["keypoints"], indices, axis=-2),
            "visible": tf.gather(example["visible"], indices, axis=-1)}
  return op


def unit_float(image):
  """uint8 pixels -> float32 in [0, 1]."""
  return tf.cast(image, tf.float32) / 255.0


def on_unit_float(*ops):
  """An op `(example, seed) -> example` applying `ops` (each `(example, seed) -> example`,
  with its own seed) to the example's uint8 image seen as float32 in [0, 1], and rounding the
  result back to uint8: photometric augmentations work on floats, batches carry pixels
  (`pixels.model_input`)."""
  def op(example, seed):
    example = {**example, "image": unit_float(example["image"])}
    for each, each_seed in zip(ops, tf.unstack(tf.random.experimental.stateless_split(
        seed, len(ops)))):
      example = each(example, each_seed)
    image = tf.clip_by_value(example["image"], 0.0, 1.0)
    return {**example, "image": tf.cast(tf.round(image * 255.0), tf.uint8)}
  return op


def identity_matrix(example):
  """Starts the geometry for an image that already is the model input."""
  return {**example, "matrix": tf.eye(3)}


def _matrix(a, b, tx, d, e, ty):
  """3x3 affine matrices [..., 3, 3] from their six entries (tensors of one shape [...])."""
  return tf.stack([tf.stack([a, b, tx], -1), tf.stack([d, e, ty], -1),
                   tf.stack([tf.zeros_like(a), tf.zeros_like(a), tf.ones_like(a)], -1)], -2)


def box_matrix(box, output_hw, padding, udp: bool = False):
  """3x3 matrix fitting `box` into an image of `output_hw` ([..., 4] boxes: [..., 3, 3]).

  `box` is (x, y, w, h) as in COCO: (x, y) is the top-left corner of the box's first pixel, so in
  kp-jax's convention (pixel centres at integers) the box spans [x - 0.5, x + w - 0.5]. The box
  is widened or heightened to the output's aspect ratio about its centre, then scaled by
  `padding` (1.25: a quarter of context), and mapped onto the whole output: its edges onto the
  output's edges, or with `udp` onto the output's first and last pixel centres (MMPose's
  `get_udp_warp_matrix`: (out_w - 1) / width output pixels per source pixel in x, and
  (out_h - 1) / height in y, a hair apart).
  """
  box = tf.cast(box, tf.float32)
  out_h, out_w = float(output_hw[0]), float(output_hw[1])
  centre = box[..., :2] + box[..., 2:] / 2 - 0.5
  width = tf.maximum(tf.maximum(box[..., 2], box[..., 3] * out_w / out_h) * padding, 1e-6)
  if udp:
    scale_x, scale_y = (out_w - 1) / width, (out_h - 1) / (width * out_h / out_w)
  else:
    scale_x = scale_y = out_w / width
  tx = (out_w - 1) / 2 - scale_x * centre[..., 0]
  ty = (out_h - 1) / 2 - scale_y * centre[..., 1]
  return _matrix(scale_x, tf.zeros_like(tx), tx, tf.zeros_like(ty), scale_y, ty)


def crop_to_box(output_hw, padding: float, udp: bool = False):
  """Starts the geometry with the crop of the example's `box` to the model input."""
  def op(example):
    return {**example, "matrix": box_matrix(example["box"], output_hw, padding, udp)}
  return op


def affine_matrix(angle, scale, shift, flip, height, width):
  """3x3 matrix of an augmentation in an image of (height, width) (pixel centres at integers).

  Mirror horizontally when `flip`, then rotate by `angle` (radians) and scale about the image
  centre, then translate by `shift` (pixels, [..., 2]). All arguments may be tensors, of
  shape [...] for [..., 3, 3] matrices.
  """
  cx, cy = (tf.cast(width, tf.float32) - 1) / 2, (tf.cast(height, tf.float32) - 1) / 2
  mirror = tf.where(flip, -1.0, 1.0)
  cos, sin = scale * tf.cos(angle), scale * tf.sin(angle)
  # out = S R (F(p) - c) + c + shift, where F(p) = (2 cx - x, y) when flipping.
  a, b = cos * mirror, -sin
  d, e = sin * mirror, cos
  tx = cx + shift[..., 0] - (a * cx + b * cy)
  ty = cy + shift[..., 1] - (d * cx + e * cy)
  return _matrix(a, b, tx, d, e, ty)


def move_keypoints(keypoints, visible, matrix, output_hw):
  """(keypoints through `matrix`, visibility with those outside the output cleared), of one
  instance ([K, 2], [K], [3, 3]) or of several ([..., K, 2], [..., K], [..., 3, 3])."""
  points = (keypoints @ tf.linalg.matrix_transpose(matrix[..., :2, :2])
            + matrix[..., None, :2, 2])
  size = tf.constant([output_hw[1], output_hw[0]], tf.float32)
  inside = tf.reduce_all((points >= -0.5) & (points <= size - 0.5), axis=-1)
  return points, visible * tf.cast(inside, tf.float32)


def _bilinear_warp(image, matrix, output_hw):
  """NumPy [h, w, C] -> [H, W, C] of the same dtype through `matrix` (source -> output
  pixels, centres at integers), bilinear, zero outside; -> [N, H, W, C] through each of
  [N, 3, 3] matrices, or for frames [N, h, w, C] each through the one matrix. OpenCV's
  `warpAffine`, ~7x faster than TensorFlow's ImageProjectiveTransformV3 for a 256x192 RGB crop
  in the pipeline (0.4 against 3.2 ms a core, the NumPy call included;
  `benchmarks/input_pipeline.py --ops`). As in MMPose, it samples at 1/32-pixel positions (off
  by at most 1/64 px per axis) and rounds a uint8 image's values."""
  images = image if image.ndim == 4 else image[None]
  matrices = matrix if matrix.ndim == 3 else matrix[None]
  height, width = output_hw
  warped = np.empty((max(len(images), len(matrices)), height, width, images.shape[-1]),
                    images.dtype)
  for i, out in enumerate(warped):  # one image through each matrix, or each through one
    # Written in place, not stacked afterwards: one copy less of every crop.
    cv2.warpAffine(images[i % len(images)], matrices[i % len(matrices)][:2].astype(np.float64),
                   (width, height), dst=out, flags=cv2.INTER_LINEAR,
                   borderMode=cv2.BORDER_CONSTANT, borderValue=0)
  return warped if image.ndim == 4 or matrix.ndim == 3 else warped[0]


def resample(image, matrix, output_hw):
  """The image ([h, w, C], uint8 or float32) seen through `matrix` (source -> output pixels),
  bilinear (`_bilinear_warp`), zero outside, in the image's dtype; through each of [N, 3, 3]
  matrices, [N, H, W, C] from one call.

  The identity and the plain mirror (a flip-only augmentation of a same-size image) sample
  pixel centres exactly, so they are copies, done as such.
  """
  def bilinear():
    warped = tf.numpy_function(lambda x, m: _bilinear_warp(x, m, output_hw), [image, matrix],
                               image.dtype, stateful=False)
    return tf.ensure_shape(warped, [*matrix.shape[:-2], *output_hw, image.shape[-1]])

  if len(matrix.shape) != 2 or tuple(image.shape[:2]) != tuple(output_hw):
    return bilinear()
  width = float(output_hw[1])
  identity = tf.eye(3)
  mirror = tf.constant([[-1.0, 0.0, width - 1], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
  return tf.case([(tf.reduce_all(matrix == identity), lambda: image),
                  (tf.reduce_all(matrix == mirror), lambda: tf.reverse(image, [1]))],
                 default=bilinear)


def _window(image_hw, matrix, output_hw):
  """[y, x, height, width] of the source pixels that `matrix`'s bilinear output reads: the
  output's corners taken back to the source, each sample's two neighbours along each axis,
  clipped to the image (at least one pixel)."""
  height, width = output_hw
  corners = tf.constant([[-0.5, -0.5, 1.0], [width - 0.5, -0.5, 1.0], [-0.5, height - 0.5, 1.0],
                         [width - 0.5, height - 0.5, 1.0]])
  source = (corners @ tf.transpose(tf.linalg.inv(matrix)))[:, :2]
  # (x, y) of the last pixel; tf.reverse, where a [::-1] slice made Grappler's remapper log an
  # error on every run of the window path.
  limit = tf.cast(tf.reverse(image_hw, [0]), tf.int32) - 1
  low = tf.clip_by_value(tf.cast(tf.floor(tf.reduce_min(source, 0)), tf.int32), 0, limit)
  high = tf.clip_by_value(tf.cast(tf.floor(tf.reduce_max(source, 0)), tf.int32) + 1, low, limit)
  return tf.stack([low[1], low[0], high[1] - low[1] + 1, high[0] - low[0] + 1])


# libjpeg's accurate integer IDCT: the pixels PIL and OpenCV (so MMPose, and kp-jax's own
# prediction on pictures) decode. TensorFlow's default, the fast IDCT, differs from them in
# about two thirds of a photo's values, by up to 4 levels (tests/transforms_test.py), and saves
# only a few percent of a decode (benchmarks/input_pipeline.py --ops).
JPEG_IDCT = "INTEGER_ACCURATE"


def _as_pil_reads(decode, channels: int):
  """`decode(channels)`'s uint8 pixels, one channel as PIL's grey ("L") of the colours: ITU-R
  601-2 luma in PIL's 16-bit fixed point, whose weights add up to 2**16 (grey stays as it was).
  libjpeg's own luma of a colour JPEG can differ from it, and TensorFlow decodes BMP and GIF in
  colour only."""
  if channels != 1:
    return decode(channels)
  weighted = tf.cast(decode(3), tf.int32) * tf.constant([19595, 38470, 7471])
  return tf.cast((tf.reduce_sum(weighted, -1, keepdims=True) + 2**15) // 2**16, tf.uint8)


# EXIF orientations (tag 0x0112, as cameras and phones write it): how a file's stored pixels
# become the picture viewers show, as (transpose, then mirror x, then mirror y). OpenCV's
# imread, PIL's ImageOps.exif_transpose, MMPose and detectron2 read pictures so; labelling
# tools show them so.
EXIF_ORIENTATION_TAG = 0x0112
EXIF_ORIENTATIONS = {1: (False, False, False), 2: (False, True, False), 3: (False, True, True),
                     4: (False, False, True), 5: (True, False, False), 6: (True, True, False),
                     7: (True, True, True), 8: (True, False, True)}


def _orientation_steps(orientation):
  """(transpose, mirror x, mirror y) bool tensors of an EXIF orientation tensor (1 to 8)."""
  table = tf.constant([(False, False, False)] + [EXIF_ORIENTATIONS[o] for o in range(1, 9)])
  return tf.unstack(tf.gather(table, orientation))


def upright(image, orientation):
  """Stored pixels [h, w, C] as viewers show them, for the file's EXIF `orientation`."""
  transpose, mirror_x, mirror_y = _orientation_steps(orientation)
  image = tf.cond(transpose, lambda: tf.transpose(image, [1, 0, 2]), lambda: image)
  image = tf.cond(mirror_x, lambda: tf.reverse(image, [1]), lambda: image)
  image = tf.cond(mirror_y, lambda: tf.reverse(image, [0]), lambda: image)
  return tf.ensure_shape(image, [None, None, image.shape[-1]])


def upright_matrix(orientation, stored_hw):
  """3x3 matrix taking a file's stored pixels (of `stored_hw`) to the upright ones `upright`
  gives, for its EXIF `orientation` (pixel centres at integers)."""
  transpose, mirror_x, mirror_y = _orientation_steps(orientation)
  height, width = tf.unstack(tf.cast(stored_hw, tf.float32))
  swap = tf.where(transpose, tf.constant([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
                  tf.eye(3))
  upright_w, upright_h = tf.where(transpose, height, width), tf.where(transpose, width, height)
  sign = lambda mirror: tf.where(mirror, -1.0, 1.0)
  end = lambda mirror, size: tf.where(mirror, size - 1, 0.0)
  mirror = _matrix(sign(mirror_x), 0.0, end(mirror_x, upright_w),
                   0.0, sign(mirror_y), end(mirror_y, upright_h))
  return mirror @ swap


def _is_tiff(encoded):
  """Whether `encoded` is a TIFF file (little- or big-endian), which TensorFlow cannot decode."""
  magic = tf.strings.substr(encoded, 0, 4)
  return tf.logical_or(magic == b"II*\x00", magic == b"MM\x00*")


def _decoded_by_pillow(encoded, channels: int):
  """uint8 pixels [h, w, channels] of an image file as prediction reads pictures
  (`exported.read_image`), as stored: the EXIF orientation is the caller's to apply."""
  pixels = tf.numpy_function(
      lambda data: exported.read_image(io.BytesIO(data.item()), channels, upright=False),
      [encoded], tf.uint8, stateful=False)
  return tf.ensure_shape(pixels, [None, None, channels])


def decode_image(encoded, channels: int):
  """uint8 pixels [h, w, channels] of an encoded image (JPEG, PNG, BMP, WebP, TIFF; a GIF's
  first frame), as PIL reads them (16-bit samples by their high byte). Decoded copies on disk
  are named by `files.DECODED_COPY_FORMAT`: bump it when these pixels change."""
  pixels = _as_pil_reads(lambda decoded: tf.case(
      [(tf.io.is_jpeg(encoded),
        lambda: tf.io.decode_jpeg(encoded, channels=decoded, dct_method=JPEG_IDCT)),
       (_is_tiff(encoded), lambda: _decoded_by_pillow(encoded, decoded))],
      default=lambda: tf.io.decode_image(encoded, channels=decoded, expand_animations=False)),
      channels)
  return tf.ensure_shape(pixels, [None, None, channels])


def decode_window(encoded, matrix, output_hw, channels: int, orientation=None):
  """(uint8 pixels, matrix from them to the output): the part of an encoded image that the
  warp through `matrix` reads, and `matrix` moved to that part's origin. A JPEG is decoded in
  that window alone (libjpeg skips the rest: an instance's crop decodes a fraction of the
  photo); other formats are decoded whole, then cut. With the file's EXIF `orientation`,
  `matrix` takes its upright pixels (`upright`) to the output, and the window is of the
  stored ones: the turn costs no pixel work."""
  def from_stored(stored_hw):
    return matrix if orientation is None else matrix @ upright_matrix(orientation, stored_hw)

  def jpeg():
    stored_hw = tf.io.extract_jpeg_shape(encoded)[:2]
    stored_matrix = from_stored(stored_hw)
    window = _window(stored_hw, stored_matrix, output_hw)
    return _as_pil_reads(lambda decoded: tf.io.decode_and_crop_jpeg(
        encoded, window, channels=decoded, dct_method=JPEG_IDCT), channels), window, stored_matrix

  def other():
    image = decode_image(encoded, channels)
    stored_matrix = from_stored(tf.shape(image)[:2])
    window = _window(tf.shape(image)[:2], stored_matrix, output_hw)
    return (image[window[0]:window[0] + window[2], window[1]:window[1] + window[3]], window,
            stored_matrix)

  pixels, window, stored_matrix = tf.cond(tf.io.is_jpeg(encoded), jpeg, other)
  origin = tf.cast(window[1::-1], tf.float32)  # (x, y) of the window's first pixel
  shift = tf.concat([tf.concat([tf.eye(2), origin[:, None]], 1), [[0.0, 0.0, 1.0]]], 0)
  return tf.ensure_shape(pixels, [None, None, channels]), stored_matrix @ shift


def warp(example, matrix, output_hw, flip_permutation=None, flip=False, channels: int = 0):
  """Resamples the image through `matrix` (source -> output pixels) into `output_hw`, and moves
  the keypoints, visibility and normaliser with it.

  Keypoints that leave the output become invisible; `flip_permutation` relabels left/right
  keypoints when `flip` is true. The normaliser (a length) scales with the transform; the
  example's `matrix` becomes `matrix`. An `encoded` image is decoded here, in the window the
  warp reads (`decode_window`, `channels` of it, turned by the example's EXIF `orientation`
  when it has one); the output has the image's dtype.

  Several instances of one image (labels with a leading axis N, `matrix` [N, 3, 3], `flip`
  [N]) are warped each through its own matrix by one call: images [N, H, W, C].
  """
  if "encoded" in example:
    pixels, window_matrix = decode_window(example["encoded"], matrix, output_hw, channels,
                                          example.get("orientation"))
    example = {k: v for k, v in example.items() if k not in ("encoded", "orientation")}
    warped = resample(pixels, window_matrix, output_hw)
  else:
    warped = resample(example["image"], matrix, output_hw)
  points, visible = move_keypoints(example["keypoints"], example["visible"], matrix, output_hw)
  if flip_permutation is not None:
    flips = tf.convert_to_tensor(flip)[..., None]
    perm = tf.where(flips, tf.constant(flip_permutation, tf.int32),
                    tf.range(len(flip_permutation), dtype=tf.int32))
    instance_axes = perm.shape.rank - 1
    points = tf.gather(points, perm, batch_dims=instance_axes)
    visible = tf.gather(visible, perm, batch_dims=instance_axes)
  scale = tf.sqrt(tf.abs(tf.linalg.det(matrix[..., :2, :2])))
  lengths = {k: example[k] * scale for k in ("norm", "size") if k in example}
  return {**example, "image": warped, "keypoints": points,
          "visible": visible, **lengths, "matrix": matrix}


def warp_to_input(output_hw):
  """Applies the example's own `matrix` (the crop, without augmentation)."""
  def op(example):
    return warp(example, example["matrix"], output_hw)
  return op


def random_affine(flip_permutation, max_rotation_deg, scale_range, max_shift, flip_probability,
                  output_hw, channels: int = 0):
  """Random rotation, scale, shift (fraction of the size) and flip in the model input's frame,
  from one stateless draw, composed with the example's `matrix` and applied by one warp.

  Returns an op `(example, seed) -> example`, for a uint8 or float32 image or an `encoded`
  one of `channels`, or for several instances of one image (`warp`), each with its own draw.
  """
  def op(example, seed):
    augment, flip = draw_affine(seed, max_rotation_deg, scale_range, max_shift,
                                flip_probability, output_hw, _instances_shape(example))
    return warp(example, augment @ example["matrix"], output_hw, flip_permutation, flip,
                channels)
  return op


def draw_affine(seed, max_rotation_deg, scale_range, max_shift, flip_probability, output_hw,
                shape=()):
  """(3x3 augmentation matrix in the model input's frame, whether it flips), from one
  stateless draw: rotation, scale, shift (a fraction of the size) and flip; of `shape`
  ([*shape, 3, 3], [*shape]), each its own draw."""
  height, width = output_hw
  u = tf.random.stateless_uniform(tf.concat([tf.cast(shape, tf.int32), [5]], 0), seed=seed)
  angle = (2 * u[..., 0] - 1) * math.radians(max_rotation_deg)
  scale = scale_range[0] + u[..., 1] * (scale_range[1] - scale_range[0])
  shift = (2 * u[..., 2:4] - 1) * max_shift * tf.constant([width, height], tf.float32)
  flip = u[..., 4] < flip_probability
  return affine_matrix(angle, scale, shift, flip, height, width), flip


def warp_clip(clip, matrix, output_hw):
  """uint8 frames [T, h, w, C] -> uint8 [T, H, W, C], every frame through the same `matrix`
  (source -> output pixels), bilinear, zero outside (`_bilinear_warp`)."""
  warped = tf.numpy_function(lambda x, m: _bilinear_warp(x, m, output_hw), [clip, matrix],
                             tf.uint8, stateful=False)
  return tf.ensure_shape(warped, [clip.shape[0], *output_hw, clip.shape[-1]])


def half_body(upper, lower, probability: float, min_keypoints: int, padding: float):
  """With `probability`, replaces the box by the box of the visible upper- or lower-body
  keypoints (index lists, chosen at random), scaled by `padding`, as in MMPose's half-body
  transform. Needs at least `min_keypoints` visible in the chosen half; otherwise a no-op.

  Returns an op `(example, seed) -> example`, to run before `crop_to_box`, for one instance
  or several of one image, each with its own draw.
  """
  num_keypoints = len(upper) + len(lower)
  in_upper, in_lower = (tf.constant(np.isin(np.arange(num_keypoints), part))
                        for part in (upper, lower))

  def op(example, seed):
    u = tf.random.stateless_uniform(tf.concat([_instances_shape(example), [2]], 0), seed=seed)
    keypoints = example["keypoints"]
    chosen = tf.where(u[..., 1:] < 0.5, in_upper, in_lower) & (example["visible"] > 0)
    use = (u[..., 0] < probability) & (
        tf.reduce_sum(tf.cast(chosen, tf.int32), -1) >= min_keypoints)
    low = tf.reduce_min(tf.where(chosen[..., None], keypoints, np.inf), -2)
    high = tf.reduce_max(tf.where(chosen[..., None], keypoints, -np.inf), -2)
    size = (high - low + 1) * padding
    part_box = tf.concat([(low + high) / 2 + 0.5 - size / 2, size], -1)
    return {**example, "box": tf.where(use[..., None], part_box,
                                       tf.cast(example["box"], tf.float32))}
  return op


def color_jitter(brightness: float, contrast: float, saturation: float):
  """Random brightness shift in [-b, b], contrast and saturation factors in [1 - c, 1 + c]
  (saturation only for RGB), on a float image in [0, 1]. Returns an op `(example, seed)`."""
  def op(example, seed):
    seeds = tf.random.experimental.stateless_split(seed, 3)
    image = example["image"]
    if brightness:
      image = tf.image.stateless_random_brightness(image, brightness, seeds[0])
    if contrast:
      image = tf.image.stateless_random_contrast(image, 1 - contrast, 1 + contrast, seeds[1])
    if saturation and image.shape[-1] == 3:
      image = tf.image.stateless_random_saturation(image, 1 - saturation, 1 + saturation,
                                                   seeds[2])
    return {**example, "image": tf.clip_by_value(image, 0.0, 1.0)}
  return op


def gaussian_blur(image, sigma, radius: int):
  """Separable Gaussian blur of an [H, W, C] float image; `sigma` may be a tensor."""
  x = tf.range(-radius, radius + 1, dtype=tf.float32)
  kernel = tf.exp(-x**2 / (2 * tf.maximum(sigma, 1e-3) ** 2))
  kernel /= tf.reduce_sum(kernel)
  channels = image.shape[-1]
  rows = tf.tile(tf.reshape(kernel, [-1, 1, 1, 1]), [1, 1, channels, 1])
  cols = tf.tile(tf.reshape(kernel, [1, -1, 1, 1]), [1, 1, channels, 1])
  out = tf.nn.depthwise_conv2d(image[None], rows, [1, 1, 1, 1], "SAME")
  return tf.nn.depthwise_conv2d(out, cols, [1, 1, 1, 1], "SAME")[0]


def random_blur(probability: float, max_sigma: float):
  """With `probability`, a Gaussian blur of sigma uniform in (0, max_sigma] pixels."""
  radius = max(1, math.ceil(3 * max_sigma))

  def op(example, seed):
    u = tf.random.stateless_uniform([2], seed=seed)
    image = example["image"]
    blurred = tf.cond(u[0] < probability,
                      lambda: gaussian_blur(image, u[1] * max_sigma, radius), lambda: image)
    return {**example, "image": blurred}
  return op


def _instances_shape(example):
  """[] for one instance, [N] for N instances of one image: the leading axes of its box. Not
  its keypoints': a whole-image example of several instances (the centre model's) has one
  box, and takes one draw."""
  return tf.shape(example["box"])[:-1] if "box" in example else tf.constant([], tf.int32)


def example_seed(run_seed: int, index):
  """The stateless seed of the example at global position `index` of the training stream."""
  return tf.stack([tf.constant(run_seed, tf.int64), tf.cast(index, tf.int64)])
