"""ViTPose-B (`configs/coco_vitpose_b.py`'s model and optimiser: ViT-B, the classic decoder,
UDP targets, AdamW with layer-wise decay) on the built-in 96x96 faces: the same short CPU run
as `configs/hrnet_faces.py` (docs/models.md).

  python train.py --config configs/vitpose_faces.py --workdir workdirs/vitpose_faces
"""

from configs import coco_vitpose_b, hrnet_faces


def get_config():
  config = hrnet_faces.get_config()  # its run: batch 16, 200 steps, a 20-step warmup
  recipe = coco_vitpose_b.get_config("1")
  config.name = "vitpose_faces"
  config.model.backbone = recipe.model.backbone
  config.model.head = recipe.model.head
  warmup_steps = config.optimizer.warmup_steps
  config.optimizer = recipe.optimizer
  config.optimizer.warmup_steps = warmup_steps
  return config
