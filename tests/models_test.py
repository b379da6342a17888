import copy
import importlib
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default, seed
from kp_jax.models import (HRNet, VIT_SIZES, backbones, create_model, hrnet, hrnet_shape,
                           loaded_model_config, resnet_shape, vit_shape)


def init_shapes(module, input_shape):
  """Variables' shapes without computing anything (jax.eval_shape)."""
  return jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, *input_shape)))


def num_params(module, input_shape):
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(init_shapes(module, input_shape)["params"]))


def model_config(backbone, head, dtype="float32"):
  return {"dtype": dtype, "backbone": backbone, "head": head}


SEED_BACKBONE = {"name": "conv_pool"}  # the defaults are the seed article's
SEED_HEAD = {"name": "regression", "hidden": (64,)}


def test_seed_article_setting_shapes_and_parameter_count():
  # 28x28x1 -> conv 3x3 'VALID' 26x26x32 -> pool 13x13 -> conv 11x11x64 -> pool 5x5 -> 1600
  #   conv1: 3*3*1*32 + 32 = 320;  conv2: 3*3*32*64 + 64 = 18,496
  #   dense: 1600*64 + 64 = 102,464;  output: 64*10 + 10 = 650;  total 121,930.
  model, head = create_model(model_config(SEED_BACKBONE, SEED_HEAD), 5, (28, 28))
  assert num_params(model, (28, 28, 1)) == 121_930
  assert num_params(create_model(seed.get_config().model, 5, (28, 28))[0], (28, 28, 1)) == 121_930
  variables = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
  outputs = model.apply(variables, jax.random.normal(jax.random.key(1), (7, 28, 28, 1)))
  assert outputs["coords"].shape == (7, 5, 2)
  assert jnp.all((outputs["coords"] > 0) & (outputs["coords"] < 1))  # sigmoid
  points = head.decode(outputs)  # normalised -> pixels: the image's edges are -0.5 and 27.5
  assert jnp.all((points > -0.5) & (points < 27.5))


def test_seed_cnn_at_96px_with_15_keypoints():
  # 96 -> conv 94 -> pool 47 -> conv 45 -> pool 22: 22*22*64 = 30,976 features.
  #   320 + 18,496 + (30,976*64 + 64) + (64*30 + 30) = 2,003,294.
  model, _ = create_model(model_config(SEED_BACKBONE, SEED_HEAD), 15, (96, 96))
  assert num_params(model, (96, 96, 1)) == 2_003_294


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_conv_pool_switches_depth_width_padding_stride(pool):
  # 'SAME', strides (2, 1, 1): 32 -> conv 16 -> pool 8 -> conv 8 -> pool 4 -> conv 4 -> pool 2
  #   conv: 9*1*8+8=80, 9*8*16+16=1,168, 9*16*24+24=3,480; dense 2*2*24*20+20=1,940;
  #   output 20*6+6=126; total 6,794.
  backbone = {"name": "conv_pool", "features": (8, 16, 24), "conv_strides": (2, 1, 1),
              "padding": "SAME", "pool": pool}
  model, _ = create_model(model_config(backbone, {"name": "regression", "hidden": (20,)}), 3,
                          (32, 32))
  assert num_params(model, (32, 32, 1)) == 6_794


def test_vgg_with_batch_norm():
  # Two stages of two [conv 3x3 (no bias) -> BN (scale, offset)] then max-pool:
  #   9*1*8 + 16 = 88, 9*8*8 + 16 = 592, 9*8*16 + 32 = 1,184, 9*16*16 + 32 = 2,336: 4,200;
  #   32x32 -> 8x8x16, average-pooled -> dense 16*6 + 6 = 102; total 4,302.
  backbone = {"name": "vgg", "stage_features": (8, 16), "convs_per_stage": 2}
  model, _ = create_model(model_config(backbone, {"name": "regression", "hidden": (),
                                                  "pool": "avg"}), 3, (32, 32))
  assert num_params(model, (32, 32, 1)) == 4_302
  stats = init_shapes(model, (32, 32, 1))["batch_stats"]
  assert sum(int(np.prod(s.shape)) for s in jax.tree.leaves(stats)) == 2 * (8 + 8 + 16 + 16)


