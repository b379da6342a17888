"""COCO person keypoints (17) with HRNet-W32 at 256x192, MMPose's recipe
(`td-hm_hrnet-w32_8xb64-210e_coco-256x192.py`: 0.749 AP on val2017 with detected boxes).

  python train.py --config configs/coco_hrnet_w32.py --workdir workdirs/coco_hrnet_w32
  python -m kp_jax.evaluate --workdir workdirs/coco_hrnet_w32 \
      --detections data/coco/person_detection_results/COCO_val2017_detections_AP_H_56_person.json

Data as `configs/coco_person.py` (COCO 2017 under data/coco). MMPose trains 210 epochs of
149,813 instances at a global batch of 512 (8 GPUs x 64), Adam 5e-4, a 500-step linear
warmup, the rate divided by 10 at epochs 170 and 200; half-body and scale / rotation
augmentation, flip test, Gaussian targets of sigma 2. The global batch here is 64 per device,
so the step count follows the device count (`get_config("DEVICES")`, default 8).
"""

from configs import coco_person
from kp_jax.models import hrnet_shape

EPOCH_INSTANCES = 149_813  # COCO train2017 person instances with keypoints


def get_config(devices: str = "8"):
  config = coco_person.get_config()
  config.name = "coco_hrnet_w32"
  config.model.backbone = {"name": "hrnet", **hrnet_shape(32)}
  config.model.head = {"name": "heatmap", "stride": 4, "features": 32, "sigma": 2.0}
  config.model.kernels = "xla"  # an accelerator model: XLA's own layers
  config.flip_test = True
  config.batch_size = 64 * int(devices)
  config.num_train_steps = 210 * EPOCH_INSTANCES // config.batch_size
  optimizer = config.optimizer
  optimizer.name, optimizer.learning_rate = "adam", 5e-4
  optimizer.warmup_steps = 500
  optimizer.schedule = "step"
  optimizer.step_boundaries, optimizer.step_factor = (170 / 210, 200 / 210), 0.1
  config.eval_every_steps = config.checkpoint_every_steps = 10 * EPOCH_INSTANCES // config.batch_size
  return config
