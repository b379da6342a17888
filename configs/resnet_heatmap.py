"""The default ResNet backbone with a heatmap head (stride-4 maps, Gaussian targets of sigma 2
map pixels, MSE, DARK decoding), on the default benchmark and budget.

  python train.py --config configs/resnet_heatmap.py --workdir workdirs/resnet_heatmap
"""

from configs import default


def get_config():
  config = default.get_config()
  config.name = "resnet_heatmap"
  config.model.head = {"name": "heatmap", "stride": 4, "features": 32, "convs": 0,
                       "upsample": "deconv", "sigma": 2.0, "decoder": "dark",
                       "blur_sigma": 0.0}
  return config
