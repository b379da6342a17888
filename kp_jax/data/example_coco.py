"""Writes a small COCO-format keypoint dataset of synthetic faces, as an annotation tool would
export it: JPEG scenes of varied sizes holding one or two faces each, and one JSON per split.

  python -m kp_jax.data.example_coco /tmp/faces_coco

It stands in for a user's own labelled data in the worked example of docs/data.md and in the tests.
"""

import json
import os

import numpy as np
from absl import app, flags
from PIL import Image

from kp_jax.data.faces import render_example
from kp_jax.data.keypoints import FACE15

CATEGORY = {"id": 1, "name": "face", "supercategory": "face", "keypoints": list(FACE15.names),
            "skeleton": [[FACE15.index(a) + 1, FACE15.index(b) + 1] for a, b in FACE15.skeleton]}


def _scene(rng, image_id: int, first_annotation_id: int, face_size: int):
  """(RGB scene, annotations): faces pasted side by side on a noisy background."""
  count = int(rng.integers(1, 3))
  width = int(count * face_size + rng.integers(8, 60))
  height = int(face_size + rng.integers(8, 60))
  scene = rng.uniform(0, 255, (height, width, 3)) * rng.uniform(0.2, 0.6)
  annotations, x0 = [], int(rng.integers(0, width - count * face_size + 1))
  for i in range(count):
    face = render_example(rng, face_size)
    y0 = int(rng.integers(0, height - face_size + 1))
    tint = rng.uniform(0.7, 1.0, 3)
    scene[y0:y0 + face_size, x0:x0 + face_size] = face["image"].astype(np.float64) * tint
    points = face["keypoints"] + [x0, y0]
    # COCO flags: 2 visible, 1 labelled but occluded, 0 not labelled (outside the face's square).
    inside = np.all((face["keypoints"] >= -0.5) & (face["keypoints"] <= face_size - 0.5), 1)
    flags_ = np.where(face["visible"] > 0, 2, np.where(inside, 1, 0))
    keypoints = np.concatenate([np.where(flags_[:, None] > 0, points, 0), flags_[:, None]], 1)
    annotations.append({
        "id": first_annotation_id + i, "image_id": image_id, "category_id": 1,
        "bbox": [x0, y0, face_size, face_size], "area": face_size * face_size, "iscrowd": 0,
        "keypoints": [round(float(v), 2) for v in keypoints.ravel()],
        "num_keypoints": int((flags_ > 0).sum())})
    x0 += face_size
  return scene.astype(np.uint8), annotations


def write(out_dir: str, sizes: dict[str, int], seed: int = 0, face_size: int = 64) -> dict:
  """Writes `out_dir/images/*.jpg` and `out_dir/<split>.json` ({split: number of images});
  returns {split: JSON path}."""
  os.makedirs(os.path.join(out_dir, "images"), exist_ok=True)
  paths, image_id, annotation_id = {}, 1, 1
  for split_index, (split, count) in enumerate(sizes.items()):
    rng = np.random.default_rng([seed, split_index])
    images, annotations = [], []
    for _ in range(count):
      scene, anns = _scene(rng, image_id, annotation_id, face_size)
      name = f"images/{split}_{image_id:05d}.jpg"
      Image.fromarray(scene).save(os.path.join(out_dir, name), quality=95)
      images.append({"id": image_id, "file_name": name, "width": scene.shape[1],
                     "height": scene.shape[0]})
      annotations += anns
      image_id, annotation_id = image_id + 1, annotation_id + len(anns)
    paths[split] = os.path.join(out_dir, f"{split}.json")
    with open(paths[split], "w") as f:
      json.dump({"info": {"description": "kp-jax example: synthetic faces"}, "images": images,
                 "annotations": annotations, "categories": [CATEGORY]}, f)
  return paths


_SIZES = flags.DEFINE_list("sizes", ["train:400", "validation:50"], "split:number of images")
_SEED = flags.DEFINE_integer("seed", 0, "Another seed gives other images.")


def main(argv):
  if len(argv) != 2:
    raise app.UsageError("Give the output folder.")
  sizes = {split: int(n) for split, n in (item.split(":") for item in _SIZES.value)}
  for split, path in write(argv[1], sizes, seed=_SEED.value).items():
    print(f"{split}: {path}")


if __name__ == "__main__":
  app.run(main)
