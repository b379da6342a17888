"""AFLW2000-3D's 68 landmarks (TFDS `aflw2k3d`, 2000 450x450 images in one split: 1800 to train,
200 to validate), cropped by the landmark box; NME by the box size, as in 3DDFA.

  python train.py --config configs/aflw2k3d.py --workdir workdirs/aflw2k3d

AFLW2000-3D is usually a test set for models trained on 300W-LP (configs/the300w_lp.py).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.name = "aflw2k3d"
  data = config.data
  data.source = "tfds"
  data.tfds_name = "aflw2k3d"
  data.tfds_splits = {"train": "train[:1800]", "validation": "train[1800:]"}
  data.input_size = (128, 128)
  data.box_padding = 1.25
  augment = data.augment
  augment.max_rotation_deg, augment.scale_range, augment.max_shift = 30.0, (0.8, 1.2), 0.05
  augment.brightness, augment.contrast, augment.blur_probability = 0.2, 0.2, 0.2
  config.model.backbone.width = 32
  config.model.head.stride = 4  # 32x32 maps for 68 points
  config.num_train_steps = 6000
  config.eval_batch_size = 200
  return config
