"""The seed CNN exactly (conv 32 -> pool -> conv 64 -> pool -> dense 64 -> dense 2K -> sigmoid,
'VALID' convolutions), on the default benchmark and budget: the model-zoo baseline.

  python train.py --config configs/seed_96.py --workdir workdirs/seed_96
"""

from configs import default


def get_config():
  config = default.get_config()
  config.name = "seed_96"
  config.model.backbone = {"name": "conv_pool", "features": (32, 64), "kernel_size": 3,
                           "conv_strides": (1, 1), "padding": "VALID", "pool": "max"}
  config.model.head = {"name": "regression", "hidden": (64,), "pool": "flatten", "loss": "l2"}
  config.optimizer.learning_rate = 1e-3  # the seed article's (Keras's RMSprop default)
  return config
