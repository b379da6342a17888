"""Your DeepLabCut project with one model on whole frames (no find-then-refine): each frame
fitted into `data.input_size` (about half the frames' (height, width), multiples of 32), a
heatmap model at stride 4. The one-stage reference that configs/deeplabcut.py is measured
against (docs/deeplabcut.md).

  python train.py --config configs/deeplabcut_whole_frame.py --workdir workdirs/reaching_whole \
      --config.data.project=/path/to/Reaching-Mackenzie-2018-08-30
"""

from configs import deeplabcut


def get_config():
  config = deeplabcut.get_config()
  config.name = "deeplabcut_whole_frame"
  del config["two_stage"]
  config.data.input_size = (352, 384)  # 832x747 frames at ~0.46x
  config.data.box_padding = 1.0  # the whole frame, fitted to input_size's aspect
  config.model.head.stride, config.model.head.sigma = 4, 1.5  # one map pixel: ~8.7 px
  config.num_train_steps = 1500  # ~14 min on a 2-core CPU
  config.eval_every_steps = config.num_train_steps
  return config
