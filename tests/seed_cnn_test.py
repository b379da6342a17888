import jax
import jax.numpy as jnp
import pytest

from configs import default
from kp_jax.models import SeedCNN, create_model


def num_params(model, input_shape):
  params = model.init(jax.random.key(0), jnp.zeros((1, *input_shape)))
  return sum(p.size for p in jax.tree.leaves(params))


def test_seed_article_setting_shapes_and_parameter_count():
  # 28x28x1 -> conv 3x3 'VALID' 26x26x32 -> pool 13x13 -> conv 11x11x64 -> pool 5x5 -> 1600
  #   conv1: 3*3*1*32 + 32 = 320;  conv2: 3*3*32*64 + 64 = 18,496
  #   dense: 1600*64 + 64 = 102,464;  output: 64*10 + 10 = 650;  total 121,930.
  model = SeedCNN(num_keypoints=5)
  assert num_params(model, (28, 28, 1)) == 121_930
  params = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
  out = model.apply(params, jax.random.normal(jax.random.key(1), (7, 28, 28, 1)))
  assert out.shape == (7, 5, 2)
  assert jnp.all((out > 0) & (out < 1))  # sigmoid: normalised coordinates


def test_seed_cnn_at_96px_with_15_keypoints():
  # 96 -> conv 94 -> pool 47 -> conv 45 -> pool 22: 22*22*64 = 30,976 features.
  #   320 + 18,496 + (30,976*64 + 64) + (64*30 + 30) = 2,003,294.
  assert num_params(SeedCNN(num_keypoints=15), (96, 96, 1)) == 2_003_294


def test_default_config_model_parameter_count():
  # configs/default.py at 96x96, 15 keypoints, 'SAME', strides (2, 1, 1, 1):
  #   96 -> conv/2 48 -> pool 24 -> conv 24 -> pool 12 -> conv 12 -> pool 6 -> conv 6 -> pool 3
  #   conv: 9*1*32+32=320, 9*32*32+32=9,248, 9*32*64+64=18,496, 9*64*128+128=73,856
  #   dense: 3*3*128*256+256=295,168; output 256*30+30=7,710; total 404,798.
  model = create_model(default.get_config().model, 15)
  assert num_params(model, (96, 96, 1)) == 404_798


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_config_switches_depth_width_padding_stride(pool):
  # 'SAME', strides (2, 1, 1): 32 -> conv 16 -> pool 8 -> conv 8 -> pool 4 -> conv 4 -> pool 2
  #   conv: 9*1*8+8=80, 9*8*16+16=1,168, 9*16*24+24=3,480; dense 2*2*24*20+20=1,940;
  #   output 20*6+6=126; total 6,794.
  model = SeedCNN(num_keypoints=3, features=(8, 16, 24), conv_strides=(2, 1, 1),
                  padding="SAME", pool=pool, dense_features=20)
  assert num_params(model, (32, 32, 1)) == 6_794


def test_unknown_model_or_field_names_the_config_key():
  with pytest.raises(ValueError, match=r"config.model.name='resnet9'.*seed_cnn"):
    create_model({"name": "resnet9"}, 5)
  with pytest.raises(ValueError, match=r"config.model.pool='median'"):
    create_model({"name": "seed_cnn", "pool": "median"}, 5)
  with pytest.raises(ValueError, match=r"config.model does not fit model 'seed_cnn'.*depth"):
    create_model({"name": "seed_cnn", "depth": 3}, 5)
