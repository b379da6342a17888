"""kp_jax.models.kernels and the layers that use them, against lax/Flax references."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kp_jax.models import backbones, heads, kernels


def flax_relu_pool(x):
  """ReLU, then Flax's 2x2 max-pooling (whose gradient goes to the first maximum of a window,
  in row-major order)."""
  return nn.max_pool(jax.nn.relu(x), (2, 2), strides=(2, 2))


def reference(x, kernel, bias, padding="VALID", strides=1):
  """The plain layer: XLA's convolution, then flax_relu_pool."""
  y = jax.lax.conv_general_dilated(x, kernel, (strides, strides), padding,
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return flax_relu_pool(y + bias)


def random_layer(shape, kernel_size, features, seed=0):
  keys = jax.random.split(jax.random.key(seed), 4)
  x = jax.random.uniform(keys[0], shape, minval=-1.0)
  kernel = jax.random.normal(keys[1], (kernel_size, kernel_size, shape[-1], features))
  bias = 0.3 * jax.random.normal(keys[2], (features,))
  return x, kernel, bias, keys[3]


def values_and_gradients(f, args, key):
  """f(*args) and the gradients of a random cotangent (from `key`), in one compiled program."""
  def run(*args):
    out, vjp = jax.vjp(f, *args)
    return out, vjp(jax.random.normal(key, out.shape))
  return jax.jit(run)(*args)


def assert_same_values_and_gradients(ours, ref, args, key, atol):
  want, want_grads = values_and_gradients(ref, args, key)
  got, got_grads = values_and_gradients(ours, args, key)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=atol)
  for name, g, w in zip(("x", "kernel", "bias"), got_grads, want_grads):
    scale = float(jnp.abs(w).max())
    np.testing.assert_allclose(g, w, rtol=0, atol=atol * max(scale, 1.0), err_msg=name)


@pytest.mark.parametrize("shape, kernel_size, features", [
    ((4, 96, 96, 1), 3, 32),  # the seed CNN's first layer
    ((3, 33, 30, 3), 3, 8),  # RGB; odd conv output (31 rows): the last row is dropped
    ((2, 20, 23, 2), 5, 4),  # larger kernel, odd width
    ((1, 4, 4, 1), 3, 3),  # a single pooling window
])
def test_conv_relu_pool_matches_reference(shape, kernel_size, features):
  x, kernel, bias, key = random_layer(shape, kernel_size, features)
  assert_same_values_and_gradients(kernels.conv_relu_pool, reference, (x, kernel, bias), key,
                                   atol=2e-5)


def test_conv_relu_pool_ties_go_to_the_first_maximum_like_flax():
  # Constant patches make all four window positions tie (as in flat backgrounds and padding);
  # zero patches tie at the ReLU's 0, which passes no gradient.
  x = jnp.zeros((2, 12, 12, 1)).at[:, :6].set(0.5).at[1, 8:, 4:9, 0].set(jnp.arange(5.0))
  kernel = jnp.ones((3, 3, 1, 4)) * jnp.array([1.0, -1.0, 0.5, 2.0])
  bias = jnp.array([0.0, 0.25, 0.0, -0.5])
  assert_same_values_and_gradients(kernels.conv_relu_pool, reference, (x, kernel, bias),
                                   jax.random.key(1), atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 94, 94, 8), (3, 45, 45, 16), (1, 7, 10, 3), (1, 2, 2, 1)])
def test_relu_pool_matches_flax(shape):
  # Odd sizes drop the last row/column, as 'VALID' pooling does; their gradient is 0.
  x = jax.random.normal(jax.random.key(0), shape)
  want, want_grads = values_and_gradients(flax_relu_pool, (x,), jax.random.key(1))
  got, got_grads = values_and_gradients(kernels.relu_pool, (x,), jax.random.key(1))
  np.testing.assert_array_equal(got, want)
  np.testing.assert_array_equal(got_grads[0], want_grads[0])


def test_relu_pool_ties_like_flax():
  x = jnp.array([[1.0, 1.0, 0.0, 0.0, -1.0, -2.0], [1.0, 1.0, 0.0, 0.0, -3.0, -1.0],
                 [2.0, 0.5, 0.0, 3.0, 3.0, 1.0], [0.5, 2.0, -1.0, 0.0, 3.0, 3.0]])
  x = jnp.stack([x, -x])[..., None] * jnp.array([1.0, 0.5])  # [2, 4, 6, 2]
  cotangent = jnp.arange(1.0, 13.0).reshape(2, 2, 3, 1) * jnp.ones(2)
  np.testing.assert_array_equal(jax.vjp(kernels.relu_pool, x)[1](cotangent)[0],
                                jax.vjp(flax_relu_pool, x)[1](cotangent)[0])


