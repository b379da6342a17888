"""kp_jax/flops.py: multiply-adds counted from the program against counts by hand and the
published figures."""

import jax
import jax.numpy as jnp
import pytest

from configs import coco_hrnet_w32, coco_person, coco_vitpose_b, default
from kp_jax import flops


def conv(side_out: int, cin: int, cout: int, k: int) -> int:
  """Multiply-adds of a k x k convolution with side_out^2 outputs."""
  return side_out * side_out * cin * cout * k * k


def default_forward_macs() -> int:
  """configs/default.py's forward pass on one 96x96x1 image, by hand."""
  stem = conv(48, 1, 16, 7)  # 7x7 stride 2, then a stride-2 max-pool
  macs = stem
  for side, cin, cout in ((24, 16, 16), (12, 16, 32), (6, 32, 64), (3, 64, 128)):
    macs += conv(side, cin, cout, 3) + conv(side, cout, cout, 3)  # one basic block
    macs += conv(side, cin, cout, 1) if cin != cout else 0  # projection shortcut
  # Two 4x4 stride-2 transposed convolutions: each input pixel meets 16 kernel taps.
  macs += 3 * 3 * 16 * 128 * 32 + 6 * 6 * 16 * 32 * 32
  return macs + conv(12, 32, 15, 1), stem  # the 15 keypoints' maps


def test_default_config_counts_equal_the_hand_count():
  forward, stem = default_forward_macs()
  counts = flops.model_macs(default.get_config(), 15, (96, 96, 1))
  assert counts["forward"] == forward
  # A training step: the forward, each layer's weight gradient (as many products as its
  # forward) and its input gradient (the same, except the stem's: the image needs none), plus
  # the soft-argmax's two 12-term expectations per keypoint, forward and backward.
  assert counts["train_step"] == 3 * forward - stem + 2 * 2 * 15 * 12


def test_vit_counts_its_dense_layers_and_attention():
  config = default.get_config()
  config.model.backbone = {"name": "vit", "dim": 32, "depth": 2, "heads": 4, "mlp_dim": 64,
                           "patch_size": 8, "patch_padding": 0}
  config.model.head = {"name": "heatmap", "stride": 4, "features": 16}
  tokens, dim, mlp = 16, 32, 64  # 32x32 input, 8x8 patches
  per_layer = tokens * dim * (3 * dim + dim + 2 * mlp)  # qkv, proj, fc1, fc2
  per_layer += 2 * tokens * tokens * dim  # scores and the weighted values, all heads
  expected = (tokens * 8 * 8 * 3 * dim + 2 * per_layer
              + 4 * 4 * 16 * dim * 16 + conv(8, 16, 7, 1))  # one deconvolution, 7 maps
  assert flops.model_macs(config, 7, (32, 32, 3))["forward"] == expected


def test_a_while_loop_is_refused():
  def loop(x):
    return jax.lax.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, c[1] @ c[1]), (0, x))[1]
  with pytest.raises(ValueError, match="trip count"):
    flops.macs(loop, jnp.eye(4))
  scanned = lambda x: jax.lax.scan(lambda c, _: (c @ c, None), x, length=5)[0]
  assert flops.macs(scanned, jnp.eye(4)) == 5 * 4 * 4 * 4


@pytest.mark.parametrize("config, published, count_inserted_zeros", [
    # HRNet-W32, 256x192: its paper's 7.1 G and MMPose's get_flops table's 7.7 G
    # (docs/en/inference_speed_summary.md, mmcv's counter).
    (coco_hrnet_w32, (7.1, 7.7), False),
    # SimpleBaseline ResNet-50: MMPose's table, 5.46 G (mmcv counts a deconvolution by its
    # input positions, as kp-jax does); its paper's 8.9 G fits the count with the
    # deconvolutions' inserted zeros multiplied (9.65 G; kp-jax's own count is 5.43 G).
    (coco_person, (5.46,), False),
    (coco_person, (8.9,), True),
    # ViTPose-B with the classic decoder: its paper's 17.1 G.
    (coco_vitpose_b, (17.1,), False),
])
def test_forward_counts_are_within_ten_percent_of_the_published(config, published,
                                                                count_inserted_zeros):
  # The training step is traced for ViTPose-B only (tracing HRNet's takes 15 s).
  step = config is coco_vitpose_b
  counts = flops.model_macs(config.get_config(), 17, (256, 192, 3), count_inserted_zeros,
                            train_step=step)
  for gmacs in published:
    assert counts["forward"] / 1e9 == pytest.approx(gmacs, rel=0.10)
  if step:
    assert 2.9 < counts["train_step"] / counts["forward"] < 3.0  # a step: about 3 forwards
