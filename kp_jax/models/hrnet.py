"""HRNet (Sun et al., "Deep High-Resolution Representation Learning", CVPR 2019), as MMPose
builds it for top-down pose (`mmpose/models/backbones/hrnet.py`, configs `td-hm_hrnet-w32`):

  stem     two 3x3 stride-2 convs of 64 channels (stride 4)
  stage 1  `blocks` Bottlenecks of 64 (256 channels out)
  stage s  (s = 2, 3, 4) a transition adds a branch at half the lowest resolution (a 3x3
           stride-2 conv) and sets the others to `width * 2**i` channels; then
           `modules_per_stage` modules, each `blocks` BasicBlocks per branch and a fusion:
           every branch receives every other, higher resolutions through strided 3x3 convs,
           lower ones through a 1x1 conv and nearest upsampling
  output   the stride-4 branch of `width` channels (the last module fuses into it alone)

Convolutions have no bias and are followed by BatchNorm; paddings are torch's (symmetric), so
MMPose's weights can map onto it array for array. The heatmap head on top (`heads.Heatmap` at
stride 4: no deconvolution, one 1x1 conv) completes MMPose's model: HRNet-W32 with 17
keypoints has 28,536,113 parameters, as MMPose's.
"""

import functools
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from kp_jax.models.backbones import BasicBlock, Bottleneck, batch_norm

_3x3 = ((1, 1), (1, 1))  # torch's padding=1: symmetric, also at stride 2


class _TracedOnceBasicBlock(nn.jit(BasicBlock)):
  """The residual block under flax's lifted jit, as `backbones.BatchNorm` is: HRNet-W32's
  modules call it 104 times on 4 shapes (one per branch), so a train step traces it 4 times
  and a warm run, which still traces, starts sooner (benchmarks/compile_time.py). XLA inlines
  the calls. Its variables are the plain block's, names and shapes."""


class _ConvNorm(nn.Module):
  """conv (no bias) -> BatchNorm [-> ReLU]."""
  features: int
  kernel: int = 3
  strides: int = 1
  relu: bool = True
  norm: type = nn.BatchNorm
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    padding = _3x3 if self.kernel == 3 else "VALID"
    x = nn.Conv(self.features, (self.kernel,) * 2, self.strides, padding, use_bias=False,
                dtype=self.dtype)(x)
    x = self.norm()(x)
    return nn.relu(x) if self.relu else x


class Transition(nn.Module):
  """From the previous stage's branches to `widths`: a branch whose width changes gets a 3x3
  conv; the new, lowest-resolution branch a 3x3 stride-2 conv from the previous lowest."""
  widths: Sequence[int]
  norm: type = nn.BatchNorm
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, branches):
    layer = functools.partial(_ConvNorm, norm=self.norm, dtype=self.dtype)
    out = []
    for i, width in enumerate(self.widths):
      if i < len(branches):
        x = branches[i]
        out.append(x if x.shape[-1] == width else layer(width, name=f"branch{i}")(x))
      else:
        out.append(layer(width, strides=2, name=f"branch{i}")(branches[-1]))
    return out


class HRModule(nn.Module):
  """`blocks` BasicBlocks on each branch, then the fusion into the first `outputs` branches:
  output i sums every branch j brought to its resolution and width (j = i as it is; j > i:
  1x1 conv + BatchNorm, upsampled by 2**(j - i); j < i: i - j 3x3 stride-2 convs, the last
  without ReLU), then ReLU."""
  widths: Sequence[int]
  blocks: int
  outputs: int
  norm: type = nn.BatchNorm
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, branches):
    layer = functools.partial(_ConvNorm, norm=self.norm, dtype=self.dtype)
    branches = list(branches)
    # Initialised as plain blocks: the lifted jit would split the RNG its own way (other
    # random weights than before) and XLA:CPU compiled that initialiser 15% slower.
    block = BasicBlock if self.is_initializing() else _TracedOnceBasicBlock
    for i, width in enumerate(self.widths):
      for b in range(self.blocks):
        branches[i] = block(width, norm=self.norm, dtype=self.dtype,
                            name=f"branch{i}_block{b}")(branches[i])
    fused = []
    for i in range(self.outputs):
      total = branches[i]
      for j, x in enumerate(branches):
        if j > i:
          x = layer(self.widths[i], kernel=1, relu=False, name=f"fuse{i}_from{j}")(x)
          x = jnp.repeat(jnp.repeat(x, 2 ** (j - i), axis=1), 2 ** (j - i), axis=2)
        elif j < i:
          for step in range(i - j):
            last = step == i - j - 1
            x = layer(self.widths[i] if last else self.widths[j], strides=2, relu=not last,
                      name=f"fuse{i}_from{j}_down{step}")(x)
        if j != i:
          total = total + x
      fused.append(nn.relu(total))
    return fused


class HRNet(nn.Module):
  width: int = 32  # of the highest-resolution branch: W18, W32, W48
  modules_per_stage: Sequence[int] = (1, 4, 3)  # stages 2, 3, 4
  blocks: int = 4  # residual blocks per branch in each module (and in stage 1)
  dtype: jnp.dtype = jnp.float32
  axis_name: str | None = None
  cpu_kernels: bool = True  # unused: plain XLA layers

  stride = 4  # input pixels per output pixel

  @nn.compact
  def __call__(self, x, train: bool = False):
    norm = batch_norm(train, self.dtype, self.axis_name)
    layer = functools.partial(_ConvNorm, norm=norm, dtype=self.dtype)
    x = layer(64, strides=2, name="stem0")(x)
    x = layer(64, strides=2, name="stem1")(x)
    for b in range(self.blocks):
      x = Bottleneck(64, norm=norm, dtype=self.dtype, name=f"stage1_block{b}")(x)
    branches = [x]
    for stage, modules in enumerate(self.modules_per_stage, start=2):
      widths = [self.width * 2**i for i in range(stage)]
      branches = Transition(widths, norm, self.dtype, name=f"transition{stage}")(branches)
      for m in range(modules):
        final = stage == 1 + len(self.modules_per_stage) and m == modules - 1
        branches = HRModule(widths, self.blocks, 1 if final else stage, norm, self.dtype,
                            name=f"stage{stage}_module{m}")(branches)
    return branches[0]


def hrnet_shape(width: int) -> dict:
  """MMPose's HRNet-W18 / W32 / W48 for top-down pose (they differ in width only)."""
  if width not in (18, 32, 48):
    raise ValueError(f"HRNet-W{width}: MMPose's are W18, W32 and W48.")
  return {"width": width, "modules_per_stage": (1, 4, 3), "blocks": 4}