@pytest.mark.parametrize("padding, conv_strides, channels", [
    ("VALID", 1, 1),  # fused
    ("SAME", 1, 3),  # fused, on the padded input
    ("VALID", 2, 1),  # strided convolution: nn.Conv + max_pool
    ("VALID", 1, 4),  # more input channels than FUSED_MAX_CHANNELS: nn.Conv + max_pool
])
def test_conv_pool_layers_match_unfused_flax(padding, conv_strides, channels):
  module = backbones.ConvPool(features=(8, 16), padding=padding, conv_strides=conv_strides)
  x = jax.random.uniform(jax.random.key(0), (2, 30, 30, channels))
  params = module.init(jax.random.key(1), x)["params"]

  def unfused(params, x):
    for i in range(2):
      layer = params[f"Conv_{i}"]
      x = reference(x, layer["kernel"], layer["bias"], padding, conv_strides)
    return x

  assert jax.tree.map(jnp.shape, params) == {
      "Conv_0": {"kernel": (3, 3, channels, 8), "bias": (8,)},
      "Conv_1": {"kernel": (3, 3, 8, 16), "bias": (16,)}}
  loss = lambda f: lambda params: jnp.sum(f(params, x) ** 2)
  ours = lambda params, x: module.apply({"params": params}, x)
  np.testing.assert_allclose(jax.jit(ours)(params, x), jax.jit(unfused)(params, x), rtol=1e-5,
                             atol=1e-5)
  got, want = jax.jit(jax.grad(loss(ours)))(params), jax.jit(jax.grad(loss(unfused)))(params)
  jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4), got, want)


def test_conv_pool_initialises_like_nn_conv():
  # The fused layer is an nn.Conv subclass: same names and random initial values, so
  # checkpoints and seeds mean the same with or without it.
  x = jnp.ones((1, 16, 16, 1))
  fused = backbones.ConvPool(features=(8,)).init(jax.random.key(3), x)["params"]

  class Plain(nn.Module):
    @nn.compact
    def __call__(self, x):
      return nn.Conv(8, (3, 3), padding="VALID", name="Conv_0")(x)
  plain = Plain().init(jax.random.key(3), x)["params"]
  jax.tree.map(np.testing.assert_array_equal, fused, plain)


def test_conv_pool_bfloat16_close_to_float32():
  x = jax.random.uniform(jax.random.key(0), (2, 24, 24, 1))
  params = backbones.ConvPool(features=(8,)).init(jax.random.key(1), x)
  y32 = backbones.ConvPool(features=(8,)).apply(params, x)
  y16 = backbones.ConvPool(features=(8,), dtype=jnp.bfloat16).apply(params, x)
  assert y16.dtype == jnp.bfloat16
  np.testing.assert_allclose(y16.astype(jnp.float32), y32, rtol=0.02, atol=0.02)


@pytest.mark.parametrize("shape, features", [((2, 3, 3, 128), 32), ((1, 5, 7, 3), 4),
                                             ((3, 1, 1, 2), 5)])
def test_conv_transpose_4x4_stride_2_matches_lax(shape, features):
  keys = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(keys[0], shape)
  kernel = jax.random.normal(keys[1], (4, 4, shape[-1], features))
  lax_deconv = lambda x, kernel: jax.lax.conv_transpose(
      x, kernel, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  want, want_vjp = jax.vjp(lax_deconv, x, kernel)
  got, got_vjp = jax.vjp(kernels.conv_transpose_4x4_stride_2, x, kernel)
  assert got.shape == (shape[0], 2 * shape[1], 2 * shape[2], features)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
  cotangent = jax.random.normal(keys[2], want.shape)
  for g, w in zip(got_vjp(cotangent), want_vjp(cotangent)):
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-4)


def test_deconv2x_is_nn_conv_transpose():
  x = jax.random.normal(jax.random.key(0), (2, 6, 6, 8))
  flax_layer = nn.ConvTranspose(16, (4, 4), strides=(2, 2), use_bias=False)
  ours = heads.Deconv2x(16, (4, 4), strides=(2, 2), use_bias=False)
  params = flax_layer.init(jax.random.key(1), x)
  jax.tree.map(np.testing.assert_array_equal, ours.init(jax.random.key(1), x), params)
  np.testing.assert_allclose(ours.apply(params, x), flax_layer.apply(params, x), rtol=1e-5,
                             atol=1e-5)
