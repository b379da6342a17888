"""Preprocessing ops on common examples: small dict -> dict functions usable inside tf.data.

Geometric ops move the image, keypoints, visibility and normaliser together from one random
draw. Random ops are stateless: they take a `seed` tensor of shape [2], so an example's
augmentation depends only on (run seed, example index) and a resumed run repeats it exactly.
"""

import math

import tensorflow as tf


def select_keypoints(indices):
  """Keeps the keypoints at `indices` (a keypoint subset, in the subset's order)."""
  indices = tf.constant(indices, tf.int32)

  def op(example):
    return {**example, "keypoints": tf.gather(example["keypoints"], indices),
            "visible": tf.gather(example["visible"], indices)}
  return op


def normalize_image(mean: float, std: float):
  """uint8 image -> float32 (image / 255 - mean) / std."""
  def op(example):
    image = tf.cast(example["image"], tf.float32) / 255.0
    return {**example, "image": (image - mean) / std}
  return op


def affine_matrix(angle, scale, shift, flip, height, width):
  """3x3 matrix taking input pixel coordinates to output ones (pixel centres at integers).

  Mirror horizontally when `flip`, then rotate by `angle` (radians) and scale about the image
  centre, then translate by `shift` (pixels, [2]). All arguments may be tensors.
  """
  cx, cy = (tf.cast(width, tf.float32) - 1) / 2, (tf.cast(height, tf.float32) - 1) / 2
  mirror = tf.where(flip, -1.0, 1.0)
  cos, sin = scale * tf.cos(angle), scale * tf.sin(angle)
  # out = S R (F(p) - c) + c + shift, where F(p) = (2 cx - x, y) when flipping.
  a, b = cos * mirror, -sin
  d, e = sin * mirror, cos
  tx = cx + shift[0] - (a * cx + b * cy)
  ty = cy + shift[1] - (d * cx + e * cy)
  return tf.stack([[a, b, tx], [d, e, ty], [0.0, 0.0, 1.0]])


def warp(example, matrix, flip_permutation=None, flip=False, fill_value=0.0):
  """Applies `matrix` (input -> output pixels) to the image, keypoints and visibility.

  Keypoints that leave the image become invisible; `flip_permutation` relabels left/right
  keypoints when `flip` is true. The normaliser (a length) scales with the transform.
  """
  image = example["image"]
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  inverse = tf.linalg.inv(matrix)
  # ImageProjectiveTransformV3 wants the output -> input map as 8 numbers.
  transform = tf.reshape(inverse, [-1])[:8][None]
  warped = tf.raw_ops.ImageProjectiveTransformV3(
      images=image[None], transforms=transform, output_shape=tf.stack([height, width]),
      fill_value=fill_value, interpolation="BILINEAR", fill_mode="CONSTANT")[0]

  points = example["keypoints"] @ tf.transpose(matrix[:2, :2]) + matrix[:2, 2]
  size = tf.cast(tf.stack([width, height]), tf.float32)
  inside = tf.reduce_all((points >= -0.5) & (points <= size - 0.5), axis=-1)
  visible = example["visible"] * tf.cast(inside, tf.float32)
  if flip_permutation is not None:
    perm = tf.where(flip, tf.constant(flip_permutation, tf.int32),
                    tf.range(len(flip_permutation), dtype=tf.int32))
    points, visible = tf.gather(points, perm), tf.gather(visible, perm)
  norm = example["norm"] * tf.sqrt(tf.abs(tf.linalg.det(matrix[:2, :2])))
  return {**example, "image": tf.cast(warped, image.dtype), "keypoints": points,
          "visible": visible, "norm": norm}


def random_affine(flip_permutation, max_rotation_deg, scale_range, max_shift, flip_probability):
  """Random rotation, scale, shift (fraction of the size) and flip, from one stateless draw.

  Returns an op `(example, seed) -> example`, for a float32 image.
  """
  def op(example, seed):
    u = tf.random.stateless_uniform([5], seed=seed)
    angle = (2 * u[0] - 1) * math.radians(max_rotation_deg)
    scale = scale_range[0] + u[1] * (scale_range[1] - scale_range[0])
    shape = tf.shape(example["image"])
    size = tf.cast(tf.stack([shape[1], shape[0]]), tf.float32)  # (width, height)
    shift = (2 * u[2:4] - 1) * max_shift * size
    flip = u[4] < flip_probability
    matrix = affine_matrix(angle, scale, shift, flip, size[1], size[0])
    return warp(example, matrix, flip_permutation, flip)
  return op


def example_seed(run_seed: int, index):
  """The stateless seed of the example at global position `index` of the training stream."""
  return tf.stack([tf.constant(run_seed, tf.int64), tf.cast(index, tf.int64)])

