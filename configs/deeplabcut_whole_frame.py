"""`configs/deeplabcut.py` as one model on whole frames (no find-then-refine): each frame
fitted into `data.input_size`. The one-stage reference the two stages are measured against
(docs/deeplabcut.md).

  python train.py --config configs/deeplabcut_whole_frame.py --workdir workdirs/reaching_whole \
      --config.data.project=/path/to/Reaching-Mackenzie-2018-08-30
"""

from configs import deeplabcut


def get_config():
  config = deeplabcut.get_config()
  config.name = "deeplabcut_whole_frame"
  del config["two_stage"]
  return config
