"""Shared test setup: 4 simulated CPU devices, fast compiles, a tiny synthetic dataset."""

import os

# Must precede the first import of jax anywhere in the test session.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=4")

import jax  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from configs import default  # noqa: E402

jax.config.update("jax_disable_most_optimizations", True)  # compile-heavy tests stay fast
tf.config.set_visible_devices([], "GPU")

NUM_DEVICES = 4


def tiny_config(data_dir: str):
  """The default config shrunk to seconds: 32x32 faces, a tiny ResNet, 20 steps."""
  config = default.get_config()
  config.name = "tiny"
  data = config.data
  data.data_dir = data_dir
  data.image_size, data.num_train, data.num_validation, data.num_test = 32, 96, 21, 5
  data.shuffle_buffer, data.prefetch = 96, 1
  augment = data.augment  # every augmentation on, so that tests exercise them
  augment.max_rotation_deg, augment.scale_range, augment.max_shift = 10.0, (0.9, 1.1), 0.05
  # A ResNet with BatchNorm (whose statistics must agree across devices) and a heatmap head.
  config.model.backbone = {"name": "resnet", "stage_sizes": (1, 1), "width": 8,
                           "output_stride": 8, "small_stem": True}
  config.model.head = {"name": "heatmap", "stride": 4, "features": 8, "sigma": 1.0}
  config.optimizer.ema_decay = 0.5
  config.optimizer.warmup_steps = 2
  config.batch_size, config.eval_batch_size = 16, 8  # 21 validation examples: a padded last batch
  config.num_train_steps = 20
  config.log_every_steps, config.eval_every_steps, config.checkpoint_every_steps = 5, 10, 10
  return config


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tensorflow_datasets"))


@pytest.fixture
def config(data_dir):
  return tiny_config(data_dir)