# torchvision's ImageNet ResNets (3-channel input) have 11,689,512 / 21,797,672 / 25,557,032
# parameters, of which the 1000-way classifier holds 513,000 / 513,000 / 2,049,000.
@pytest.mark.parametrize("depth, backbone_params, channels", [
    (18, 11_689_512 - 513_000, 512), (34, 21_797_672 - 513_000, 512),
    (50, 25_557_032 - 2_049_000, 2048)])
def test_resnet_parameter_counts_match_torchvision(depth, backbone_params, channels):
  net = backbones.ResNet(**resnet_shape(depth))
  assert num_params(net, (224, 224, 3)) == backbone_params
  features = jax.eval_shape(net.apply, init_shapes(net, (96, 96, 3)), jnp.zeros((2, 96, 96, 3)))
  assert features.shape == (2, 3, 3, channels)  # output stride 32


@pytest.mark.parametrize("output_stride, size", [(8, 12), (16, 6), (32, 3)])
def test_resnet_output_stride_dilates_instead_of_striding(output_stride, size):
  net = backbones.ResNet(**resnet_shape(18), width=8, output_stride=output_stride)
  variables = init_shapes(net, (96, 96, 1))
  features = jax.eval_shape(net.apply, variables, jnp.zeros((2, 96, 96, 1)))
  assert features.shape == (2, size, size, 64)
  # 11,176,512 at width 64 with 3 channels; at width 8 with 1 channel the count is the same at
  # every output stride, since dilation adds no parameters.
  assert num_params(net, (96, 96, 1)) == num_params(backbones.ResNet(**resnet_shape(18), width=8),
                                                    (96, 96, 1))


def test_simple_baseline_resnet50_heatmap_parameter_count():
  # SimpleBaseline ResNet-50 (MMPose lists 34.0M): backbone 23,508,032; three 4x4 deconvs to 256
  # channels with BN: 16*2048*256 + 512 = 8,389,120, then 16*256*256 + 512 = 1,049,088 twice;
  # a 1x1 conv to 17 maps: 256*17 + 17 = 4,369. Total 33,999,697.
  backbone = {"name": "resnet", **resnet_shape(50)}
  model, _ = create_model(model_config(backbone, {"name": "heatmap", "features": 256}), 17,
                          (256, 192))
  assert num_params(model, (256, 192, 3)) == 33_999_697
  outputs = jax.eval_shape(model.apply, init_shapes(model, (256, 192, 3)),
                           jnp.zeros((2, 256, 192, 3)))
  assert outputs["maps"].shape == (2, 64, 48, 17)  # stride 4


@pytest.mark.parametrize("width, parameters", [
    (32, 28_536_113),  # MMPose's count for td-hm_hrnet-w32 (17 keypoints)
    (48, 63_595_745),  # MMPose lists 63.6M for td-hm_hrnet-w48
])
def test_hrnet_parameter_counts_match_mmpose(width, parameters):
  # The heatmap head at HRNet's stride 4 is MMPose's: no deconvolution, a 1x1 conv to 17 maps
  # (width * 17 + 17 parameters).
  model, _ = create_model(model_config({"name": "hrnet", **hrnet_shape(width)},
                                       {"name": "heatmap", "stride": 4}), 17, (256, 192))
  assert num_params(model, (256, 192, 3)) == parameters
  head = init_shapes(model, (256, 192, 3))["params"]["head"]
  assert jax.tree.map(lambda s: s.shape, head) == {
      "Conv_0": {"kernel": (1, 1, width, 17), "bias": (17,)}}


def test_hrnet_keeps_every_resolution_and_fuses_them():
  net = HRNet(width=4, modules_per_stage=(1, 1, 1), blocks=1)
  variables = init_shapes(net, (64, 32, 3))
  out = jax.eval_shape(net.apply, variables, jnp.zeros((2, 64, 32, 3)))
  assert out.shape == (2, 16, 8, 4)  # stride 4, `width` channels
  stage4 = variables["params"]["stage4_module0"]
  # The last module fuses into the highest resolution alone: from branch 1 (1x1), and from
  # nothing lower; stage 3's module fuses every branch into every other.
  assert {k for k in stage4 if k.startswith("fuse")} == {"fuse0_from1", "fuse0_from2",
                                                          "fuse0_from3"}
  stage3 = variables["params"]["stage3_module0"]
  assert {k for k in stage3 if k.startswith("fuse")} == {
      "fuse0_from1", "fuse0_from2", "fuse1_from0_down0", "fuse1_from2", "fuse2_from0_down0",
      "fuse2_from0_down1", "fuse2_from1_down0"}
  assert stage3["fuse2_from0_down0"]["Conv_0"]["kernel"].shape == (3, 3, 4, 4)  # keeps width
  assert stage3["fuse2_from0_down1"]["Conv_0"]["kernel"].shape == (3, 3, 4, 16)  # to 16
  with pytest.raises(ValueError, match="MMPose's are W18, W32 and W48"):
    hrnet_shape(40)


