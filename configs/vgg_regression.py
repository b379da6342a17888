"""A VGG-style stack with BatchNorm (one conv per stage) and direct regression with L1 on the
default benchmark and budget.

  python train.py --config configs/vgg_regression.py --workdir workdirs/vgg_regression
"""

from configs import default


def get_config():
  config = default.get_config()
  config.name = "vgg_regression"
  config.model.backbone = {"name": "vgg", "stage_features": (16, 32, 64, 128, 128),
                           "convs_per_stage": 1, "batch_norm": True}
  config.model.head = {"name": "regression", "hidden": (256,), "pool": "flatten", "loss": "l1"}
  return config
