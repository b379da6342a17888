"""Backbones: images [B, H, W, C] -> feature maps [B, H / stride, W / stride, F].

Flax infers the input channels from the images, so every backbone takes grayscale or RGB.
"""

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from kp_jax.models import kernels


def max_pool(x, window_shape, strides, padding="VALID"):
  """`nn.max_pool` over NHWC, written as the maximum of the window's strided slices;
  `padding` is "SAME", "VALID" or explicit ((top, bottom), (left, right)) pads.

  Same values, and the same gradient wherever a window's maximum is unique. XLA:CPU turns
  `nn.max_pool`'s gradient into a variadic reduce-window plus a scatter, which took 80% of the
  seed CNN's training step; the gradient of these slices is fused elementwise code, 4x faster
  (docs/benchmarks.md, "CPU pooling").
  """
  if isinstance(padding, str):
    if padding not in ("SAME", "VALID"):
      raise ValueError(f"max_pool padding={padding!r}: 'SAME', 'VALID' or explicit pads.")
    padding = jax.lax.padtype_to_pads(x.shape[1:3], window_shape, strides, padding)
  x = jnp.pad(x, [(0, 0), *padding, (0, 0)], constant_values=-jnp.inf)
  out = [(size - window) // stride + 1
         for size, window, stride in zip(x.shape[1:3], window_shape, strides)]
  windows = [jax.lax.slice(x, (0, i, j, 0),
                           (x.shape[0], i + (out[0] - 1) * strides[0] + 1,
                            j + (out[1] - 1) * strides[1] + 1, x.shape[3]),
                           (1, strides[0], strides[1], 1))
             for i in range(window_shape[0]) for j in range(window_shape[1])]
  return functools.reduce(jnp.maximum, windows)


def relu_max_pool(x, cpu_kernels: bool):
  """relu then 2x2 max-pooling: kernels.relu_pool (the same values, a cheaper gradient on
  CPU), or XLA's own layers on accelerators."""
  if cpu_kernels:
    return kernels.relu_pool(x)
  return nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2))


RELU_POOLS = {"max": relu_max_pool,
              "avg": lambda x, cpu_kernels: nn.avg_pool(nn.relu(x), (2, 2), strides=(2, 2))}


# Up to this many input channels (grayscale, RGB) a [conv -> ReLU -> max-pool 2] block runs as
# kernels.conv_relu_pool, whose cost grows with input channels; wider inputs use XLA's conv.
FUSED_MAX_CHANNELS = 3


class ConvReluPool(nn.Conv):
  """nn.Conv (same parameters, names and initialisers) followed by ReLU and 2x2 max-pooling,
  computed by kernels.conv_relu_pool (in the seed CNN's CPU step, the first layer's ~275 ms
  fell to ~65 ms: docs/benchmarks.md)."""

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", self.kernel_init,
                        self.kernel_size + (x.shape[-1], self.features), self.param_dtype)
    bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    if self.padding == "SAME":
      pads = jax.lax.padtype_to_pads(x.shape[1:3], self.kernel_size, (1, 1), "SAME")
      x = jnp.pad(x, [(0, 0), *pads, (0, 0)])
    return kernels.conv_relu_pool(x, kernel, bias)


def _per_block(value, n: int, name: str):
  values = (value,) * n if isinstance(value, int) else tuple(value)
  if len(values) != n:
    raise ValueError(f"{name}={value!r} needs one entry per block ({n}).")
  return values


