"""The default run: the built-in synthetic faces (15 keypoints, 96x96 grayscale), CPU-sized.

  python train.py --config configs/default.py --workdir workdirs/default
"""

import ml_collections
from ml_collections import config_dict


def get_config():
  config = ml_collections.ConfigDict()
  config.name = "default"
  config.seed = 0  # parameter initialisation, shuffling and augmentation

  config.data = data = ml_collections.ConfigDict()
  data.source = "synthetic_faces"  # a key of kp_jax.data.pipeline.SOURCES: synthetic_faces,
  #                                   tfds, coco, csv, deeplabcut or sleap
  data.data_dir = config_dict.placeholder(str)  # TFDS data dir; None: ~/tensorflow_datasets
  data.image_size = 96  # synthetic images are image_size x image_size x 1
  data.scene_faces = 0  # 0: one face an image; n: scenes of 1 to n faces (configs/scenes.py)
  data.num_train = 10_000  # synthetic split sizes (each size set is prepared once)
  data.num_validation = 1_000
  data.num_test = 1_000
  data.generator_seed = 0  # seed of the synthetic generator (not of training)
  data.keypoints = ()  # names of a keypoint subset to train on; () keeps all
  data.input_size = ()  # (height, width) each example's box is cropped to; (): the source's
  #                       images as they are (they must all have one size)
  data.box_padding = 1.25  # crops take the box, fitted to input_size's aspect, times this
  data.udp = False  # crops onto the input's first and last pixel centres (UDP's affine; with
  #                  model.head.udp, UDP's heatmap codec)
  # Find, then refine (kp_jax/data/instances.py, kp_jax/two_stage.py): what the examples are.
  data.instances = instances = ml_collections.ConfigDict()
  instances.stage = ""  # "": the source's boxes; "centre": whole frames, the instance centre as
  #                       the one keypoint (stage 1); "crop": crops about that centre (stage 2)
  instances.centre = "keypoints"  # the centre of the labelled keypoints' extent, or "box": of
  #                                 the source's box (COCO files with drawn boxes)
  instances.anchor = ()  # keypoint names: the centre is the middle of their extent (one name:
  #                       that keypoint, SLEAP's anchor_part); (): all keypoints
  instances.margin = 0.2  # an instance's size is its keypoints' extent times 1 + margin
  instances.crop_size = ()  # stage 2: (height, width) of the crop in source pixels
  instances.max_instances = 0  # stage 1: instance slots per image; 0: the most any training
  #                              image holds (kp_jax.two_stage counts them)
  # Source "tfds": a TFDS landmark set with an adapter in kp_jax/data/tfds_landmarks.py.
  data.tfds_name = ""  # celeb_a, aflw2k3d or the300w_lp
  data.tfds_splits = {"train": "train", "validation": "validation"}  # pipeline -> TFDS splits
  # Sources read from files ("coco", "csv"; docs/data.md):
  data.files = {}  # split -> annotation file (COCO JSON or CSV); "train" is required
  data.image_dirs = {}  # split -> folder its image file names are relative to; default: the
  #                       annotation file's folder
  data.channels = 3  # images are decoded to this many channels (1 gray, 3 RGB)
  data.image_column = "Image"  # CSV: the column of pixels (Kaggle layout) or image paths
  # Sources "deeplabcut" (kp_jax/data/deeplabcut.py: DeepLabCut and Lightning Pose projects)
  # and "sleap" (kp_jax/data/sleap.py: SLEAP labels files).
  data.project = ""  # the project folder (config.yaml, labeled-data/), or SLEAP's .slp file
  data.train_fraction = 0.0  # frames trained on, the rest held out evenly (sorted by path);
  #                            0: the project's TrainingFraction (SLEAP: 0.9)
  data.test_frames = ()  # explicit held-out frames (CSV paths or file names; SLEAP:
  #                        video.mp4/<frame index>, or an image sequence's file names)
  # COCO conventions (docs/datasets.md): what kp-jax decides where exports differ.
  data.category = ""  # COCO category to train on; "": the only one with keypoints
  data.keypoint_names = ()  # names for a category without `keypoints` names; (): 68 points get
  #                           the iBUG 300W names and mirror pairs, others point_00, point_01...
  data.skeleton_base = config_dict.placeholder(int)  # 0 or 1: the base of the category's
  #                           skeleton indices; None: 0-based when an index is 0, else 1-based
  data.center_scale_unit = 200.0  # instances with center/scale and no bbox (MPII-style) get a
  #                           box scale * this pixels wide, centred on the centre
  data.outside_keypoints = "keep"  # labelled keypoints outside their image: "keep" (as MMPose),
  #                                  "invisible" or "error"
  data.flip_pairs = ()  # (left, right) keypoint name pairs; (): the file's own (flip_pairs,
  #                       flip_index), else found from the names (left_/right_, L_/R_, eyeL/eyeR)
  data.oks_sigmas = ()  # per-keypoint OKS sigmas; (): COCO's for COCO person keypoints, else 0.05
  data.norm_keypoints = ()  # two keypoint names whose distance is the NME normaliser
  #                           (e.g. the outer eye corners); (): the box size sqrt(w * h)
  data.min_keypoints = 1  # instances with fewer labelled keypoints are left out
  data.detections = ""  # COCO: a detections file (COCO results format) whose boxes `evaluate`
  #                      crops instead of the annotated ones (kp_jax/evaluate.py)
  data.bad_records = "error"  # "error": stop at the first bad record; "skip": skip and count
  data.verify_images = True  # decode every image once before training, naming broken files
  data.upright = True  # pictures and videos as viewers show them (as OpenCV, MMPose and
  #                      labelling tools): photos turned by their EXIF orientation, videos by
  #                      their rotation metadata; False: as stored
  data.image_mean = (0.5,)  # inputs become (pixel / 255 - mean) / std: one number for every
  data.image_std = (0.25,)  # channel, or one per channel (MMPose's: pixels.MMPOSE_NORMALISATION)
  data.input_shards = 0  # training-split shards, read evenly by the processes; 0: one each.
  #                        Fix it to keep the data order when the number of processes changes.
  data.cache = True  # keep the decoded training split in memory
  # Uncached crops of image files that hold several instances (COCO's people): decode each
  # photo once for all of them, which then stay together in the shuffle (1.3x the crops a
  # core at COCO's 2.6 a photo); False: decode each crop's window, instances shuffled alone.
  data.decode_once_per_photo = True
  data.decoded_copies = ""  # a local folder: those photos decoded once into it, 0.9 MB a 640x480
  #                          photo, and read back every epoch and run (2.2x the crops a core on
  #                          COCO-sized JPEGs, docs/benchmarks.md); "": decoded every epoch
  data.shuffle_buffer = 10_000  # examples (photos, when decoded once); at least the split
  #                               size shuffles whole epochs
  data.prefetch = 4  # batches prepared ahead of the train step
  # Unlabelled video beside the labels (kp_jax/data/video.py, kp_jax/unsupervised.py):
  data.unlabelled_videos = ()  # video files or folders; (): the project's videos/ folder
  data.unlabelled_batch_size = 0  # clips per global batch; 0: no unlabelled stream
  data.clip_length = 4  # consecutive frames per clip (the temporal loss compares neighbours)
  data.clip_shuffle_buffer = 64  # clips
  data.same_point = ()  # (name, name) pairs: one point seen in two views (the multi-view loss)
  data.augment = augment = ml_collections.ConfigDict()
  # The synthetic faces already span +-30 degrees, 0.7-1.3 scale and shifts; in this short
  # budget extra geometric jitter did not lower the validation NME (README, "Results").
  augment.max_rotation_deg = 0.0  # random rotation in [-max, max]
  augment.scale_range = (1.0, 1.0)  # random zoom
  augment.max_shift = 0.0  # random shift, as a fraction of the image size
  augment.flip_probability = 0.5  # horizontal flip, swapping left/right keypoints
  augment.brightness = 0.0  # colour jitter: brightness shift in [-b, b] (image in [0, 1]),
  augment.contrast = 0.0  # contrast and saturation (RGB only) factors in [1 - c, 1 + c]
  augment.saturation = 0.0
  augment.blur_probability = 0.0  # Gaussian blur with sigma in (0, max_blur_sigma] pixels
  augment.max_blur_sigma = 1.5
  augment.half_body_probability = 0.0  # crop to the upper or lower body's keypoints instead
  augment.upper_body = ()  # keypoint names of the upper body (the rest are the lower body)
  augment.half_body_min_keypoints = 3  # visible keypoints the chosen half needs

  config.model = model = ml_collections.ConfigDict()
  model.dtype = "float32"  # compute dtype: "float32" or "bfloat16" (parameters stay float32)
  model.kernels = "auto"  # kp_jax/models/kernels.py's CPU forms ("cpu") or XLA's own layers
  #                        ("xla"); "auto": the CPU forms only on CPU. Parameters are the same.
  model.backbone = backbone = ml_collections.ConfigDict()
  backbone.name = "resnet"  # a key of kp_jax.models.BACKBONES; the other fields are its own
  backbone.stage_sizes = (1, 1, 1, 1)  # basic blocks per stage; ResNet-18 is (2, 2, 2, 2)
  backbone.block = "basic"  # "basic" or "bottleneck"
  backbone.width = 16  # channels of the first stage, doubling each stage
  backbone.output_stride = 32  # 96x96 images -> 3x3 features
  backbone.small_stem = False  # False: conv 7x7/2 + max-pool /2, as ResNet
  model.head = head = ml_collections.ConfigDict()
  head.name = "integral"  # a key of kp_jax.models.HEADS; the other fields are its own
  head.stride = 8  # of the maps the soft-argmax reads: 12x12 at 96x96
  head.features = 32  # channels of each upsampling layer
  head.convs = 0  # extra 3x3 convs at map resolution
  head.upsample = "deconv"  # "deconv" (4x4 transposed conv), "resize" (nearest + 3x3 conv) or
  #                          "bilinear" (ViTPose's simple decoder: ReLU, one bilinear resize)
  head.loss = "l1"  # on errors in pixels: "l2", "l1", "smooth_l1" or "wing"
  model.init_from = ""  # start from another run's workdir (backbone kept; heads too when the
  #                      keypoints match), a torchvision ResNet state_dict (.pth) or an MMPose
  #                      SimpleBaseline / HRNet / ViTPose checkpoint (.pth); "": none
  config.flip_test = False  # evaluate on image and mirror, averaged (slower evaluation)

  config.optimizer = opt = ml_collections.ConfigDict()
  opt.name = "rmsprop"  # "rmsprop", "adam" or "adamw"
  opt.learning_rate = 6e-3  # peak of the warmup + cosine schedule
  opt.warmup_steps = 100
  opt.schedule = "cosine"  # after the warmup: "cosine", or "step" (MMPose's MultiStepLR)
  opt.final_lr_fraction = 0.01  # the cosine ends at learning_rate * this
  opt.step_boundaries = (170 / 210, 200 / 210)  # "step": fractions of num_train_steps where
  opt.step_factor = 0.1  # the learning rate is multiplied by this (MMPose's 210-epoch COCO)
  opt.rmsprop_decay = 0.9
  opt.eps = 1e-7
  opt.grad_clip_norm = 0.0  # clip the global gradient norm to this; 0: no clipping
  opt.weight_decay = 0.0  # on kernels only (not biases, norms or pos_embed); decoupled for adamw
  opt.layer_decay = 0.0  # ViT encoders: each layer's rate this times the one above (ViTPose's
  #                       layer-wise decay, 0.75 for B); 0: off
  opt.ema_decay = 0.0  # evaluation uses an EMA of the parameters with this decay; 0: none
  opt.max_skipped_nonfinite = 0  # skip up to this many consecutive updates with NaN/Inf
  #                                gradients (counted as skipped_updates); 0: stop at the first

  # Losses on the unlabelled clips' predictions, each off at weight 0; the weight rises from 0
  # over ramp_steps. kp_jax/unsupervised.py says what each one measures.
  config.unsupervised = unsupervised = ml_collections.ConfigDict()
  unsupervised.temporal = {"weight": 0.0, "ramp_steps": 300,
                           "threshold_px": 10.0}  # moves between frames allowed (video pixels)
  unsupervised.pca = {"weight": 0.0, "ramp_steps": 300,
                      "explained": 0.99,  # variance of the labelled poses the subspace keeps
                      "keypoints": ()}  # names in the pose (not free-moving objects); (): all
  unsupervised.multiview = {"weight": 0.0, "ramp_steps": 300}  # pairs: data.same_point
  unsupervised.consistency = {"weight": 0.0, "ramp_steps": 300,
                              "threshold": 0.5}  # the teacher's likelihood that makes a label

  config.likelihood_cutoff = 0.0  # predict/evaluate mark keypoints whose likelihood is below
  #                                 this as missing (heatmap heads: the map's peak)
  config.batch_size = 64  # global: split over all devices of all hosts
  config.eval_batch_size = 250
  config.num_train_steps = 2000
  config.log_every_steps = 50
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 500
  config.keep_last_checkpoints = 2
  config.keep_best_checkpoints = 1  # by validation NME
  config.parallel = "auto"  # "jit" (the batch sharded over a device mesh; "auto" picks it)
  #                           or "pmap" (kept, tested equal)
  config.shard_state = False  # jit: parameters, optimizer state and EMA split over the devices
  #                             (FSDP-style, along the batch's mesh axis) instead of copied
  config.compilation_cache_dir = config_dict.placeholder(str)  # JAX's persistent compilation
  #   cache (kp_jax/compilation_cache.py): compiled steps are kept here and reused by later runs
  #   of the same shapes; None: $XDG_CACHE_HOME/kp_jax/xla or ~/.cache/kp_jax/xla; "": off
  return config
