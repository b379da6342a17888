"""The default config shrunk to seconds, for tests and smoke runs: 32x32 faces (96 training
images), a tiny BatchNorm ResNet with a heatmap head, every augmentation on, 20 steps.

  python train.py --config configs/tiny.py --workdir /tmp/tiny
"""

from configs import default


def get_config():
  config = default.get_config()
  config.name = "tiny"
  data = config.data
  data.image_size, data.num_train, data.num_validation, data.num_test = 32, 96, 21, 5
  data.shuffle_buffer, data.prefetch = 96, 1
  augment = data.augment
  augment.max_rotation_deg, augment.scale_range, augment.max_shift = 10.0, (0.9, 1.1), 0.05
  config.model.backbone = {"name": "resnet", "stage_sizes": (1, 1), "width": 8,
                           "output_stride": 8, "small_stem": True}
  config.model.head = {"name": "heatmap", "stride": 4, "features": 8, "sigma": 1.0}
  config.optimizer.ema_decay = 0.5
  config.optimizer.warmup_steps = 2
  config.batch_size, config.eval_batch_size = 16, 8  # 21 validation examples: a padded last batch
  config.num_train_steps = 20
  config.log_every_steps, config.eval_every_steps, config.checkpoint_every_steps = 5, 10, 10
  return config
