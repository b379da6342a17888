"""Alternative formulations of layers that XLA:CPU runs slowly, each with the same values and
gradients as the plain layer (tests/kernels_test.py checks them against `lax` references).
Calls that take no gradient compute plain maxima and convolutions, which every export
converter lowers (kp_jax/export.py).
"""

import functools

import jax
import jax.numpy as jnp

POOL_POSITIONS = ((0, 0), (0, 1), (1, 0), (1, 1))  # (row, column) in a 2x2 pooling window


def _phase(u: int, v: int, out_hw):
  """Index of x[:, u::2, v::2] cut to `out_hw` rows and columns, for NHWC arrays."""
  (h, w) = out_hw
  return (slice(None), slice(u, u + 2 * h - 1, 2), slice(v, v + 2 * w - 1, 2))


def _phases(x, kernel_size: int, out_hw):
  """x [B, H, W, C] -> phases[u][v] = x[_phase(u, v)], u, v < kernel_size + 1: the input pixel
  at offset (u, v) of every pooled output's (k+1) x (k+1) receptive field."""
  return [[x[_phase(u, v, out_hw)] for v in range(kernel_size + 1)]
          for u in range(kernel_size + 1)]


def _window_preactivations(phases, kernel, bias):
  """The conv outputs at the four positions of each pooling window, as multiply-adds of
  shifted input phases: one fused elementwise loop, with no full-resolution tensor."""
  k, _, channels, _ = kernel.shape
  return [bias + sum(phases[pi + i][pj + j][..., c:c + 1] * kernel[i, j, c]
                     for i in range(k) for j in range(k) for c in range(channels))
          for pi, pj in POOL_POSITIONS]


def _pool_relu(preactivations):
  """(relu(max_p z_p), index of the first maximal position or -1 where the ReLU is off) over
  a window's preactivations z_p, as one reduction over [0, z0, z1, z2, z3]: a ReLU that is off
  (or ties at 0) picks the 0, so the gradient goes where `nn.max_pool`'s does after `relu`.
  Being a reduction, XLA writes both once instead of recomputing them in every consumer."""
  candidates = jnp.stack([jnp.zeros_like(preactivations[0])] + list(preactivations), axis=-1)
  positions = jax.lax.broadcasted_iota(jnp.int32, candidates.shape, candidates.ndim - 1)

  def first_max(a, b):
    (a_value, a_index), (b_value, b_index) = a, b
    take_b = (b_value > a_value) | ((b_value == a_value) & (b_index < a_index))
    return jnp.where(take_b, b_value, a_value), jnp.where(take_b, b_index, a_index)

  pooled, index = jax.lax.reduce((candidates, positions), (jnp.array(-jnp.inf, candidates.dtype),
                                 jnp.int32(0)), first_max, (candidates.ndim - 1,))
  return pooled, (index - 1).astype(jnp.int8)


def _relu_max(preactivations):
  """relu(max_p z_p) alone: what a call that takes no gradient (inference, export) needs, as
  plain maxima that every converter lowers; the same values `_pool_relu` returns."""
  return functools.reduce(jnp.maximum, preactivations, jnp.zeros_like(preactivations[0]))


