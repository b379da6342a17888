"""The seed article's setting: 28x28x1 inputs, 5 keypoints (10 outputs), RMSprop, batch 128.

The seed CNN exactly (conv 32 -> pool -> conv 64 -> pool -> dense 64 -> dense 10 -> sigmoid,
'VALID' convolutions) with Keras's RMSprop defaults (lr 1e-3, rho 0.9, eps 1e-7, constant lr),
on synthetic faces rendered at 28x28 and reduced to the five landmarks.

  python train.py --config configs/seed.py --workdir workdirs/seed
"""

from configs import default
from kp_jax.data.keypoints import FACE5_NAMES


def get_config():
  config = default.get_config()
  config.name = "seed"
  config.data.image_size = 28
  config.data.keypoints = FACE5_NAMES
  config.model.backbone = {"name": "conv_pool", "features": (32, 64), "kernel_size": 3,
                           "conv_strides": (1, 1), "padding": "VALID", "pool": "max"}
  config.model.head = {"name": "regression", "hidden": (64,), "pool": "flatten", "loss": "l2"}
  config.optimizer.learning_rate = 1e-3  # Keras's RMSprop default
  config.optimizer.warmup_steps = 0
  config.optimizer.final_lr_fraction = 1.0  # a constant learning rate, as in Keras
  config.batch_size = 128
  return config
