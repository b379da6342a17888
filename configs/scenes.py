"""Every instance: the built-in scenes of 1 to 4 synthetic faces (192x192, faces of 5-14% of
the picture, some overlapping or cut by the border), found then refined. The offline benchmark
of several instances per image (README, "Results"; docs/usage.md, "Every instance").

  python train.py --config configs/scenes.py --workdir workdirs/scenes
  python -m kp_jax.evaluate --workdir workdirs/scenes --split test
"""

from configs import deeplabcut, default


def get_config():
  config = default.get_config()
  config.name = "scenes"
  data = config.data
  data.image_size = 192
  data.scene_faces = 4  # scenes of 1 to 4 faces (kp_jax/data/faces.py, render_scene)
  data.num_train, data.num_validation, data.num_test = 3000, 300, 300
  data.instances.margin = 0.2

  # Stage 2: the default face model on 64x64 crops at the scenes' own resolution.
  config.num_train_steps = 1500
  config.batch_size = 32
  config.eval_every_steps = config.checkpoint_every_steps = 500

  config.two_stage = two_stage = deeplabcut.find_then_refine()
  two_stage.crop_scale = 1.0
  centre = two_stage.centre
  centre.input_size = (128, 128)  # the 192x192 scene at 2/3 of its resolution
  centre.num_train_steps = 2000
  centre.batch_size = 16
  return config
