"""HRNet-W32 with MMPose's heatmap head (`configs/coco_hrnet_w32.py`'s model) on the built-in
96x96 faces: a short run to see the COCO recipe's model train on a CPU (docs/models.md).

  python train.py --config configs/hrnet_faces.py --workdir workdirs/hrnet_faces
"""

from configs import default
from kp_jax.models import hrnet_shape


def get_config():
  config = default.get_config()
  config.name = "hrnet_faces"
  config.model.backbone = {"name": "hrnet", **hrnet_shape(32)}
  config.model.head = {"name": "heatmap", "stride": 4, "features": 32, "sigma": 2.0}
  config.optimizer.name, config.optimizer.learning_rate = "adam", 5e-4
  config.optimizer.warmup_steps = 20
  config.batch_size = 16
  config.num_train_steps = 200
  config.log_every_steps = 20
  config.eval_every_steps = config.checkpoint_every_steps = 200
  return config