class ConvPool(nn.Module):
  """The seed article's feature extractor: [conv k x k -> ReLU -> pool 2] per entry of
  `features`. With the defaults: conv 32 3x3, max-pool 2, conv 64 3x3, max-pool 2, 'VALID'
  convolutions as in Keras."""
  features: Sequence[int] = (32, 64)
  kernel_size: int = 3
  conv_strides: int | Sequence[int] = 1  # one for all blocks, or one per block
  padding: str = "VALID"
  pool: str = "max"
  dtype: jnp.dtype = jnp.float32
  axis_name: str | None = None  # unused: no normalisation layers
  cpu_kernels: bool = True  # kernels.py's CPU forms; False: XLA's own layers (same parameters)

  def __post_init__(self):
    if self.pool not in RELU_POOLS:
      raise ValueError(f"pool={self.pool!r}: choose one of {sorted(RELU_POOLS)}.")
    super().__post_init__()

  @nn.compact
  def __call__(self, x, train: bool = False):
    strides = _per_block(self.conv_strides, len(self.features), "conv_strides")
    for i, (width, stride) in enumerate(zip(self.features, strides)):
      fused = (self.cpu_kernels and stride == 1 and self.pool == "max"
               and x.shape[-1] <= FUSED_MAX_CHANNELS and self.padding in ("VALID", "SAME"))
      layer = ConvReluPool if fused else nn.Conv
      x = layer(width, (self.kernel_size,) * 2, strides=stride, padding=self.padding,
                dtype=self.dtype, name=f"Conv_{i}")(x)
      if not fused:
        x = RELU_POOLS[self.pool](x, self.cpu_kernels)
    return x


class BatchNorm(nn.jit(nn.BatchNorm)):
  """flax's BatchNorm under flax's lifted jit: traced once for all its calls alike (same
  input shape and settings), so a train step's hundreds of BatchNorms trace and lower as a
  few dozen; a run whose program comes back from the compilation cache still pays tracing
  and lowering (benchmarks/compile_time.py). XLA inlines the calls, so the compiled program
  is the same. Named BatchNorm, its variables keep flax's names (BatchNorm_0, ...)."""


def batch_norm(train: bool, dtype, axis_name):
  # Under pmap, `axis_name` makes the batch statistics those of the global batch (sync BN);
  # under jit over a mesh the batch axis is already global.
  return functools.partial(BatchNorm, use_running_average=not train, momentum=0.9,
                           epsilon=1e-5, dtype=dtype, axis_name=axis_name if train else None)


class VGG(nn.Module):
  """A VGG-style stack: per stage, `convs_per_stage` [conv 3x3 -> BN -> ReLU] then max-pool 2."""
  stage_features: Sequence[int] = (32, 64, 128, 256)
  convs_per_stage: int | Sequence[int] = 2
  batch_norm: bool = True
  dtype: jnp.dtype = jnp.float32
  axis_name: str | None = None
  cpu_kernels: bool = True

  @property
  def stride(self) -> int:
    return 2 ** len(self.stage_features)

  @nn.compact
  def __call__(self, x, train: bool = False):
    norm = batch_norm(train, self.dtype, self.axis_name)
    depths = _per_block(self.convs_per_stage, len(self.stage_features), "convs_per_stage")
    if min(depths) < 1:
      raise ValueError(f"convs_per_stage={self.convs_per_stage!r}: each stage needs a conv.")
    for width, depth in zip(self.stage_features, depths):
      for j in range(depth):
        x = nn.Conv(width, (3, 3), use_bias=not self.batch_norm, dtype=self.dtype)(x)
        x = norm()(x) if self.batch_norm else x
        x = relu_max_pool(x, self.cpu_kernels) if j == depth - 1 else nn.relu(x)
    return x


def _residual(x, y, strides, norm, conv):
  """relu(x + y), projecting x by a strided 1x1 conv + BN where its shape differs from y's.
  Called inside a block's compact __call__, so the layers belong to that block."""
  if x.shape != y.shape:
    x = norm()(conv(y.shape[-1], (1, 1), strides)(x))
  return nn.relu(x + y)


def _pad(dilation: int):
  """A 3x3 conv's padding as torchvision's (`dilation` on every side): for stride 2 this
  centres the windows as torch does, where "SAME" pads only the bottom/right, so converted
  torchvision weights compute the same features."""
  return ((dilation, dilation), (dilation, dilation))


class _Block(nn.Module):
  """The fields of a residual block (a block's parameters are named after its subclass)."""
  features: int  # of the 3x3 convs (a Bottleneck outputs 4x as many)
  strides: int = 1
  dilation: int = 1
  norm: type = nn.BatchNorm
  dtype: jnp.dtype = jnp.float32


