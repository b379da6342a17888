"""SimpleBaseline with ResNet-18 (three 4x4 deconvs of 256 channels to stride-4 heatmaps, DARK
decoding): the accelerator-sized model of the zoo. On the 2-core CPU it trains at about 4
images/s (docs/models.md), far too slow for the default budget there.

  python train.py --config configs/resnet18_heatmap.py --workdir workdirs/resnet18_heatmap
"""

from configs import default
from kp_jax.models import resnet_shape


def get_config():
  config = default.get_config()
  config.name = "resnet18_heatmap"
  config.model.backbone = {"name": "resnet", **resnet_shape(18), "width": 64,
                           "output_stride": 32, "small_stem": False}
  config.model.head = {"name": "heatmap", "stride": 4, "features": 256, "convs": 0,
                       "upsample": "deconv", "sigma": 2.0, "decoder": "dark",
                       "blur_sigma": 0.0}
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = 1e-3
  config.optimizer.weight_decay = 1e-4
  config.optimizer.ema_decay = 0.999
  return config