def _pooled_hw(x, kernel_size: int):
  return tuple((size - kernel_size + 1) // 2 for size in x.shape[1:3])


@jax.custom_vjp
def conv_relu_pool(x, kernel, bias):
  """max_pool_2x2(relu(conv_valid(x, kernel) + bias)) for NHWC `x`, a square HWIO
  `kernel`, stride 1.

  For few input channels (a grayscale or RGB first layer) XLA:CPU spends most of this layer's
  time writing, transposing and re-reading the full-resolution conv output. Here the forward
  pass is one fused reduction writing only the pooled output and the index of each window's
  winner; the backward pass routes the gradient to the winners as a [pixels, 4 x features]
  matrix and gets the kernel gradient from one matmul with the (k+1) x (k+1) input patches.
  Cost grows with input channels x kernel area: use it for first layers only.
  """
  phases = _phases(x, kernel.shape[0], _pooled_hw(x, kernel.shape[0]))
  return _relu_max(_window_preactivations(phases, kernel, bias))


def _forward(x, kernel, bias):
  phases = _phases(x, kernel.shape[0], _pooled_hw(x, kernel.shape[0]))
  pooled, winner = _pool_relu(_window_preactivations(phases, kernel, bias))
  return pooled, (x, kernel, winner)


def _backward(residuals, grad):
  x, kernel, winner = residuals
  k, _, channels, features = kernel.shape
  phases = _phases(x, k, grad.shape[1:3])
  routed = jnp.where(winner[..., None, :] == jnp.arange(4, dtype=jnp.int8)[:, None],
                     grad[..., None, :], 0).astype(grad.dtype)  # [B, h, w, 4, F]
  pixels = routed.shape[0] * routed.shape[1] * routed.shape[2]
  routed = routed.reshape(pixels, 4 * features)
  # Rows: each (u, v, channel) input phase, then ones for the bias; pixel-minor, so each row
  # is one strided copy and the matmul contracts its operands' natural minor dimensions.
  rows = [p[..., c] for row in phases for p in row for c in range(channels)]
  patches = jnp.stack(rows + [jnp.ones_like(rows[0])]).reshape(len(rows) + 1, pixels)

  patch_grad = jnp.dot(patches, routed).reshape(len(rows) + 1, 4, features)
  bias_grad = patch_grad[-1].sum(0)
  patch_grad = patch_grad[:-1].reshape(k + 1, k + 1, channels, 4, features)
  kernel_grad = sum(patch_grad[pi:pi + k, pj:pj + k, :, p]
                    for p, (pi, pj) in enumerate(POOL_POSITIONS))

  # Input gradient (dropped by XLA when nothing asks for it, as for images): each window
  # position's routed gradient times the kernel, added back at its shifted phase.
  shifted = jnp.zeros((k + 1, k + 1, channels, 4, features), kernel.dtype)
  for p, (pi, pj) in enumerate(POOL_POSITIONS):
    shifted = shifted.at[pi:pi + k, pj:pj + k, :, p].set(kernel)
  patch_input_grad = jnp.dot(routed, shifted.reshape(-1, 4 * features).T)
  patch_input_grad = patch_input_grad.reshape(grad.shape[:3] + (k + 1, k + 1, channels))
  x_grad = jnp.zeros_like(x)
  for u in range(k + 1):
    for v in range(k + 1):
      x_grad = x_grad.at[_phase(u, v, grad.shape[1:3])].add(patch_input_grad[:, :, :, u, v])
  return x_grad, kernel_grad.astype(kernel.dtype), bias_grad.astype(grad.dtype)


conv_relu_pool.defvjp(_forward, _backward)


@jax.custom_vjp
def relu_pool(x):
  """max_pool_2x2(relu(x)) for NHWC `x`: one reduction writes the pooled values and each
  window's winner; the gradient is routed from those, so XLA neither keeps relu(x) nor runs
  max-pooling's select-and-scatter, and fuses the routing into the gradient's consumers."""
  out_hw = tuple(size // 2 for size in x.shape[1:3])
  return _relu_max([x[_phase(pi, pj, out_hw)] for pi, pj in POOL_POSITIONS])


def _relu_pool_forward(x):
  out_hw = tuple(size // 2 for size in x.shape[1:3])
  pooled, winner = _pool_relu([x[_phase(pi, pj, out_hw)] for pi, pj in POOL_POSITIONS])
  return pooled, (winner, x.shape)


def _relu_pool_backward(residuals, grad):
  winner, shape = residuals
  (b, h, w, f) = grad.shape
  position = jnp.arange(4, dtype=jnp.int8).reshape(1, 1, 2, 1, 2, 1)
  routed = jnp.where(winner[:, :, None, :, None] == position, grad[:, :, None, :, None], 0)
  routed = routed.reshape(b, 2 * h, 2 * w, f)
  return (jnp.pad(routed, [(0, 0), (0, shape[1] - 2 * h), (0, shape[2] - 2 * w), (0, 0)]),)


relu_pool.defvjp(_relu_pool_forward, _relu_pool_backward)


# Output phase -> ((row of a 3x3 kernel, row of the 4x4 transposed kernel) it takes): with
# 'SAME' padding, y[2i] = K[0] x[i-1] + K[2] x[i] and y[2i+1] = K[1] x[i] + K[3] x[i+1].
_SUBPIXEL_TAPS = {0: ((0, 0), (1, 2)), 1: ((1, 1), (2, 3))}


def conv_transpose_4x4_stride_2(x, kernel):
  """lax.conv_transpose(x, kernel, (2, 2), 'SAME') for NHWC `x` and a 4x4 HWIO `kernel` (as
  nn.ConvTranspose computes it), as one 3x3 convolution to 2 x 2 x F channels followed by
  depth-to-space. XLA:CPU lowers the transposed convolution's gradients to slow generic loops;
  this form runs on its fast convolution path (2.25x the multiplies, on small maps)."""
  (b, h, w, _), (_, _, cin, features) = x.shape, kernel.shape
  subpixel = jnp.zeros((3, 3, cin, 2, 2, features), kernel.dtype)
  for a, rows in _SUBPIXEL_TAPS.items():
    for c, cols in _SUBPIXEL_TAPS.items():
      for r, t in rows:
        for q, u in cols:
          subpixel = subpixel.at[r, q, :, a, c].set(kernel[t, u])
  y = jax.lax.conv_general_dilated(x, subpixel.reshape(3, 3, cin, 4 * features), (1, 1),
                                   "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  y = y.reshape(b, h, w, 2, 2, features).transpose(0, 1, 3, 2, 4, 5)
  return y.reshape(b, 2 * h, 2 * w, features)
