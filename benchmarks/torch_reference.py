"""MMPose's and torchvision's architectures in PyTorch, module for module, so that their
`state_dict` keys are those of the published checkpoints: the reference that converted weights
are checked against (tests/pretrained_test.py) and the PyTorch side of benchmarks/peers.py.

Needs torch (tests/requirements.txt, benchmarks/requirements.txt); it lives with the benchmarks
and the tests use it from here: the kp_jax package never imports torch. Neither mmpose nor
torchvision installs here, hence the copies of their layouts:

  ResNet            torchvision.models.resnet (conv1/bn1, layer1-4, fc)
  SimpleBaseline    MMPose's ResNet + `HeatmapHead` (three 4x4 deconvs, a 1x1 conv)
  HRNet             mmpose/models/backbones/hrnet.py + the 1x1 `final_layer`
  ViTPose           mmpretrain.VisionTransformer as MMPose's ViTPose configs set it, with the
                    classic (two deconvs, 1x1 conv) or simple (ReLU, bilinear x4, 3x3 conv)
                    decoder
"""

import torch
from torch import nn
from torch.nn import functional as F

from kp_jax.models import resnet_shape


# ---------------------------------------------------------------------------------------------
# torchvision's ResNet.


class BasicBlock(nn.Module):
  expansion = 1

  def __init__(self, inplanes, planes, stride=1, downsample=None):
    super().__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.relu, self.downsample = nn.ReLU(), downsample

  def forward(self, x):
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
  expansion = 4

  def __init__(self, inplanes, planes, stride=1, downsample=None):
    super().__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)  # stride here: v1.5
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes * 4)
    self.relu, self.downsample = nn.ReLU(), downsample

  def forward(self, x):
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.relu(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
  def __init__(self, block, layers):
    super().__init__()
    self.inplanes = 64
    self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(64)
    self.relu, self.maxpool = nn.ReLU(), nn.MaxPool2d(3, 2, 1)
    self.layer1 = self._make_layer(block, 64, layers[0])
    self.layer2 = self._make_layer(block, 128, layers[1], 2)
    self.layer3 = self._make_layer(block, 256, layers[2], 2)
    self.layer4 = self._make_layer(block, 512, layers[3], 2)
    self.fc = nn.Linear(512 * block.expansion, 1000)

  def _make_layer(self, block, planes, blocks, stride=1):
    downsample = None
    if stride != 1 or self.inplanes != planes * block.expansion:
      downsample = nn.Sequential(
          nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
          nn.BatchNorm2d(planes * block.expansion))
    layers = [block(self.inplanes, planes, stride, downsample)]
    self.inplanes = planes * block.expansion
    layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)

  def features(self, x):  # the input of torchvision's avgpool
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def resnet(depth: int) -> ResNet:
  block = {18: BasicBlock, 34: BasicBlock}.get(depth, Bottleneck)
  return ResNet(block, resnet_shape(depth)["stage_sizes"])


def randomised(model, seed: int):
  """Random BatchNorm weights and statistics (not the identity), in eval mode."""
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, nn.BatchNorm2d):
        module.weight.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
        module.bias.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
        module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
        module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
  return model.eval()


# ---------------------------------------------------------------------------------------------
# MMPose's heatmap head and top-down models.


class HeatmapHead(nn.Module):
  """mmpose/models/heads/heatmap_heads/heatmap_head.py: `deconvs` x [ConvTranspose2d 4x4
  stride 2 padding 1, no bias -> BatchNorm2d -> ReLU], then the `final_layer` conv."""

  def __init__(self, channels, num_keypoints, deconvs=3, features=256, final_kernel=1):
    super().__init__()
    layers = []
    for i in range(deconvs):
      layers += [nn.ConvTranspose2d(channels if i == 0 else features, features, 4, 2, 1,
                                    bias=False), nn.BatchNorm2d(features), nn.ReLU()]
    self.deconv_layers = nn.Sequential(*layers)
    self.final_layer = nn.Conv2d(features if deconvs else channels, num_keypoints,
                                 final_kernel, padding=final_kernel // 2)

  def forward(self, x):
    return self.final_layer(self.deconv_layers(x))


class SimpleBaseline(nn.Module):
  def __init__(self, num_keypoints, head_name="head"):
    super().__init__()
    self.backbone = resnet(50)
    self.backbone.fc = nn.Identity()  # MMPose's ResNet has no classifier
    setattr(self, head_name, HeatmapHead(2048, num_keypoints))
    self.head_name = head_name

  def forward(self, x):
    return getattr(self, self.head_name)(self.backbone.features(x))


def conv3x3(inputs, outputs, stride=1):
  return nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False)


class HRModule(nn.Module):
  def __init__(self, widths, blocks, multiscale_output):
    super().__init__()
    self.branches = nn.ModuleList([nn.Sequential(*[BasicBlock(w, w) for _ in range(blocks)])
                                   for w in widths])
    self.fuse_layers = nn.ModuleList()
    for i in range(len(widths) if multiscale_output else 1):
      row = nn.ModuleList()
      for j, width in enumerate(widths):
        if j > i:
          row.append(nn.Sequential(nn.Conv2d(width, widths[i], 1, bias=False),
                                   nn.BatchNorm2d(widths[i]),
                                   nn.Upsample(scale_factor=2 ** (j - i), mode="nearest")))
        elif j == i:
          row.append(None)
        else:
          steps = []
          for k in range(i - j):
            last = k == i - j - 1
            out = widths[i] if last else width
            steps.append(nn.Sequential(conv3x3(width, out, 2), nn.BatchNorm2d(out),
                                       *([] if last else [nn.ReLU()])))
          row.append(nn.Sequential(*steps))
      self.fuse_layers.append(row)

  def forward(self, xs):
    xs = [branch(x) for branch, x in zip(self.branches, xs)]
    return [torch.relu(sum(x if layer is None else layer(x) for layer, x in zip(row, xs)))
            for row in self.fuse_layers]


