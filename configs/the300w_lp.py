"""300W-LP's 68 landmarks (TFDS `the300w_lp`, 61k 450x450 faces with large poses), cropped by
the landmark box; 5% held out for validation.

  python train.py --config configs/the300w_lp.py --workdir workdirs/the300w_lp
"""

from configs import aflw2k3d


def get_config():
  config = aflw2k3d.get_config()
  config.name = "the300w_lp"
  config.data.tfds_name = "the300w_lp"
  config.data.tfds_splits = {"train": "train[:95%]", "validation": "train[95%:]"}
  config.data.cache = False
  config.num_train_steps = 30_000
  config.batch_size = 128
  config.eval_every_steps = config.checkpoint_every_steps = 3000
  return config