def vitpose_parameters(dim, depth, mlp_dim, tokens, keypoints, decoder):
  """ViTPose's count by hand: the patch conv and position embedding, per layer two LayerNorms,
  qkv, the projection and the two-layer MLP, the final LayerNorm; then the decoder."""
  layer = 2 * 2 * dim + (dim * 3 * dim + 3 * dim) + (dim * dim + dim) + (
      dim * mlp_dim + mlp_dim) + (mlp_dim * dim + dim)
  backbone = 16 * 16 * 3 * dim + dim + tokens * dim + depth * layer + 2 * dim
  if decoder == "classic":  # two 4x4 deconvs to 256 with BatchNorm, a 1x1 conv
    head = 16 * dim * 256 + 2 * 256 + 16 * 256 * 256 + 2 * 256 + 256 * keypoints + keypoints
  else:  # ReLU, bilinear x4, a 3x3 conv
    head = 9 * dim * keypoints + keypoints
  return backbone + head


VITPOSE_HEADS = {"classic": {"name": "heatmap", "stride": 4, "features": 256},
                 "simple": {"name": "heatmap", "stride": 4, "upsample": "bilinear",
                            "final_kernel": 3}}


@pytest.mark.parametrize("size", sorted(VIT_SIZES))
@pytest.mark.parametrize("decoder", ["classic", "simple"])
def test_vitpose_parameter_counts(size, decoder):
  # ViTPose-B classic at 256x192 (16x12 tokens), 17 keypoints: 89,993,745 (85,794,048 in the
  # encoder; the paper's 86M).
  shape = vit_shape(size)
  model, _ = create_model(model_config({"name": "vit", **shape}, VITPOSE_HEADS[decoder]), 17,
                          (256, 192))
  count = num_params(model, (256, 192, 3))
  assert count == vitpose_parameters(shape["dim"], shape["depth"], shape["mlp_dim"], 16 * 12,
                                     17, decoder)
  if size == "base":
    assert count == {"classic": 89_993_745, "simple": 85_911_569}[decoder]
    torch_reference = pytest.importorskip("benchmarks.torch_reference")
    reference = torch_reference.ViTPose(shape, 17, (256, 192), decoder)
    assert count == sum(p.numel() for p in reference.parameters())
  outputs = jax.eval_shape(model.apply, init_shapes(model, (256, 192, 3)),
                           jnp.zeros((2, 256, 192, 3)))
  assert outputs["maps"].shape == (2, 64, 48, 17)


@pytest.mark.parametrize("head", ["heatmap", "integral"])
def test_map_heads_reach_their_stride_from_any_backbone_stride(head):
  for output_stride, convs, upsample in [(8, 0, "deconv"), (16, 1, "resize"), (32, 0, "deconv")]:
    backbone = {"name": "resnet", "stage_sizes": (1, 1, 1, 1), "width": 8,
                "output_stride": output_stride}
    head_config = {"name": head, "features": 8, "convs": convs, "upsample": upsample}
    model, decode_head = create_model(model_config(backbone, head_config), 5, (64, 64))
    variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 64, 64, 1)))
    outputs = jax.jit(model.apply)(variables, jnp.ones((2, 64, 64, 1)))
    assert outputs["maps"].shape == (2, 16, 16, 5)
    points = jax.jit(decode_head.decode)(outputs)
    assert points.shape == (2, 5, 2)
    assert jnp.all((points >= -0.5) & (points <= 63.5))


