"""The default ResNet backbone with a heatmap head (stride-4 maps, Gaussian targets of sigma 2
map pixels, DARK decoding), on the default benchmark and budget. The maps are trained by binary
cross-entropy: in the same run's budget it reached NME 0.072 where MSE reached 0.092
(docs/models.md).

  python train.py --config configs/resnet_heatmap.py --workdir workdirs/resnet_heatmap
"""

from configs import default


def get_config():
  config = default.get_config()
  config.name = "resnet_heatmap"
  config.model.head = {"name": "heatmap", "stride": 4, "features": 32, "convs": 0,
                       "upsample": "deconv", "sigma": 2.0, "decoder": "dark",
                       "blur_sigma": 0.0, "loss": "bce"}
  return config
