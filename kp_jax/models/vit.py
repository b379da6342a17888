"""ViTPose's encoder (Xu et al., "ViTPose", NeurIPS 2022): a plain Vision Transformer, as MMPose
builds it (`mmpretrain.VisionTransformer` with `with_cls_token=False`, `out_type="featmap"`,
`patch_cfg=dict(padding=2)`):

  patches   a 16x16 stride-16 conv with 2 pixels of zero padding (256x192 -> 16x12 tokens),
            computed as one matrix product over the patches, plus a learnt position embedding
            per token
  layers    `depth` pre-norm blocks: x + attention(LayerNorm(x)), x + MLP(LayerNorm(x)) (GELU,
            4x wide), each branch dropped per example with the layer's drop-path rate (0 at the
            first layer, rising linearly to `drop_path_rate` at the last)
  output    LayerNorm, back to a [B, h, w, dim] feature map at stride 16

Attention is one `jax.nn.dot_product_attention` call (no masks: every shape static, so it
jits and shards as one program): cuDNN's fused kernel on NVIDIA GPUs in 16 bits, XLA's
einsums elsewhere (`attention`). Names follow MMPose's keys (`layer{i}/ln1`, `attn/qkv`, ...)
so its checkpoints map onto it array for array. A head of stride 4 on top (`heads.Heatmap`
with two deconvolutions: ViTPose's "classic" decoder; or `upsample="bilinear"` with a 3x3
final conv: its "simple" one) completes the model.
"""

import flax.linen as nn
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np

# ViTPose's sizes (its paper's Table 1; MMPose's `arch` of the ViTPose configs).
VIT_SIZES = {
    "small": {"dim": 384, "depth": 12, "heads": 12, "mlp_dim": 1536},
    "base": {"dim": 768, "depth": 12, "heads": 12, "mlp_dim": 3072},
    "large": {"dim": 1024, "depth": 24, "heads": 16, "mlp_dim": 4096},
    "huge": {"dim": 1280, "depth": 32, "heads": 16, "mlp_dim": 5120},
}
LAYER_NORM_EPSILON = 1e-6  # mmpretrain's


def vit_shape(size: str) -> dict:
  if size not in VIT_SIZES:
    raise ValueError(f"ViT size {size!r}: choose one of {sorted(VIT_SIZES)}.")
  return dict(VIT_SIZES[size])


def drop_path(x, rate: float, rng):
  """Each example's branch `x` [B, ...] zeroed with probability `rate`, else scaled by
  1 / (1 - rate) (stochastic depth), so its expectation is unchanged."""
  keep = jax.random.bernoulli(rng, 1.0 - rate, (x.shape[0],) + (1,) * (x.ndim - 1))
  return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


ATTENTION = ("auto", "xla", "cudnn")


def check_attention(choice: str):
  if choice not in ATTENTION:
    raise ValueError(f"config.model.backbone.attention={choice!r}: choose one of {ATTENTION}.")


def on_nvidia_gpu() -> bool:
  """Whether JAX's default backend is CUDA's (ROCm's GPUs are "gpu" too, without cuDNN)."""
  return (jax.default_backend() == "gpu"
          and "cuda" in jax.extend.backend.get_backend().platform_version)


def attention_implementation(choice: str, dtype, head_dim: int) -> str:
  """`jax.nn.dot_product_attention`'s implementation for `config.model.backbone.attention`:
  "xla" (einsums and a softmax; every backend), "cudnn" (cuDNN's fused flash attention,
  NVIDIA GPUs, 16-bit inputs, head dims of at most 128 in steps of 8), or "auto": cuDNN's
  where it can run, else XLA's.

  On GPUs XLA's form is also the slow one: ViTPose-B trained at 0.42x PyTorch's fused attention
  in float32 on an H200, and in bfloat16 XLA's autotuner crashed (CUDA_ERROR_ILLEGAL_ADDRESS)
  on the scores' batched dot, bf16[3072,64,192] x bf16[3072,64,192] (jax 0.11.2); the fused
  kernel has no such dot.
  """
  check_attention(choice)
  cudnn_runs = on_nvidia_gpu() and jnp.dtype(dtype).itemsize == 2
  if choice == "cudnn" and not cudnn_runs:
    raise ValueError(
        f"config.model.backbone.attention='cudnn': cuDNN's fused attention runs on NVIDIA "
        f"GPUs in 16 bits (config.model.dtype='bfloat16'); here the backend is "
        f"{jax.default_backend()!r} and the dtype {jnp.dtype(dtype).name}. Set 'auto' (cuDNN's "
        f"where it runs, XLA's elsewhere) or 'xla'.")
  if choice != "auto":
    return choice
  return "cudnn" if cudnn_runs and head_dim <= 128 and head_dim % 8 == 0 else "xla"


