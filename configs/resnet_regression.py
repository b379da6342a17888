"""The default ResNet backbone with direct regression (global features -> dense 256 -> 2K
coordinates, L1 loss) instead of the integral head, on the default benchmark and budget.

  python train.py --config configs/resnet_regression.py --workdir workdirs/resnet_regression
"""

from configs import default


def get_config():
  config = default.get_config()
  config.name = "resnet_regression"
  config.model.head = {"name": "regression", "hidden": (256,), "pool": "flatten", "loss": "l1"}
  return config
