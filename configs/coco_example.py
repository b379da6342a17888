"""Top-down training on COCO-format keypoint files: the worked example of docs/data.md.

  python -m kp_jax.data.example_coco data/faces_coco     # or export your own from CVAT etc.
  python train.py --config configs/coco_example.py --workdir workdirs/coco_example
  python -m kp_jax.evaluate --workdir workdirs/coco_example --split validation

For your own data, point `files` at your exported JSON files (and `image_dirs` at the images
if their `file_name`s are not relative to the JSON's folder), and set `input_size` to the
shape of your objects' boxes.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.name = "coco_example"
  data = config.data
  data.source = "coco"
  data.files = {"train": "data/faces_coco/train.json",
                "validation": "data/faces_coco/validation.json"}
  data.input_size = (64, 64)  # each instance's box, padded by box_padding, fills this
  data.box_padding = 1.25
  data.channels = 3
  augment = data.augment
  augment.max_rotation_deg, augment.scale_range, augment.max_shift = 20.0, (0.85, 1.15), 0.05
  augment.brightness, augment.contrast, augment.saturation = 0.2, 0.2, 0.2
  augment.blur_probability = 0.2
  config.model.head.stride = 4  # 16x16 maps at 64x64
  config.num_train_steps = 1500
  config.eval_every_steps = config.checkpoint_every_steps = 500
  config.eval_batch_size = 100
  return config
