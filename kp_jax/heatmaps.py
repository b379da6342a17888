"""Heatmap codecs: Gaussian targets, and sub-pixel decoders (argmax, quarter offset, DARK,
soft-argmax). Pure JAX functions of maps [B, h, w, K] and points [B, K, 2] (x, y).

A map of stride s samples the image at pixel centres (j + 0.5) * s - 0.5, so image pixel x sits
at map coordinate u = (x + 0.5) / s - 0.5 (pixel centres at integers, as everywhere in kp-jax).
UDP (Huang et al., "The Devil is in the Details", CVPR 2020; MMPose's `UDPHeatmap`) aligns the
first and last pixel centres instead: u = x (w - 1) / (W - 1) for an image W wide and a map w
wide (`udp_to_map`); its targets are cut to a square of 3 sigma about the rounded point
(`udp_gaussian_maps`). Every function here that takes a stride works on UDP's map coordinates
with stride 1, where from_map and to_map are the identity.
"""

import functools

import jax
import jax.numpy as jnp


def to_map(points_px, stride: int):
  return (points_px + 0.5) / stride - 0.5


def from_map(points_map, stride: int):
  return (points_map + 0.5) * stride - 0.5


def gaussian_maps(points_px, map_hw, stride: int, sigma: float):
  """Unnormalised Gaussians exp(-d^2 / 2 sigma^2) at the exact (sub-pixel) points; sigma in
  map pixels. [B, K, 2] -> [B, h, w, K]."""
  u = to_map(points_px, stride)
  ys = jnp.arange(map_hw[0], dtype=jnp.float32)[:, None, None]  # [h, 1, 1]
  xs = jnp.arange(map_hw[1], dtype=jnp.float32)[None, :, None]  # [1, w, 1]
  dx2 = (xs - u[:, None, None, :, 0]) ** 2  # [B, 1, w, K]
  dy2 = (ys - u[:, None, None, :, 1]) ** 2  # [B, h, 1, K]
  return jnp.exp(-(dx2 + dy2) / (2 * sigma**2))


def _udp_scale(image_hw, map_hw):
  """(map pixels per image pixel) in x and y under UDP's alignment."""
  return jnp.array([(map_hw[1] - 1) / (image_hw[1] - 1), (map_hw[0] - 1) / (image_hw[0] - 1)],
                   jnp.float32)


def udp_to_map(points_px, image_hw, map_hw):
  return points_px * _udp_scale(image_hw, map_hw)


def udp_from_map(points_map, image_hw, map_hw):
  return points_map / _udp_scale(image_hw, map_hw)


def udp_gaussian_maps(points_px, image_hw, map_hw, sigma: float):
  """MMPose's UDP targets (`generate_udp_gaussian_heatmaps`): Gaussians at the exact points
  in UDP's map coordinates, zero outside the square of radius 3 sigma about each point's
  nearest map pixel. [B, K, 2] -> [B, h, w, K]."""
  u = udp_to_map(points_px, image_hw, map_hw)
  maps = gaussian_maps(u, map_hw, 1, sigma)
  nearest, radius = jnp.floor(u + 0.5), 3 * sigma
  low, high = jnp.trunc(nearest - radius), jnp.trunc(nearest + radius + 1)  # [low, high)
  ys = jnp.arange(map_hw[0], dtype=jnp.float32)[:, None, None]
  xs = jnp.arange(map_hw[1], dtype=jnp.float32)[None, :, None]
  inside_x = (xs >= low[:, None, None, :, 0]) & (xs < high[:, None, None, :, 0])
  inside_y = (ys >= low[:, None, None, :, 1]) & (ys < high[:, None, None, :, 1])
  return jnp.where(inside_x & inside_y, maps, 0.0)


