"""COCO person keypoints (17) with ViTPose-B at 256x192, MMPose's recipe
(`td-hm_ViTPose-base_8xb64-210e_coco-256x192.py`: 0.757 AP on val2017 with detected boxes).

  python train.py --config configs/coco_vitpose_b.py --workdir workdirs/coco_vitpose_b
  python -m kp_jax.evaluate --workdir workdirs/coco_vitpose_b \
      --detections data/coco/person_detection_results/COCO_val2017_detections_AP_H_56_person.json

Data and augmentation as `configs/coco_person.py` (COCO 2017 under data/coco, MMPose's input
statistics). The model: a ViT-B encoder (patch 16 with 2 pixels of padding, drop path 0.3)
and the classic decoder (two 4x4 deconvolutions to 256 channels, a 1x1 conv), UDP (crops onto
pixel centres, UDP targets of sigma 2, DARK-UDP decoding with a sigma-2 blur), flip test.
AdamW 5e-4, weight decay 0.1 (not on biases, norms or the position embedding), layer-wise
decay 0.75, gradients clipped at norm 1, a 500-step warmup, the rate divided by 10 at epochs
170 and 200 of 210; MMPose starts the encoder from MAE's ImageNet weights (`init_from` an
MMPose ViTPose checkpoint or an MAE backbone converted to one). The global batch is 64 per
device (`get_config("DEVICES")`, default 8: MMPose's 512). `config.shard_state = True` splits
the parameters and optimizer state over the devices for the large sizes
(`vit_shape("large")`, `vit_shape("huge")`).
"""

from configs import coco_hrnet_w32, coco_person
from kp_jax.models import vit_shape


def get_config(devices: str = "8"):
  config = coco_person.get_config()
  config.name = "coco_vitpose_b"
  config.data.udp = True
  config.model.backbone = {"name": "vit", **vit_shape("base"), "drop_path_rate": 0.3}
  config.model.head = {"name": "heatmap", "stride": 4, "features": 256, "sigma": 2.0,
                       "udp": True, "blur_sigma": 2.0}
  config.model.kernels = "xla"  # an accelerator model: XLA's own layers
  config.flip_test = True
  config.batch_size = 64 * int(devices)
  epoch = coco_hrnet_w32.EPOCH_INSTANCES // config.batch_size
  config.num_train_steps = 210 * epoch
  optimizer = config.optimizer
  optimizer.name, optimizer.learning_rate, optimizer.weight_decay = "adamw", 5e-4, 0.1
  optimizer.eps = 1e-8  # torch's AdamW
  optimizer.layer_decay = 0.75
  optimizer.grad_clip_norm = 1.0
  optimizer.warmup_steps = 500
  optimizer.schedule = "step"
  optimizer.step_boundaries, optimizer.step_factor = (170 / 210, 200 / 210), 0.1
  config.eval_every_steps = config.checkpoint_every_steps = 10 * epoch
  return config
