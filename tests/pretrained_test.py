"""Pretrained starts: torchvision ResNet state_dicts converted to kp-jax's ResNet give torch's
own features; another run's workdir gives its backbone (and the head where it fits)."""

import numpy as np
import pytest

import jax
import jax.numpy as jnp
from flax import traverse_util

from configs import default
from kp_jax import pretrained, steps
from kp_jax.data import pixels
from kp_jax.models import create_model, resnet_shape

torch = pytest.importorskip("torch")
reference_models = pytest.importorskip("benchmarks.torch_reference")  # torch's forwards
randomised = reference_models.randomised


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
  reference = randomised(reference_models.resnet(depth), depth)
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
  torch.save(reference_models.resnet(18).state_dict(), path)
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
  restarted = steps.train_state_around(config, model, loaded)
  assert int(restarted.step) == 0
  jax.tree.map(np.testing.assert_array_equal, restarted.ema_params, restarted.params)


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
  reference = randomised(reference_models.SimpleBaseline(17, head_name), 5)
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
  with pytest.raises(ValueError, match=r"no place in kp-jax's model: \['extra_layer.weight'\]"):
    pretrained.load(path, zero_variables(model, images))


@pytest.mark.parametrize("head_name", ["head", "keypoint_head"])  # MMPose 1.x, 0.x
def test_mmpose_hrnet_converts_to_the_same_heatmaps(head_name, tmp_path):
  # HRNet-W32's layout (every stage, fusions into up to 4 branches) at width 8 and 2 blocks,
  # so both forwards take seconds; the key table is the same at any width.
  shape = {"width": 8, "modules_per_stage": (1, 2, 2), "blocks": 2}
  torch.manual_seed(3)
  reference = randomised(reference_models.HRNet(**shape, num_keypoints=5, head_name=head_name), 3)
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
    other = reference_models.HRNet(**dict(shape, blocks=blocks), num_keypoints=5)
    torch.save(other.state_dict(), path)
    with pytest.raises(ValueError, match=message):
      pretrained.load(path, zero_variables(model, images))


def _vitpose_0x_state(state: dict) -> dict:
  """An MMPose 1.x ViTPose state_dict under MMPose 0.x's names, its position embedding with
  the class token's entry that 0.x's ViT adds to every patch's (here chosen so that it folds
  back to the 1.x embedding)."""
  renames = (("backbone.ln1.", "backbone.last_norm."), (".layers.", ".blocks."),
             (".ln1.", ".norm1."), (".ln2.", ".norm2."), ("ffn.layers.0.0", "mlp.fc1"),
             ("ffn.layers.1", "mlp.fc2"), ("projection", "proj"), ("head.", "keypoint_head."))
  out = {}
  for key, value in state.items():
    for old, new in renames:
      key = key.replace(old, new, 1) if key.startswith(("backbone.", "head.")) else key
    out[key] = value
  patches = out["backbone.pos_embed"]
  cls = torch.randn(1, 1, patches.shape[-1])
  out["backbone.pos_embed"] = torch.cat([cls, patches - cls], 1)
  return out


@pytest.mark.parametrize("decoder", ["classic", "simple"])
def test_mmpose_vitpose_converts_to_the_same_heatmaps(decoder, tmp_path):
  shape = {"dim": 32, "depth": 2, "heads": 4, "mlp_dim": 64}  # ViTPose's layout, small
  torch.manual_seed(4)
  reference = randomised(reference_models.ViTPose(shape, 5, (64, 48), decoder), 4)
  head = ({"name": "heatmap", "stride": 4, "features": 256} if decoder == "classic" else
          {"name": "heatmap", "stride": 4, "upsample": "bilinear", "final_kernel": 3})
  model, _ = create_model({"dtype": "float32", "backbone": {"name": "vit", **shape},
                           "head": head}, 5, (64, 48))
  images = np.random.default_rng(4).normal(size=(2, 64, 48, 3)).astype(np.float32)
  state = reference.state_dict()
  for form, saved in (("1.x", state), ("0.x", _vitpose_0x_state(state))):
    path = str(tmp_path / f"vitpose_{form}.pth")
    torch.save({"meta": {}, "state_dict": saved}, path)
    got, want = converted_and_torch_maps(path, model, reference, images)
    assert got.shape == (2, 16, 12, 5), form
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=form)
  # The run must normalise its inputs as MMPose did; the error says what to set.
  data = default.get_config().data
  data.channels = 3
  with pytest.raises(ValueError, match=r"set config.data.image_mean=\(0.485, 0.456, 0.406\)"):
    pretrained.load(path, zero_variables(model, images), data)
  data.image_mean, data.image_std = pixels.MMPOSE_NORMALISATION
  assert pretrained.load(path, zero_variables(model, images), data)["params"]
  torch.save({**state, "backbone.layers.0.attn.rel_pos": torch.zeros(3)}, path)
  with pytest.raises(ValueError, match=r"no place in kp-jax's model: \['backbone.layers.0.attn"):
    pretrained.load(path, zero_variables(model, images))
