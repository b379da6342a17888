"""CelebA's 5 landmarks (TFDS `celeb_a`, 163k aligned 218x178 training faces), ResNet + integral.

  python train.py --config configs/celeb_a.py --workdir workdirs/celeb_a

TFDS downloads CelebA on first use (about 1.4 GB; docs/data.md, "Datasets").
"""

from configs import default


def get_config():
  config = default.get_config()
  config.name = "celeb_a"
  data = config.data
  data.source = "tfds"
  data.tfds_name = "celeb_a"
  data.tfds_splits = {"train": "train", "validation": "validation", "test": "test"}
  data.input_size = (160, 128)  # the aligned 218x178 images at 0.73 (multiples of the
  #                               backbone's stride, 32)
  data.box_padding = 1.0  # the box is the whole aligned image
  data.cache = False  # 163k images do not fit in memory
  data.shuffle_buffer = 20_000
  augment = data.augment
  augment.max_rotation_deg, augment.scale_range, augment.max_shift = 15.0, (0.9, 1.1), 0.05
  augment.brightness, augment.contrast, augment.saturation = 0.2, 0.2, 0.2
  config.model.backbone.width = 32
  config.num_train_steps = 20_000
  config.batch_size = 128
  config.eval_every_steps = config.checkpoint_every_steps = 2000
  return config