class HRNet(nn.Module):
  """MMPose's HRNet with its 1x1 heatmap `final_layer` under `head_name`."""

  def __init__(self, width, modules_per_stage, blocks, num_keypoints, head_name="head"):
    super().__init__()
    self.backbone = nn.Module()
    b = self.backbone
    b.conv1, b.bn1, b.conv2, b.bn2 = conv3x3(3, 64, 2), nn.BatchNorm2d(64), conv3x3(64, 64, 2), \
        nn.BatchNorm2d(64)
    projection = nn.Sequential(nn.Conv2d(64, 256, 1, bias=False), nn.BatchNorm2d(256))
    b.layer1 = nn.Sequential(Bottleneck(64, 64, downsample=projection),
                             *[Bottleneck(256, 64) for _ in range(blocks - 1)])
    previous = [256]
    for stage, modules in enumerate(modules_per_stage, start=2):
      widths = [width * 2**i for i in range(stage)]
      transition = nn.ModuleList()
      for i, w in enumerate(widths):
        if i < len(previous):
          transition.append(None if previous[i] == w else nn.Sequential(
              conv3x3(previous[i], w), nn.BatchNorm2d(w), nn.ReLU()))
        else:
          transition.append(nn.Sequential(nn.Sequential(
              conv3x3(previous[-1], w, 2), nn.BatchNorm2d(w), nn.ReLU())))
      setattr(b, f"transition{stage - 1}", transition)
      last_stage = stage == 1 + len(modules_per_stage)
      setattr(b, f"stage{stage}", nn.Sequential(*[
          HRModule(widths, blocks, not (last_stage and m == modules - 1))
          for m in range(modules)]))
      previous = widths
    self.head_name = head_name
    setattr(self, head_name, nn.Module())
    getattr(self, head_name).final_layer = nn.Conv2d(width, num_keypoints, 1)
    self.stages = len(modules_per_stage)

  def forward(self, x):
    b = self.backbone
    x = torch.relu(b.bn2(b.conv2(torch.relu(b.bn1(b.conv1(x))))))
    xs = [b.layer1(x)]
    for stage in range(2, 2 + self.stages):
      transition = getattr(b, f"transition{stage - 1}")
      xs = [xs[i] if layer is None else layer(xs[min(i, len(xs) - 1)])
            for i, layer in enumerate(transition)]
      xs = getattr(b, f"stage{stage}")(xs)
    return getattr(self, self.head_name).final_layer(xs[0])


# ---------------------------------------------------------------------------------------------
# ViTPose: mmpretrain's VisionTransformer (keys patch_embed.projection, pos_embed,
# layers.{i}.ln1 / attn.qkv / attn.proj / ln2 / ffn.layers.0.0 / ffn.layers.1, ln1).


class Attention(nn.Module):
  def __init__(self, dim, heads):
    super().__init__()
    self.qkv, self.proj, self.heads = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim), heads

  def forward(self, x):
    b, n, c = x.shape
    q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
    return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))


class EncoderLayer(nn.Module):
  def __init__(self, dim, heads, mlp_dim):
    super().__init__()
    self.ln1, self.ln2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
    self.attn = Attention(dim, heads)
    self.ffn = nn.Module()
    self.ffn.layers = nn.Sequential(nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU()),
                                    nn.Linear(mlp_dim, dim))

  def forward(self, x):
    x = x + self.attn(self.ln1(x))
    return x + self.ffn.layers(self.ln2(x))


class VisionTransformer(nn.Module):
  def __init__(self, dim, depth, heads, mlp_dim, image_hw, patch_size=16, padding=2):
    super().__init__()
    self.patch_embed = nn.Module()
    self.patch_embed.projection = nn.Conv2d(3, dim, patch_size, patch_size, padding)
    tokens = ((image_hw[0] + 2 * padding - patch_size) // patch_size + 1) * (
        (image_hw[1] + 2 * padding - patch_size) // patch_size + 1)
    self.pos_embed = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
    self.layers = nn.ModuleList([EncoderLayer(dim, heads, mlp_dim) for _ in range(depth)])
    self.ln1 = nn.LayerNorm(dim, eps=1e-6)

  def forward(self, x):
    x = self.patch_embed.projection(x)
    b, c, h, w = x.shape
    x = x.flatten(2).transpose(1, 2) + self.pos_embed
    for layer in self.layers:
      x = layer(x)
    return self.ln1(x).transpose(1, 2).reshape(b, c, h, w)


class ViTPose(nn.Module):
  """decoder "classic": HeatmapHead with two deconvs; "simple": MMPose's FeatureMapProcessor
  (ReLU, bilinear x4, align_corners=False) and a 3x3 final conv."""

  def __init__(self, shape: dict, num_keypoints, image_hw, decoder="classic"):
    super().__init__()
    self.backbone = VisionTransformer(**shape, image_hw=image_hw)
    classic = decoder == "classic"
    self.head = HeatmapHead(shape["dim"], num_keypoints, deconvs=2 if classic else 0,
                            final_kernel=1 if classic else 3)
    self.simple = not classic

  def forward(self, x):
    x = self.backbone(x)
    if self.simple:
      x = F.interpolate(F.relu(x), scale_factor=4, mode="bilinear", align_corners=False)
    return self.head(x)
