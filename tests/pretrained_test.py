"""Pretrained starts: torchvision ResNet state_dicts converted to kp-jax's ResNet give torch's
own features; another run's workdir gives its backbone (and the head where it fits)."""

import numpy as np
import pytest

import jax
import jax.numpy as jnp
from flax import traverse_util
from kp_jax import pretrained, steps
from kp_jax.models import create_model, resnet_shape

torch = pytest.importorskip("torch")
nn = torch.nn


# torchvision.models.resnet's modules, key for key (torchvision itself does not install beside
# the CPU torch wheel here); its own classes are used when it is importable.
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


def torch_resnet(depth: int):
  try:
    import torchvision  # noqa: PLC0415
    model = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    model.features = lambda x: torch.nn.Sequential(*list(model.children())[:-2])(x)
    return model
  except ImportError:
    block = {18: BasicBlock, 50: Bottleneck}[depth]
    return ResNet(block, resnet_shape(depth)["stage_sizes"])


def randomised(model, seed: int):
  """Random weights and BatchNorm statistics (not the identity), in eval mode."""
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, nn.BatchNorm2d):
        module.weight.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
        module.bias.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
        module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
        module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
  return model.eval()


def backbone_config(depth: int) -> dict:
  return {"dtype": "float32", "backbone": {"name": "resnet", "width": 64, "output_stride": 32,
                                          **resnet_shape(depth)},
          "head": {"name": "heatmap", "stride": 8, "features": 16}}


def zero_variables(model, images):
  """The model's variables, as zeros: the backbone's are all replaced by the conversion (and a
  ResNet-50's random initialisation would cost more than the test)."""
  shapes = jax.eval_shape(model.init, jax.random.key(0), images)
  return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)


@pytest.mark.parametrize("depth", [18, 50])
def test_torchvision_resnet_converts_to_the_same_features(depth, tmp_path):
  torch.manual_seed(depth)
  reference = randomised(torch_resnet(depth), depth)
  path = str(tmp_path / f"resnet{depth}.pth")
  torch.save(reference.state_dict(), path)

  model, _ = create_model(backbone_config(depth), 4, (96, 64))
  images = np.random.default_rng(0).normal(size=(2, 96, 64, 3)).astype(np.float32)
  loaded = pretrained.load(path, zero_variables(model, images))
  got = model.backbone.apply({"params": loaded["params"]["backbone"],
                              "batch_stats": loaded["batch_stats"]["backbone"]}, images)
  with torch.no_grad():
    want = reference.features(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()
  assert got.shape == (2, 3, 2, 512 * (4 if depth == 50 else 1))
  np.testing.assert_allclose(got, want.transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4)

  # A grayscale model gets the kernel summed over colours: the same features as torch's on the
  # gray image repeated in R, G and B.
  gray_model, _ = create_model(backbone_config(depth), 4, (96, 64))
  gray = images[..., :1]
  loaded = pretrained.load(path, zero_variables(gray_model, gray))
  got = gray_model.backbone.apply({"params": loaded["params"]["backbone"],
                                   "batch_stats": loaded["batch_stats"]["backbone"]}, gray)
  with torch.no_grad():
    want = reference.features(torch.from_numpy(np.repeat(gray, 3, -1).transpose(0, 3, 1, 2)))
  np.testing.assert_allclose(got, want.numpy().transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4)


def test_a_state_dict_for_another_architecture_is_refused(tmp_path):
  path = str(tmp_path / "resnet18.pth")
  torch.save(torch_resnet(18).state_dict(), path)
  config = backbone_config(18)
  config["backbone"]["width"] = 32  # not torchvision's 64
  model, _ = create_model(config, 4, (64, 64))
  variables = zero_variables(model, jnp.zeros((1, 64, 64, 3)))
  with pytest.raises(ValueError, match="none of its arrays fit this model's backbone"):
    pretrained.load(path, variables)
  with pytest.raises(ValueError, match="not a torchvision ResNet state_dict"):
    torch.save({"weight": torch.zeros(3)}, path)
    pretrained.load(path, variables)


def test_a_workdir_gives_its_backbone_and_the_head_where_keypoints_match(trained):
  config, workdir, _ = trained
  source = pretrained.workdir_variables(workdir)
  for num_keypoints in (15, 5):  # the same keypoints, or 5 others
    model, _ = create_model(config.model, num_keypoints, (32, 32))
    state = steps.create_train_state(config, model, (32, 32, 1), jax.random.key(7))
    fresh = traverse_util.flatten_dict(jax.device_get(state.params))
    loaded = pretrained.load(workdir, {"params": state.params, "batch_stats": state.batch_stats})
    flat = traverse_util.flatten_dict(loaded["params"])
    assert flat.keys() == fresh.keys()
    for path, value in flat.items():
      # tiny's head is one 1x1 conv to a map per keypoint: taken only for the same keypoints.
      taken = path[0] == "backbone" or num_keypoints == 15
      np.testing.assert_array_equal(value, source["params"][path] if taken else fresh[path])
    stats = traverse_util.flatten_dict(loaded["batch_stats"])
    assert stats and all(np.array_equal(v, source["batch_stats"][p]) for p, v in stats.items())
  restarted = steps.with_variables(state, loaded)
  assert int(restarted.step) == 0
  jax.tree.map(np.testing.assert_array_equal, restarted.ema_params, restarted.params)


# MMPose's SimpleBaseline: a ResNet backbone and its HeatmapHead (mmpose/models/heads/
# heatmap_heads/heatmap_head.py): three [ConvTranspose2d 4x4 stride 2 padding 1, no bias ->
# BatchNorm2d -> ReLU], then a 1x1 conv, under the state_dict keys its checkpoints use.
class HeatmapHead(nn.Module):
  def __init__(self, channels, num_keypoints, features=256):
    super().__init__()
    layers = []
    for i in range(3):
      layers += [nn.ConvTranspose2d(channels if i == 0 else features, features, 4, 2, 1,
                                    bias=False), nn.BatchNorm2d(features), nn.ReLU()]
    self.deconv_layers = nn.Sequential(*layers)
    self.final_layer = nn.Conv2d(features, num_keypoints, 1)

  def forward(self, x):
    return self.final_layer(self.deconv_layers(x))


class SimpleBaseline(nn.Module):
  def __init__(self, num_keypoints, head_name="head"):
    super().__init__()
    self.backbone = torch_resnet(50)
    self.backbone.fc = nn.Identity()  # MMPose's ResNet has no classifier
    setattr(self, head_name, HeatmapHead(2048, num_keypoints))
    self.head_name = head_name

  def forward(self, x):
    return getattr(self, self.head_name)(self.backbone.features(x))


def converted_and_torch_maps(path: str, model, reference, images):
  """(kp-jax's heatmaps with the weights of the file at `path`, torch's `reference` forward),
  both [B, h, w, K], for images [B, H, W, 3]."""
  loaded = pretrained.load(path, zero_variables(model, images))
  with torch.no_grad():
    want = reference(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()
  return model.apply(loaded, images)["maps"], want.transpose(0, 2, 3, 1)


def simplebaseline_config() -> dict:
  return {"dtype": "float32",
          "backbone": {"name": "resnet", "width": 64, "output_stride": 32, **resnet_shape(50)},
          "head": {"name": "heatmap", "stride": 4, "features": 256}}


@pytest.mark.parametrize("head_name", ["head", "keypoint_head"])  # MMPose 1.x, 0.x
def test_mmpose_simplebaseline_converts_to_the_same_heatmaps(head_name, tmp_path):
  torch.manual_seed(5)
  reference = randomised(SimpleBaseline(17, head_name), 5)
  # MMPose saves {"meta": ..., "state_dict": ...}; the classifier stand-in has no weights.
  path = str(tmp_path / "td-hm_res50.pth")
  state = {k: v for k, v in reference.state_dict().items()}
  torch.save({"meta": {"mmpose_version": "1.3.2"}, "state_dict": state}, path)

  model, _ = create_model(simplebaseline_config(), 17, (64, 96))
  images = np.random.default_rng(1).normal(size=(2, 64, 96, 3)).astype(np.float32)
  got, want = converted_and_torch_maps(path, model, reference, images)
  assert got.shape == (2, 16, 24, 17)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)

  # Every array must find its place: one more is named, not skipped.
  torch.save({**state, f"{head_name}.extra_layer.weight": torch.zeros(3)}, path)
  with pytest.raises(ValueError, match=rf"no place in kp-jax's model: \['extra_layer.weight'\]"):
    pretrained.load(path, zero_variables(model, images))


# MMPose's HRNet (mmpose/models/backbones/hrnet.py), module for module, so its state_dict keys
# are those of MMPose's checkpoints: conv1/bn1/conv2/bn2, layer1, transition{1,2,3},
# stage{2,3,4}.<module>.branches / fuse_layers.
def conv3x3(inputs, outputs, stride=1):
  return nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False)


