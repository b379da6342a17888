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


def simplebaseline_config() -> dict:
  return {"dtype": "float32",
          "backbone": {"name": "resnet", "width": 64, "output_stride": 32, **resnet_shape(50)},
          "head": {"name": "heatmap", "stride": 4, "features": 256}}


def test_simplebaseline_has_mmposes_parameter_count():
  # MMPose's td-hm_res50 on COCO: 23,508,032 (ResNet-50 without its classifier) + 3 deconvs
  # (2048 and 2 x 256 inputs, 256 outputs, 4x4: 10,485,760) + their BatchNorms (1,536) + the
  # 1x1 conv to 17 maps (4,369) = 33,999,697.
  model, _ = create_model(simplebaseline_config(), 17, (256, 192))
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 256, 192, 3)))
  assert sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes["params"])) == 33_999_697


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
  loaded = pretrained.load(path, zero_variables(model, images))
  got = model.apply(loaded, images)["maps"]
  with torch.no_grad():
    want = reference(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()
  assert got.shape == (2, 16, 24, 17)
  np.testing.assert_allclose(got, want.transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4)

  # Every array must find its place: one more is named, not skipped.
  torch.save({**state, f"{head_name}.extra_layer.weight": torch.zeros(3)}, path)
  with pytest.raises(ValueError, match=rf"no place in kp-jax's model: \['extra_layer.weight'\]"):
    pretrained.load(path, zero_variables(model, images))
