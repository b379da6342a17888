"""Your DeepLabCut (or Lightning Pose) project, found then refined: a centre model finds the
animal on the frame fitted into 192x224, and a fully convolutional heatmap model (heatmaps at
stride 4 trained by binary cross-entropy as DeepLabCut 3's are, DARK sub-pixel decoding) sees a
crop about it at half the frame's resolution;
strong geometric and colour augmentation (docs/deeplabcut.md has the worked example and
results). Copy it and point `data.project` at your project; the crop is sized from your labels
(or set `two_stage.crop_size`), and `data.instances.anchor` names the body parts that place it
when a rarely labelled one lies far from the others.

  python train.py --config configs/deeplabcut.py --workdir workdirs/reaching \
      --config.data.project=/path/to/Reaching-Mackenzie-2018-08-30 \
      "--config.data.instances.anchor=('Hand','Finger1','Joystick1','Joystick2')" \
      "--config.two_stage.crop_size=(352,352)"
  python -m kp_jax.evaluate --workdir workdirs/reaching --split test
  python -m kp_jax.predict --workdir workdirs/reaching video.mp4

One model on whole frames instead: configs/deeplabcut_whole_frame.py.
"""

import ml_collections

from configs import default


def get_config():
  config = default.get_config()
  config.name = "deeplabcut"
  data = config.data
  data.source = "deeplabcut"
  data.project = ""  # required: the DeepLabCut project folder
  data.train_fraction = 0.8  # every 5th labelled frame (sorted by path) is held out
  data.input_size = ()  # set per stage below (whole-frame models: configs/deeplabcut_whole_frame)
  data.box_padding = 1.0  # no context to add: the crops hold their margin
  data.channels = 1  # most lab video is grayscale; 3 for colour video
  data.cache = True
  data.shuffle_buffer = 1000
  augment = data.augment
  augment.max_rotation_deg = 25.0
  augment.scale_range = (0.8, 1.2)
  augment.max_shift = 0.08  # the centre model's; the crops' shift is the centre jitter below
  augment.flip_probability = 0.0  # on only when the body parts have left/right pairs
  augment.brightness, augment.contrast = 0.2, 0.3
  augment.blur_probability = 0.2

  model = config.model  # the keypoint model (stage 2)
  model.backbone = {"name": "resnet", "stage_sizes": (2, 2, 2, 2), "block": "basic",
                    "width": 16, "output_stride": 16, "small_stem": False}
  # Maps at stride 4 (sigma 1.0: the same 4 px target width as stride 2's 2.0) trained stage 2
  # 1.3-1.8x faster than at stride 2 and erred less in both seeds tried. Binary cross-entropy
  # on the maps' logits (DeepLabCut 3's loss): with MSE the mirror mouse's maps stayed empty
  # for all 3,000 steps (160 px), with it they reach 4.1 px; on Reaching both do as well
  # (docs/deeplabcut.md).
  model.head = {"name": "heatmap", "stride": 4, "features": 32, "sigma": 1.0,
                "decoder": "dark", "upsample": "deconv", "unlabelled_as_absent": True,
                "loss": "bce"}
  model.init_from = ""  # a kp-jax workdir or a torchvision ResNet state_dict file

  opt = config.optimizer
  opt.name = "adam"
  opt.learning_rate = 2e-3
  opt.warmup_steps = 100
  config.batch_size = 8
  config.eval_batch_size = 8
  config.num_train_steps = 3000  # stage 2; both stages about 9 min on a 2-core CPU
  config.log_every_steps = 50
  # The held-out frames double as the validation split: evaluate (and keep "the best") only at
  # the end, so no checkpoint is chosen by its test error.
  config.eval_every_steps = config.num_train_steps
  config.checkpoint_every_steps = 500
  config.likelihood_cutoff = 0.1  # predictions below this heatmap peak are marked missing

  # Find, then refine (kp_jax/two_stage.py): stage 1 finds the animal on a small frame, the
  # keypoint model above sees a crop about it.
  config.two_stage = find_then_refine()
  return config


def find_then_refine() -> ml_collections.ConfigDict:
  """The `two_stage` section (kp_jax/two_stage.py), as a DeepLabCut project wants it."""
  two_stage = ml_collections.ConfigDict()
  two_stage.crop_size = ()  # (height, width) in source pixels; (): the smallest crop about the
  #                           centre holding every labelled keypoint of every training frame,
  #                           with data.instances.margin, rounded to crop_multiple
  two_stage.crop_scale = 0.5  # keypoint-model input pixels per source pixel
  two_stage.crop_multiple = 32  # the crop's input is a multiple of the backbone's stride
  two_stage.centre_jitter_px = 0.0  # training crops' centre shift, source pixels; 0: three
  #                                   times the centre model's mean error on the training frames
  two_stage.min_centre_jitter_px = 8.0
  two_stage.max_centre_jitter_fraction = 0.125  # of the crop's shorter side
  # Several instances per image (data.instances.max_instances > 1): which candidates are
  # instances, and how they are followed through a video (kp_jax/poses.py; MMPose's rules).
  two_stage.score_threshold = 0.3  # centre peak x mean keypoint likelihood above the next
  two_stage.keypoint_threshold = 0.2  # likelihoods counted in scores and OKS
  two_stage.nms_threshold = 0.9  # OKS above which the lower-scored of two poses is a duplicate
  two_stage.track_min_iou = 0.3  # an instance continues the track its box overlaps most, above this
  two_stage.track_max_age = 30  # frames a lost track waits for its instance before it ends
  two_stage.centre = centre = ml_collections.ConfigDict()  # stage 1, on the whole frame
  centre.input_size = (192, 224)  # (height, width), multiples of 32: the frame fitted into it
  centre.model = {
      "backbone": {"name": "resnet", "stage_sizes": (1, 1, 1, 1), "block": "basic",
                   "width": 16, "output_stride": 16, "small_stem": False},
      "head": {"name": "centre", "stride": 4, "features": 32, "sigma": 2.0}}
  centre.learning_rate = 2e-3
  centre.num_train_steps = 600
  centre.batch_size = 8
  return two_stage
