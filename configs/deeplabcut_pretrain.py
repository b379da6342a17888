"""Pretraining for configs/deeplabcut.py on the built-in synthetic faces: the same backbone and
heatmap head (the final per-keypoint layer aside), so `model.init_from` can start a
DeepLabCut project's run from it where no ImageNet weights can be downloaded.

  python train.py --config configs/deeplabcut_pretrain.py --workdir workdirs/dlc_pretrain
  python train.py --config configs/deeplabcut.py --workdir workdirs/reaching \
      --config.data.project=/path/to/project --config.model.init_from=workdirs/dlc_pretrain
"""

from configs import deeplabcut, default


def get_config():
  config = default.get_config()
  config.name = "deeplabcut_pretrain"
  target = deeplabcut.get_config()
  config.model.backbone = target.model.backbone
  config.model.head = target.model.head
  config.model.head.unlabelled_as_absent = False  # the faces' hidden keypoints are there
  config.optimizer.name = target.optimizer.name
  config.optimizer.learning_rate = target.optimizer.learning_rate
  augment = config.data.augment  # the faces already vary; add what the lab videos will
  augment.brightness, augment.contrast = 0.2, 0.3
  config.num_train_steps = 1500
  config.eval_every_steps = config.checkpoint_every_steps = 500
  return config