def test_default_config_parameter_count():
  # ResNet (1, 1, 1, 1), width 16, 1 input channel; convs have no bias, each BN 2 per channel.
  #   stem 7*7*1*16 + 32 = 816; stage 1: 2 * (9*16*16 + 32) = 4,672;
  #   stage 2: 9*16*32 + 64 + 9*32*32 + 64 + (1x1 projection) 16*32 + 64 = 14,528;
  #   stage 3: 18,432 + 128 + 36,864 + 128 + 2,048 + 128 = 57,728;
  #   stage 4: 73,728 + 256 + 147,456 + 256 + 8,192 + 256 = 230,144;  backbone 307,888.
  # Integral head, 3x3 features -> 12x12 maps (stride 8): two 4x4 deconvs to 32 with BN,
  #   16*128*32 + 64 = 65,600 and 16*32*32 + 64 = 16,448; 1x1 to 15 maps 32*15 + 15 = 495.
  #   Total 390,431.
  model, _ = create_model(default.get_config().model, 15, (96, 96))
  assert num_params(model, (96, 96, 1)) == 390_431


def test_batch_norm_is_flaxs_traced_once_for_its_calls_alike():
  x = jax.random.normal(jax.random.key(0), (4, 6, 5, 3))
  ours, flaxs = (cls(momentum=0.9, use_running_average=False) for cls in (backbones.BatchNorm,
                                                                          nn.BatchNorm))
  variables = flaxs.init(jax.random.key(1), x)
  variables = {"params": {"scale": jnp.array([0.5, 1.0, 2.0]), "bias": jnp.array([0.0, 1.0, -1.0])},
               "batch_stats": variables["batch_stats"]}
  assert jax.tree.structure(ours.init(jax.random.key(1), x)) == jax.tree.structure(variables)

  def loss(params, module):  # output, gradients and the updated running statistics
    y, updates = module.apply({**variables, "params": params}, x, mutable=["batch_stats"])
    return jnp.sum(y * jnp.arange(3.0)), (y, updates)
  expected_grads, expected = jax.grad(loss, has_aux=True)(variables["params"], flaxs)
  grads, got = jax.grad(loss, has_aux=True)(variables["params"], ours)
  for a, b in zip(jax.tree.leaves((got, grads)), jax.tree.leaves((expected, expected_grads))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

  # A ResNet-18's 20 BatchNorms: one traced function per input shape and scale initialiser
  # (a block's last BatchNorm starts at zero), 9 in all, called 20 times.
  model = backbones.ResNet((2, 2, 2, 2), "basic", width=8)
  image = jnp.zeros((2, 32, 32, 3))
  jaxpr = jax.make_jaxpr(lambda v: model.apply(v, image, train=True, mutable=["batch_stats"]))(
      model.init(jax.random.key(0), image)).jaxpr
  calls = [e.params["jaxpr"] for e in jaxpr.eqns if e.params.get("name") == "core_fn"]
  assert len(calls) == 20
  assert len({id(traced) for traced in calls}) == 9


def test_hrnet_blocks_are_traced_once_per_branch_and_compute_as_plain_blocks(monkeypatch):
  widths = (4, 8, 16)
  module = hrnet.HRModule(widths, blocks=2, outputs=3,
                          norm=backbones.batch_norm(True, jnp.float32, None))
  branches = [jax.random.normal(jax.random.key(i), (2, 16 >> i, 12 >> i, w))
              for i, w in enumerate(widths)]
  variables = jax.jit(module.init)(jax.random.key(1), branches)

  def loss(params):  # outputs, gradients and the updated running statistics
    ys, updates = module.apply({**variables, "params": params}, branches,
                               mutable=["batch_stats"])
    return sum(jnp.sum(y * jnp.arange(y.shape[-1])) for y in ys), (ys, updates)
  grads, got = jax.jit(jax.grad(loss, has_aux=True))(variables["params"])
  # Two blocks a branch, 6 calls, traced once for each of the 3 branches.
  jaxpr = jax.make_jaxpr(loss)(variables["params"]).jaxpr
  blocks = [e.params["jaxpr"] for e in jaxpr.eqns if e.params.get("name") == "core_fn"
            and "conv_general_dilated" in str(e.params["jaxpr"])]
  assert len(blocks) == 6
  assert len({id(traced) for traced in blocks}) == 3

  # Against plain blocks throughout: initialised with the same draws (the lifted jit would
  # split the RNG its own way), computing the same outputs, gradients and statistics.
  monkeypatch.setattr(hrnet, "_TracedOnceBasicBlock", backbones.BasicBlock)
  for a, b in zip(jax.tree.leaves(jax.jit(module.init)(jax.random.key(1), branches)),
                  jax.tree.leaves(variables)):
    np.testing.assert_array_equal(a, b)
  expected_grads, expected = jax.jit(jax.grad(loss, has_aux=True))(variables["params"])
  for a, b in zip(jax.tree.leaves((got, grads)), jax.tree.leaves((expected, expected_grads))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_unknown_names_and_fields_name_the_config_key():
  ok_head = {"name": "regression"}
  with pytest.raises(ValueError, match=r"config.model.backbone.name='resnet9'.*conv_pool"):
    create_model(model_config({"name": "resnet9"}, ok_head), 5, (28, 28))
  with pytest.raises(ValueError, match=r"config.model.backbone \('conv_pool'\): pool='median'"):
    create_model(model_config({"name": "conv_pool", "pool": "median"}, ok_head), 5, (28, 28))
  with pytest.raises(ValueError, match=r"config.model.backbone \('conv_pool'\).*depth"):
    create_model(model_config({"name": "conv_pool", "depth": 3}, ok_head), 5, (28, 28))
  with pytest.raises(ValueError, match=r"config.model.head \('regression'\): loss='huber'"):
    create_model(model_config(SEED_BACKBONE, {"name": "regression", "loss": "huber"}), 5,
                 (28, 28))
  with pytest.raises(ValueError, match=r"config.model.head.name='dense'.*heatmap"):
    create_model(model_config(SEED_BACKBONE, {"name": "dense"}), 5, (28, 28))


@pytest.mark.parametrize("shape, window, strides, padding", [
    ((2, 94, 94, 3), (2, 2), (2, 2), "VALID"),  # the seed CNN's pools (odd size: floor)
    ((2, 45, 45, 4), (2, 2), (2, 2), "VALID"),
    ((2, 48, 48, 3), (3, 3), (2, 2), "SAME"),
    ((2, 48, 48, 3), (3, 3), (2, 2), ((1, 1), (1, 1))),  # the ResNet stem's (torchvision's)
    ((1, 17, 12, 2), (3, 2), (2, 1), "SAME"),  # non-square windows and strides
    ((1, 9, 11, 2), (3, 3), (1, 1), "VALID"),  # overlapping, stride 1
])
def test_max_pool_matches_flax_values_and_gradients(shape, window, strides, padding):
  # Distinct values, so every window's maximum is unique (ties may share the gradient).
  x = jax.random.permutation(jax.random.key(0), np.prod(shape)).reshape(shape)
  x = x.astype(jnp.float32) / np.prod(shape) - 0.5
  reference = lambda x: nn.max_pool(x, window, strides=strides, padding=padding)
  ours = lambda x: backbones.max_pool(x, window, strides, padding)
  want, want_vjp = jax.vjp(reference, x)
  got, got_vjp = jax.vjp(ours, x)
  np.testing.assert_array_equal(got, want)
  cotangent = jax.random.normal(jax.random.key(1), want.shape)
  np.testing.assert_array_equal(got_vjp(cotangent)[0], want_vjp(cotangent)[0])


def test_an_input_size_that_does_not_tile_the_backbone_names_the_real_constraint():
  config = model_config({"name": "resnet", "stage_sizes": (1, 1, 1, 1), "width": 8,
                         "output_stride": 32}, {"name": "integral", "stride": 8})
  with pytest.raises(ValueError, match=r"\(240, 320\).*multiples of 32.*input_size=\(256, 320\)"):
    create_model(config, 5, (240, 320))
  create_model(config, 5, (256, 320))  # fits
  config["backbone"]["output_stride"] = 16  # dilated last stage: 240 = 15 x 16 tiles
  create_model(config, 5, (240, 320))


def relative_l2(a, b) -> float:
  leaves = list(zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  diff = sum(np.sum((np.float64(x) - np.float64(y)) ** 2) for x, y in leaves)
  return float(np.sqrt(diff / sum(np.sum(np.float64(x) ** 2) for x, _ in leaves)))


@pytest.mark.parametrize("backbone, head", [
    # Each kernel: the fused conv+ReLU+pool and relu_pool (conv_pool), relu_pool (VGG), the
    # sliced stem max-pool (ResNet) and the deconvolution (heatmap head).
    ({"name": "conv_pool", "features": (8, 16)}, {"name": "regression", "hidden": (16,)}),
    ({"name": "vgg", "stage_features": (8, 16), "convs_per_stage": 1},
     {"name": "integral", "stride": 4, "features": 8}),
    ({"name": "resnet", "stage_sizes": (1, 1), "width": 8, "output_stride": 8},
     {"name": "heatmap", "stride": 4, "features": 8}),
])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_cpu_kernels_and_xla_layers_have_the_same_parameters_values_and_gradients(
    backbone, head, dtype):
  images = jax.random.normal(jax.random.key(1), (2, 32, 32, 1))
  outputs, grads, params = {}, {}, {}
  for kernels in ("cpu", "xla"):
    model, _ = create_model({**model_config(backbone, head, dtype), "kernels": kernels}, 5,
                            (32, 32))
    variables = jax.jit(model.init)(jax.random.key(0), images)
    params[kernels] = variables["params"]
    loss = lambda p: sum(jnp.sum(jnp.square(o.astype(jnp.float32))) for o in jax.tree.leaves(
        model.apply({**variables, "params": p}, images)))
    outputs[kernels] = jax.jit(model.apply)(variables, images)
    grads[kernels] = jax.jit(jax.grad(loss))(variables["params"])
  # The same parameter names, shapes and initial values: checkpoints are interchangeable.
  jax.tree.map(np.testing.assert_array_equal, params["cpu"], params["xla"])
  # Values: sums of the same products in another order (bf16 keeps 8 mantissa bits).
  tolerance = 1e-5 if dtype == "float32" else 2e-2
  assert relative_l2(outputs["cpu"], outputs["xla"]) < tolerance
  assert relative_l2(grads["cpu"], grads["xla"]) < 10 * tolerance


def test_kernels_setting_is_checked_and_auto_follows_the_backend():
  from kp_jax.models import uses_cpu_kernels
  assert uses_cpu_kernels("auto") == (jax.default_backend() == "cpu")
  assert uses_cpu_kernels("cpu") and not uses_cpu_kernels("xla")
  with pytest.raises(ValueError, match=r"config.model.kernels='gpu': choose one of"):
    uses_cpu_kernels("gpu")


CONFIGS = sorted(name[:-3] for name in os.listdir(os.path.join(os.path.dirname(__file__), "..",
                                                               "configs"))
                 if name.endswith(".py") and name != "__init__.py")


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_builds_its_models(name):
  # Shapes only (no compute, no data): a config whose model cannot be built fails here, not
  # an hour into someone's run. Two-stage configs build their centre model too.
  config = importlib.import_module(f"configs.{name}").get_config()
  height, width = tuple(config.data.input_size) or (config.data.image_size,) * 2
  if not config.data.input_size and config.data.source != "synthetic_faces":
    height, width = 128, 128  # sized per project (or per stage): any multiple of 32
  model, _ = create_model(config.model, 5, (height, width))
  assert init_shapes(model, (height, width, config.data.channels))["params"]
  if "two_stage" in config:
    centre = config.two_stage.centre
    model, _ = create_model(centre.model, 1, tuple(centre.input_size))
    assert init_shapes(model, (*centre.input_size, config.data.channels))["params"]


def test_drop_path_drops_whole_examples_and_keeps_the_expectation():
  from kp_jax.models import vit  # noqa: PLC0415
  x = jnp.ones((4000, 3, 2))
  out = np.asarray(vit.drop_path(x, 0.25, jax.random.key(0)))
  per_example = out.reshape(4000, -1)
  assert set(np.unique(per_example)) == {0.0, np.float32(1 / 0.75)}
  assert np.all(per_example.min(1) == per_example.max(1))  # an example's branch goes whole
  # 4,000 draws: the dropped share's standard deviation is 0.007; 0.03 is > 4 of them.
  assert abs(np.mean(per_example[:, 0] == 0) - 0.25) < 0.03
  # In training the layers draw from the "dropout" stream; in evaluation nothing is random.
  net = vit.ViT(dim=16, depth=2, heads=2, mlp_dim=32, patch_size=8, drop_path_rate=0.5)
  images = jnp.ones((8, 32, 32, 1))
  variables = net.init(jax.random.key(0), images)
  train = [net.apply(variables, images, train=True, rngs={"dropout": jax.random.key(k)})
           for k in (1, 2)]
  assert not np.allclose(train[0], train[1])
  np.testing.assert_array_equal(net.apply(variables, images), net.apply(variables, images))


def attention_reference(x, qkv_kernel, qkv_bias, proj_kernel, proj_bias, heads):
  """ViT self-attention in NumPy float64: softmax(q k^T / sqrt(d)) v per head, projected."""
  b, n, dim = x.shape
  qkv = (x @ qkv_kernel + qkv_bias).reshape(b, n, 3, heads, dim // heads)
  q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))  # [b, heads, n, d]
  scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(dim // heads)
  weights = np.exp(scores - scores.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  out = (weights @ v).transpose(0, 2, 1, 3).reshape(b, n, dim)
  return out @ proj_kernel + proj_bias


@pytest.mark.parametrize("attention", ["auto", "xla"])
def test_attention_equals_the_einsum_softmax_reference(attention):
  from kp_jax.models import vit  # noqa: PLC0415
  layer = vit.Attention(heads=4, attention=attention)
  x = jax.random.normal(jax.random.key(1), (3, 10, 32))
  variables = layer.init(jax.random.key(0), x)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
  expected = attention_reference(np.asarray(x, np.float64), p["qkv"]["kernel"], p["qkv"]["bias"],
                                 p["proj"]["kernel"], p["proj"]["bias"], heads=4)
  # float32 against float64 over 32-wide dot products: errors near 1e-6 of values near 1.
  np.testing.assert_allclose(layer.apply(variables, x), expected, atol=1e-5)


def test_attention_implementation_choice():
  from kp_jax.models import vit  # noqa: PLC0415
  assert vit.attention_implementation("auto", jnp.bfloat16, 64) == "xla"  # CPU: XLA's einsums
  assert vit.attention_implementation("xla", jnp.bfloat16, 64) == "xla"
  # cuDNN's where it cannot run: the key and what to set, not JAX's "cuDNN is not detected".
  with pytest.raises(ValueError, match=r"attention='cudnn'.*backend is 'cpu'.*Set 'auto'"):
    vit.attention_implementation("cudnn", jnp.bfloat16, 64)
  with pytest.raises(ValueError, match=r"config.model.backbone.attention='flash'.*'cudnn'"):
    vit.attention_implementation("flash", jnp.float32, 64)
  with pytest.raises(ValueError, match="attention='flash'"):
    create_model(model_config({"name": "vit", **vit_shape("small"), "attention": "flash"},
                              VITPOSE_HEADS["classic"]), 17, (256, 192))


@pytest.mark.parametrize("trained, loaded, exported", [
    (None, "auto", "xla"), ("auto", "auto", "xla"), ("xla", "xla", "xla"),
    ("cudnn", "auto", "xla")])  # cuDNN's where it runs; a chosen XLA stays XLA
def test_a_loaded_vit_takes_attention_that_runs_where_it_is_loaded(trained, loaded, exported):
  backbone = {"name": "vit", **vit_shape("small"), **({"attention": trained} if trained else {})}
  saved = model_config(backbone, VITPOSE_HEADS["classic"])
  as_saved = copy.deepcopy(saved)
  assert loaded_model_config(saved)["backbone"]["attention"] == loaded
  assert loaded_model_config(saved, portable=True)["backbone"]["attention"] == exported
  assert saved == as_saved  # the run's own config is left as it was
  resnet = model_config({"name": "resnet", **resnet_shape(18)}, SEED_HEAD)
  assert loaded_model_config(resnet, portable=True) == resnet  # no attention to choose


def test_patch_embedding_equals_the_strided_convolution():
  """ViT's patches as one matrix product: the same parameters, initial values and outputs as
  the 16x16 stride-16 conv with 2 pixels of padding that MMPose's checkpoints were trained as
  (the 256x192 input's last 4 padded columns fall outside every patch, as in the conv)."""
  from kp_jax.models import vit  # noqa: PLC0415
  images = jax.random.normal(jax.random.key(1), (2, 256, 192, 3))
  patches = vit.PatchEmbed(features=24, patch=16, padding=2)
  conv = nn.Conv(24, (16, 16), 16, ((2, 2), (2, 2)))
  variables = patches.init(jax.random.key(0), images)
  jax.tree.map(np.testing.assert_array_equal, variables, conv.init(jax.random.key(0), images))
  variables = jax.tree.map(lambda a: a + jax.random.normal(jax.random.key(2), a.shape), variables)
  out = patches.apply(variables, images)
  assert out.shape == (2, 16, 12, 24)
  # 768-term float32 sums in two orders: values near 30, errors near 1e-5.
  np.testing.assert_allclose(out, conv.apply(variables, images), atol=1e-4, rtol=1e-5)