class Attention(nn.Module):
  heads: int
  dtype: jnp.dtype = jnp.float32
  attention: str = "auto"  # see attention_implementation

  @nn.compact
  def __call__(self, x):
    b, n, dim = x.shape
    head_dim = dim // self.heads
    qkv = nn.Dense(3 * dim, dtype=self.dtype, name="qkv")(x)
    q, k, v = jnp.split(qkv.reshape(b, n, 3, self.heads, head_dim), 3, axis=2)
    out = jax.nn.dot_product_attention(
        q[:, :, 0], k[:, :, 0], v[:, :, 0],
        implementation=attention_implementation(self.attention, self.dtype, head_dim))
    return nn.Dense(dim, dtype=self.dtype, name="proj")(out.reshape(b, n, dim))


class PatchEmbed(nn.Module):
  """nn.Conv(features, (patch, patch), strides=patch, padding=padding) - the same parameters,
  initialisers and values - computed as one matrix product over the image's patches: a
  convolution whose stride is its size touches each pixel once, so it is a space-to-depth and
  a dense layer. A GEMM is what every backend runs best, forward and backward; the
  convolution's weight gradient is an unusual one (a window of the whole token grid at
  dilation 16, over 3 input channels) for XLA:GPU to hand to cuDNN and autotune."""
  features: int
  patch: int
  padding: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    p, pad, channels = self.patch, self.padding, x.shape[-1]
    kernel = self.param("kernel", nn.linear.default_kernel_init,
                        (p, p, channels, self.features))
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
    x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    b, height, width, _ = x.shape
    h, w = (height - p) // p + 1, (width - p) // p + 1  # the convolution's 'VALID' outputs
    patches = (x[:, :h * p, :w * p].reshape(b, h, p, w, p, channels)
               .transpose(0, 1, 3, 2, 4, 5).reshape(b, h, w, p * p * channels))
    patches, kernel, bias = nn.dtypes.promote_dtype(patches, kernel, bias, dtype=self.dtype)
    return patches @ kernel.reshape(p * p * channels, self.features) + bias


class EncoderLayer(nn.Module):
  heads: int
  mlp_dim: int
  drop_path_rate: float = 0.0
  dtype: jnp.dtype = jnp.float32
  attention: str = "auto"

  def _dropped(self, x, train: bool):
    if not train or self.drop_path_rate == 0:
      return x
    return drop_path(x, self.drop_path_rate, self.make_rng("dropout"))

  @nn.compact
  def __call__(self, x, train: bool = False):
    norm = lambda name: nn.LayerNorm(LAYER_NORM_EPSILON, dtype=self.dtype, name=name)
    attention = Attention(self.heads, self.dtype, self.attention, name="attn")
    x = x + self._dropped(attention(norm("ln1")(x)), train)
    y = nn.Dense(self.mlp_dim, dtype=self.dtype, name="fc1")(norm("ln2")(x))
    y = nn.Dense(x.shape[-1], dtype=self.dtype, name="fc2")(nn.gelu(y, approximate=False))
    return x + self._dropped(y, train)


class ViT(nn.Module):
  dim: int = 768
  depth: int = 12
  heads: int = 12
  mlp_dim: int = 3072
  patch_size: int = 16
  patch_padding: int = 2
  drop_path_rate: float = 0.0
  attention: str = "auto"  # jax.nn.dot_product_attention's implementation: "auto" (cuDNN's
  #                          fused kernel on NVIDIA GPUs in 16 bits, else XLA's), "xla" or "cudnn"
  dtype: jnp.dtype = jnp.float32
  axis_name: str | None = None  # unused: no BatchNorm
  cpu_kernels: bool = True  # unused: plain XLA layers

  def __post_init__(self):
    check_attention(self.attention)  # at create_model, not at the first trace
    super().__post_init__()

  @property
  def stride(self):  # input pixels per output pixel
    return self.patch_size

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = PatchEmbed(self.dim, self.patch_size, self.patch_padding, self.dtype,
                   name="patch_embed")(x)
    b, h, w, _ = x.shape
    x = x.reshape(b, h * w, self.dim)
    x = x + self.param("pos_embed", nn.initializers.truncated_normal(0.02),
                       (1, h * w, self.dim)).astype(self.dtype)
    for i, rate in enumerate(np.linspace(0.0, self.drop_path_rate, self.depth)):
      x = EncoderLayer(self.heads, self.mlp_dim, float(rate), self.dtype, self.attention,
                       name=f"layer{i}")(x, train)
    x = nn.LayerNorm(LAYER_NORM_EPSILON, dtype=self.dtype, name="ln")(x)
    return x.reshape(b, h, w, self.dim)
