"""COCO person keypoints (17), top-down with ground-truth boxes, SimpleBaseline-style.

  python train.py --config configs/coco_person.py --workdir workdirs/coco_person

Expects the COCO 2017 files under data/coco (annotations/person_keypoints_{train,val}2017.json,
train2017/, val2017/). A GPU job: at 256x192 this is 150k instances an epoch.
"""

from configs import default
from kp_jax.data.pixels import MMPOSE_NORMALISATION


def get_config():
  config = default.get_config()
  config.name = "coco_person"
  data = config.data
  data.source = "coco"
  data.files = {"train": "data/coco/annotations/person_keypoints_train2017.json",
                "validation": "data/coco/annotations/person_keypoints_val2017.json"}
  data.image_dirs = {"train": "data/coco/train2017", "validation": "data/coco/val2017"}
  data.input_size = (256, 192)
  data.verify_images = False  # 120k images: decoding each up front takes long
  data.cache = False  # data.decoded_copies (a local folder, 50-60 GB): 2.2x the crops a core
  data.image_mean, data.image_std = MMPOSE_NORMALISATION  # MMPose's, so its checkpoints fit
  augment = data.augment
  augment.max_rotation_deg, augment.scale_range = 40.0, (0.7, 1.3)
  augment.half_body_probability = 0.3
  augment.upper_body = ("nose", "left_eye", "right_eye", "left_ear", "right_ear",
                        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
                        "left_wrist", "right_wrist")
  augment.half_body_min_keypoints = 8
  config.model.backbone = {"name": "resnet", "stage_sizes": (3, 4, 6, 3), "block": "bottleneck",
                           "width": 64, "output_stride": 32, "small_stem": False}
  config.model.head = {"name": "heatmap", "stride": 4, "features": 256, "sigma": 2.0}
  config.optimizer.name, config.optimizer.learning_rate = "adam", 5e-4
  config.batch_size, config.eval_batch_size = 64, 256
  config.num_train_steps = 140_000
  config.eval_every_steps = config.checkpoint_every_steps = 10_000
  return config