def _argmax_2d(maps):
  """Integer (x, y) of each map's (first) maximum: [B, h, w, K] -> [B, K, 2] int32. Written as
  two plain reductions, not argmax's paired one, which TFLite's converter cannot lower."""
  b, h, w, k = maps.shape
  flat = maps.reshape(b, h * w, k)
  positions = jnp.arange(h * w, dtype=jnp.int32)[None, :, None]
  first = jnp.min(jnp.where(flat == flat.max(axis=1, keepdims=True), positions, h * w), axis=1)
  return jnp.stack([first % w, first // w], axis=-1)


def _at(maps, xy):
  """maps[b, y, x, k] for integer points [B, K, 2] -> [B, K]."""
  b, _, _, k = maps.shape
  return maps[jnp.arange(b)[:, None], xy[..., 1], xy[..., 0], jnp.arange(k)[None, :]]


def decode_argmax(maps, stride: int):
  return from_map(_argmax_2d(maps).astype(jnp.float32), stride)


def decode_quarter_offset(maps, stride: int):
  """Argmax shifted a quarter map pixel towards the higher neighbour (SimpleBaseline, HRNet)."""
  h, w = maps.shape[1:3]
  peak = _argmax_2d(maps)
  size = jnp.array([w, h])
  shift = []
  for axis in (0, 1):
    step = jnp.zeros(2, jnp.int32).at[axis].set(1)
    hi, lo = jnp.minimum(peak + step, size - 1), jnp.maximum(peak - step, 0)
    shift.append(0.25 * jnp.sign(_at(maps, hi) - _at(maps, lo)))
  return from_map(peak + jnp.stack(shift, axis=-1), stride)


def gaussian_blur(maps, sigma: float):
  """Depthwise Gaussian blur (radius 3 sigma, zero padding), rescaled to keep each map's max,
  as in DARK's distribution modulation."""
  radius = max(1, int(3 * sigma))
  taps = jnp.exp(-jnp.arange(-radius, radius + 1.0) ** 2 / (2 * sigma**2))
  kernel = jnp.outer(taps, taps) / jnp.sum(taps) ** 2
  k = maps.shape[-1]
  blurred = jax.lax.conv_general_dilated(
      maps, jnp.tile(kernel[:, :, None, None], (1, 1, 1, k)), (1, 1), "SAME",
      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=k)
  peak = lambda m: jnp.max(m, axis=(1, 2), keepdims=True)
  return blurred * peak(maps) / jnp.maximum(peak(blurred), 1e-12)


def decode_dark(maps, stride: int, blur_sigma: float = 0.0, peak=None):
  """DARK (Zhang et al. 2020): one Newton step on the log-heatmap from the argmax (or from
  `peak`, integer map pixels [B, K, 2], one per map).

  The log of a Gaussian is quadratic, so the step lands on its exact centre. The expansion
  point is kept one pixel inside the map so that its neighbours exist; for a Gaussian the step
  is exact from there too, which keeps points near the border sub-pixel accurate. Where the
  log-map is not concave the peak is kept; the step is limited to one map pixel.
  """
  if blur_sigma > 0:
    maps = gaussian_blur(maps, blur_sigma)
  h, w = maps.shape[1:3]
  peak = _argmax_2d(maps) if peak is None else peak
  centre = jnp.clip(peak, 1, jnp.array([w - 2, h - 2]))
  log = jnp.log(jnp.maximum(maps, 1e-10))
  at = lambda dx, dy: _at(log, centre + jnp.array([dx, dy]))
  c = at(0, 0)
  gx, gy = (at(1, 0) - at(-1, 0)) / 2, (at(0, 1) - at(0, -1)) / 2
  dxx, dyy = at(1, 0) - 2 * c + at(-1, 0), at(0, 1) - 2 * c + at(0, -1)
  dxy = (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1)) / 4
  det = dxx * dyy - dxy**2
  concave = (dxx < 0) & (det > 0)
  safe_det = jnp.where(concave, det, 1.0)
  offset = -jnp.stack([dyy * gx - dxy * gy, dxx * gy - dxy * gx], axis=-1) / safe_det[..., None]
  peak = peak.astype(jnp.float32)  # explicit float32 (jax2onnx widens int - 1.0 to float64)
  refined = jnp.where(concave[..., None], centre.astype(jnp.float32) + offset, peak)
  refined = jnp.clip(refined, peak - 1, peak + 1)
  return from_map(refined, stride)


def soft_argmax(logits, stride: int):
  """The expected position under softmax(logits) over each map (integral regression / DSNT):
  [B, h, w, K] -> [B, K, 2] image pixels. Differentiable."""
  b, h, w, k = logits.shape
  probs = jax.nn.softmax(logits.reshape(b, h * w, k).astype(jnp.float32), axis=1)
  probs = probs.reshape(b, h, w, k)
  x = jnp.einsum("bhwk,w->bk", probs, jnp.arange(w, dtype=jnp.float32))
  y = jnp.einsum("bhwk,h->bk", probs, jnp.arange(h, dtype=jnp.float32))
  return from_map(jnp.stack([x, y], axis=-1), stride)


def local_soft_argmax(logits, stride: int, radius: int):
  """soft_argmax within the (2 radius + 1)^2 map pixels about each map's maximum: its gradient
  can move a peak but not raise a second one elsewhere to pull the mean over. [B, h, w, K] ->
  [B, K, 2] image pixels."""
  peak = _argmax_2d(logits)[:, None, None]  # [B, 1, 1, K, 2]
  h, w = logits.shape[1:3]
  near = ((jnp.abs(jnp.arange(w)[:, None] - peak[..., 0]) <= radius)
          & (jnp.abs(jnp.arange(h)[:, None, None] - peak[..., 1]) <= radius))
  return soft_argmax(jnp.where(near, logits, -jnp.inf), stride)


def peak_mass(logits):
  """The softmax(logits) probability in the 3x3 map pixels around each map's argmax:
  [B, h, w, K] -> [B, K] in [0, 1]."""
  b, h, w, k = logits.shape
  probs = jax.nn.softmax(logits.reshape(b, h * w, k).astype(jnp.float32), axis=1)
  window = jax.lax.reduce_window(probs.reshape(b, h, w, k), 0.0, jax.lax.add, (1, 3, 3, 1),
                                 (1, 1, 1, 1), "SAME")
  return _at(window, _argmax_2d(logits))


def top_peaks(maps, k: int):
  """The `k` highest local maxima of single-channel maps [B, h, w, 1] (a 3x3 max-pool keeps
  a pixel only where it is its neighbourhood's maximum, CenterNet's peak suppression):
  (integer map pixels [B, k, 2] (x, y), values [B, k]). Static shapes: when a map has fewer
  than k peaks the rest are other pixels, with the value -inf."""
  b, h, w, _ = maps.shape
  padded = jnp.pad(maps[..., 0], ((0, 0), (1, 1), (1, 1)), constant_values=-jnp.inf)
  pooled = functools.reduce(jnp.maximum, [padded[:, i:i + h, j:j + w] for i in range(3)
                                          for j in range(3)])
  peaks = jnp.where(maps[..., 0] == pooled, maps[..., 0], -jnp.inf).reshape(b, h * w)
  values, index = top_k(peaks, k)
  return jnp.stack([index % w, index // w], axis=-1).astype(jnp.int32), values


def top_k(values, k: int):
  """`jax.lax.top_k` of rows [B, N] (ties: the lower index first), as k passes of max and
  argmax, which every export format converts: lax.top_k lowers to a composite that
  TensorFlow's SavedModel loader cannot read, and a sort is what TFLite cannot convert. k is
  a few instance slots, so the passes cost little."""
  positions = jnp.arange(values.shape[-1])
  taken = jnp.zeros(values.shape, bool)
  picked = []
  for _ in range(k):
    best = jnp.max(jnp.where(taken, -jnp.inf, values), axis=-1, keepdims=True)
    first = jnp.argmax(((values == best) & ~taken).astype(jnp.float32), axis=-1)
    taken = taken | (positions == first[:, None])
    picked.append(first)
  index = jnp.stack(picked, -1)
  return jnp.take_along_axis(values, index, -1), index


DECODERS = {"argmax": decode_argmax, "quarter_offset": decode_quarter_offset, "dark": decode_dark}