class TorchHRModule(nn.Module):
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


class TorchHRNet(nn.Module):
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
          TorchHRModule(widths, blocks, not (last_stage and m == modules - 1))
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


@pytest.mark.parametrize("head_name", ["head", "keypoint_head"])  # MMPose 1.x, 0.x
def test_mmpose_hrnet_converts_to_the_same_heatmaps(head_name, tmp_path):
  # HRNet-W32's layout (every stage, fusions into up to 4 branches) at width 8 and 2 blocks,
  # so both forwards take seconds; the key table is the same at any width.
  shape = {"width": 8, "modules_per_stage": (1, 2, 2), "blocks": 2}
  torch.manual_seed(3)
  reference = randomised(TorchHRNet(**shape, num_keypoints=5, head_name=head_name), 3)
  path = str(tmp_path / "td-hm_hrnet.pth")
  torch.save({"meta": {}, "state_dict": reference.state_dict()}, path)
  config = {"dtype": "float32", "backbone": {"name": "hrnet", **shape},
            "head": {"name": "heatmap", "stride": 4}}
  model, _ = create_model(config, 5, (64, 96))
  images = np.random.default_rng(2).normal(size=(2, 64, 96, 3)).astype(np.float32)
  got, want = converted_and_torch_maps(path, model, reference, images)
  assert got.shape == (2, 16, 24, 5)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  # A file of another HRNet (a block more, or fewer, a branch) is refused, not half-loaded.
  for blocks, message in ((3, r"of its arrays do not fit \(\['batch_stats/backbone/stage"),
                          (1, r"it lacks \d+ of the backbone's arrays")):
    other = TorchHRNet(**dict(shape, blocks=blocks), num_keypoints=5)
    torch.save(other.state_dict(), path)
    with pytest.raises(ValueError, match=message):
      pretrained.load(path, zero_variables(model, images))
