"""A Lightning Pose project (its layout: `CollectedData.csv` and `labeled-data/`), found then
refined as measured on Lightning Pose's mirror-mouse example (docs/deeplabcut.md):
configs/deeplabcut.py with the integral head (maps at stride 4 read by soft-argmax, trained on
coordinates: the heatmap head's loss fell to empty maps on these frames and stayed there) and
the crop at the scale the whole-frame model sees, about a mouse that fills the frame.

  python train.py --config configs/lightning_pose.py --workdir workdirs/mirror_mouse \
      --config.data.project=/path/to/mirror-mouse-example
  python train.py --config configs/lightning_pose.py:whole_frame ...  # one whole-frame model
"""

from configs import deeplabcut, deeplabcut_whole_frame

VARIANTS = ("", "whole_frame")


def get_config(variant: str = ""):
  if variant not in VARIANTS:
    raise ValueError(f"configs/lightning_pose.py:{variant}: choose one of {VARIANTS}.")
  config = (deeplabcut_whole_frame if variant else deeplabcut).get_config()
  config.name = "_".join(filter(None, ("lightning_pose", variant)))
  config.model.head = {"name": "integral", "stride": 4, "features": 32, "loss": "l1"}
  config.num_train_steps = config.eval_every_steps = 1500
  if variant:
    config.data.input_size = (256, 256)  # 406x396 frames at 0.63x
  else:
    config.data.instances.margin = 0.05  # the mouse fills the frame: little to add
    config.two_stage.crop_scale = 0.63  # the whole-frame model's scale
  return config