class BasicBlock(_Block):
  @nn.compact
  def __call__(self, x):
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype)
    y = conv(self.features, (3, 3), self.strides, _pad(self.dilation),
             kernel_dilation=self.dilation)(x)
    y = nn.relu(self.norm()(y))
    y = conv(self.features, (3, 3), padding=_pad(self.dilation), kernel_dilation=self.dilation)(y)
    y = self.norm(scale_init=nn.initializers.zeros)(y)  # each block starts as the identity
    return _residual(x, y, self.strides, self.norm, conv)


class Bottleneck(_Block):
  @nn.compact
  def __call__(self, x):
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype)
    y = nn.relu(self.norm()(conv(self.features, (1, 1))(x)))
    y = conv(self.features, (3, 3), self.strides, _pad(self.dilation),
             kernel_dilation=self.dilation)(y)
    y = nn.relu(self.norm()(y))
    y = self.norm(scale_init=nn.initializers.zeros)(conv(4 * self.features, (1, 1))(y))
    return _residual(x, y, self.strides, self.norm, conv)


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nn.Module):
  """ResNet v1.5 with BatchNorm and a settable output stride.

  The stem is conv 7x7/2 + max-pool 3x3/2 (stride 4), or with `small_stem` conv 3x3/2 only
  (stride 2, for small images). Padding is torchvision's (symmetric), so its ImageNet weights
  convert (kp_jax/pretrained.py). Stage i has `stage_sizes[i]` blocks of width `width * 2**i`;
  stages after the first halve the resolution until `output_stride` is reached, then dilate
  instead (as DeepLab does), keeping the receptive field and the resolution.
  """
  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  block: str = "basic"
  width: int = 64
  output_stride: int = 32
  small_stem: bool = False
  dtype: jnp.dtype = jnp.float32
  axis_name: str | None = None
  cpu_kernels: bool = True

  def __post_init__(self):
    if self.block not in BLOCKS:
      raise ValueError(f"block={self.block!r}: choose one of {sorted(BLOCKS)}.")
    super().__post_init__()

  @property
  def stride(self) -> int:
    """Input pixels per feature pixel."""
    stem = 2 if self.small_stem else 4
    return min(max(self.output_stride, stem), stem * 2 ** (len(self.stage_sizes) - 1))

  @nn.compact
  def __call__(self, x, train: bool = False):
    norm = batch_norm(train, self.dtype, self.axis_name)
    if self.small_stem:
      x = nn.Conv(self.width, (3, 3), 2, use_bias=False, dtype=self.dtype)(x)
      x, stride = nn.relu(norm()(x)), 2
    else:
      x = nn.Conv(self.width, (7, 7), 2, padding=[(3, 3), (3, 3)], use_bias=False,
                  dtype=self.dtype)(x)
      pool = max_pool if self.cpu_kernels else nn.max_pool
      x = pool(nn.relu(norm()(x)), (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
      stride = 4
    if self.output_stride < stride:
      raise ValueError(f"output_stride={self.output_stride} is below the stem's {stride}.")
    dilation = 1
    for i, num_blocks in enumerate(self.stage_sizes):
      for j in range(num_blocks):
        strides = 1
        if i > 0 and j == 0:
          if stride < self.output_stride:
            strides, stride = 2, stride * 2
          else:
            dilation *= 2
        x = BLOCKS[self.block](self.width * 2**i, strides, dilation, norm, self.dtype)(x)
    return x


def resnet_shape(depth: int) -> dict:
  """The stage sizes and block type of the standard ResNet depths."""
  shapes = {18: ((2, 2, 2, 2), "basic"), 34: ((3, 4, 6, 3), "basic"),
            50: ((3, 4, 6, 3), "bottleneck"), 101: ((3, 4, 23, 3), "bottleneck")}
  stage_sizes, block = shapes[depth]
  return {"stage_sizes": stage_sizes, "block": block}


