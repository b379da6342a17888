"""Your DeepLabCut project: whole frames, a fully convolutional heatmap model at stride 4 with
DARK sub-pixel decoding, strong geometric and colour augmentation (docs/deeplabcut.md has
its worked example and results). Copy it, point `data.project` at your project and set
`data.input_size` to about half your frames' (height, width), rounded to multiples of 32.

  python train.py --config configs/deeplabcut.py --workdir workdirs/reaching \
      --config.data.project=/path/to/Reaching-Mackenzie-2018-08-30
  python -m kp_jax.evaluate --workdir workdirs/reaching --split test
  python -m kp_jax.predict --workdir workdirs/reaching video.mp4
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
  data.input_size = (352, 384)  # (height, width), multiples of 32: 832x747 frames at ~0.46x
  data.box_padding = 1.0  # the whole frame, fitted to input_size's aspect (no context to add)
  data.channels = 1  # most lab video is grayscale; 3 for colour video
  data.cache = True
  data.shuffle_buffer = 1000
  augment = data.augment
  augment.max_rotation_deg = 25.0
  augment.scale_range = (0.8, 1.2)
  augment.max_shift = 0.08
  augment.flip_probability = 0.0  # on only when the body parts have left/right pairs
  augment.brightness, augment.contrast = 0.2, 0.3
  augment.blur_probability = 0.2

  model = config.model
  model.backbone = {"name": "resnet", "stage_sizes": (2, 2, 2, 2), "block": "basic",
                    "width": 16, "output_stride": 16, "small_stem": False}
  model.head = {"name": "heatmap", "stride": 4, "features": 32, "sigma": 1.5,
                "decoder": "dark", "upsample": "deconv", "unlabelled_as_absent": True}
  model.init_from = ""  # a kp-jax workdir or a torchvision ResNet state_dict file

  opt = config.optimizer
  opt.name = "adam"
  opt.learning_rate = 2e-3
  opt.warmup_steps = 100
  config.batch_size = 8
  config.eval_batch_size = 8
  config.num_train_steps = 1500  # ~14 min on a 2-core CPU (docs/deeplabcut.md)
  config.log_every_steps = 50
  # The held-out frames double as the validation split: evaluate (and keep "the best") only at
  # the end, so no checkpoint is chosen by its test error.
  config.eval_every_steps = config.num_train_steps
  config.checkpoint_every_steps = 500
  config.likelihood_cutoff = 0.1  # predictions below this heatmap peak are marked missing

  # Find, then refine (kp_jax/two_stage.py): a centre model finds the animal on a small frame,
  # the keypoint model above sees a crop about it. Delete this section for one whole-frame model.
  config.two_stage = two_stage = ml_collections.ConfigDict()
  two_stage.crop_size = ()  # (height, width) in source pixels; (): the largest labelled extent
  #                           (data.instances.margin added), rounded to crop_multiple
  two_stage.crop_scale = 1.0  # keypoint-model input pixels per source pixel
  two_stage.crop_multiple = 32  # the crop's input is a multiple of the backbone's stride
  two_stage.centre_jitter_px = 0.0  # training crops' centre shift, source pixels; 0: three
  #                                   times the centre model's mean error on the training frames
  two_stage.min_centre_jitter_px = 8.0
  two_stage.max_centre_jitter_fraction = 0.125  # of the crop's shorter side
  two_stage.centre = centre = ml_collections.ConfigDict()  # stage 1, on the whole frame
  centre.input_size = (192, 224)  # (height, width), multiples of 32: the frame fitted into it
  centre.model = {
      "backbone": {"name": "resnet", "stage_sizes": (1, 1, 1, 1), "block": "basic",
                   "width": 16, "output_stride": 16, "small_stem": False},
      "head": {"name": "centre", "stride": 4, "features": 32, "sigma": 2.0}}
  centre.learning_rate = 2e-3
  centre.num_train_steps = 600
  centre.batch_size = 8
  return config
