"""ViTPose-B (`configs/coco_vitpose_b.py`'s model and optimiser: ViT-B, the classic decoder,
UDP targets, AdamW with layer-wise decay) on the built-in 96x96 faces: a short run to see the
COCO recipe's model train on a CPU (docs/models.md).

  python train.py --config configs/vitpose_faces.py --workdir workdirs/vitpose_faces
"""

from configs import coco_vitpose_b, default


def get_config():
  config = default.get_config()
  recipe = coco_vitpose_b.get_config("1")
  config.name = "vitpose_faces"
  config.model.backbone = recipe.model.backbone
  config.model.head = recipe.model.head
  config.optimizer = recipe.optimizer
  config.optimizer.warmup_steps = 20
  config.batch_size = 16
  config.num_train_steps = 200
  config.log_every_steps = 20
  config.eval_every_steps = config.checkpoint_every_steps = 200
  return config
