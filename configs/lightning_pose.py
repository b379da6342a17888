"""A Lightning Pose project (its layout: `CollectedData.csv` and `labeled-data/`), as measured
on Lightning Pose's mirror-mouse example (docs/deeplabcut.md): found then refined by
configs/deeplabcut.py as it is (4.1 px on the held-out frames), or one whole-frame model with
the integral head (maps at stride 4 read by soft-argmax, trained on coordinates), which is what
learning from the project's videos needs: its losses act on the keypoints' coordinates.

  python train.py --config configs/lightning_pose.py --workdir workdirs/mirror_mouse \
      --config.data.project=/path/to/mirror-mouse-example
  python train.py --config configs/lightning_pose.py:whole_frame ...  # one whole-frame model
  python train.py --config configs/lightning_pose.py:video ...  # + the project's videos/

`video`: the whole-frame model learning from the project's unlabelled videos beside its labels
(kp_jax/unsupervised.py, docs/video.md): one clip of four frames a step, the temporal,
pose-PCA, multi-view and EMA-teacher losses on. The mirror-mouse example's views: its body
parts end in _top (the side) and _bot (the mirror below), each pair one point seen twice; the
obstacle markers move on their own, so they stay out of the pose PCA.
"""

from configs import deeplabcut, deeplabcut_whole_frame

VARIANTS = ("", "whole_frame", "video")
MIRROR_MOUSE_PARTS = ("paw1LH", "paw2LF", "paw3RF", "paw4RH", "tailBase", "tailMid", "nose")


def get_config(variant: str = ""):
  if variant not in VARIANTS:
    raise ValueError(f"configs/lightning_pose.py:{variant}: choose one of {VARIANTS}.")
  config = (deeplabcut_whole_frame if variant else deeplabcut).get_config()
  config.name = "_".join(filter(None, ("lightning_pose", variant)))
  if not variant:
    return config
  config.model.head = {"name": "integral", "stride": 4, "features": 32, "loss": "l1"}
  config.num_train_steps = config.eval_every_steps = 1500
  config.data.input_size = (256, 256)  # 406x396 frames at 0.63x
  if variant == "video":
    data, unsupervised = config.data, config.unsupervised
    data.unlabelled_batch_size, data.clip_length = 1, 4
    data.same_point = tuple((f"{p}_top", f"{p}_bot") for p in MIRROR_MOUSE_PARTS)
    unsupervised.temporal.weight = 0.2
    unsupervised.pca.weight = 0.2
    unsupervised.pca.keypoints = tuple(n for pair in data.same_point for n in pair)
    unsupervised.multiview.weight = 0.2
    unsupervised.consistency.weight = 1.0
    config.optimizer.ema_decay = 0.99  # the consistency loss's teacher
  return config
