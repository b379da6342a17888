"""COCO keypoint AP/AR, computed by pycocotools from predictions in the COCO results format.

Any dataset can be scored this way: COCO-format sources use their own annotation file as the
ground truth (as `kp_jax.data.coco.ground_truth` reads it); the others get one built from
their examples (one instance per image, its box
the whole crop region). Object keypoint similarity uses the keypoint spec's OKS sigmas.
"""

import contextlib
import copy
import io

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

# COCOeval.stats, in order.
STATS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


def ground_truth_from_examples(image_ids, boxes, keypoints, visible, names,
                               category_id: int = 1) -> dict:
  """COCO ground truth with one instance per example (keypoints in source pixels)."""
  images, annotations = [], []
  for i, (image_id, box, points, vis) in enumerate(zip(image_ids, boxes, keypoints, visible)):
    flags = np.where(vis > 0, 2, 0)
    values = np.concatenate([points * (flags[:, None] > 0), flags[:, None]], 1)
    images.append({"id": int(image_id)})
    annotations.append({"id": i + 1, "image_id": int(image_id), "category_id": category_id,
                        "bbox": [float(v) for v in box], "area": float(box[2] * box[3]),
                        "iscrowd": 0, "keypoints": [float(v) for v in values.ravel()],
                        "num_keypoints": int((flags > 0).sum())})
  return {"info": {}, "images": images, "annotations": annotations,
          "categories": [{"id": category_id, "name": "object", "keypoints": list(names)}]}


def results(image_ids, keypoints, scores, category_id: int) -> list[dict]:
  """Predictions in the COCO results format (keypoint flags 1, as COCO's own results do)."""
  out = []
  for image_id, points, score in zip(image_ids, keypoints, scores):
    values = np.concatenate([points, np.ones((len(points), 1))], 1)
    out.append({"image_id": int(image_id), "category_id": int(category_id),
                "keypoints": [round(float(v), 3) for v in values.ravel()],
                "score": float(score)})
  return out


def keypoint_ap(ground_truth: dict, predictions: list[dict], sigmas, category_id: int) -> dict:
  """COCO keypoint AP/AR ({name: value} for STATS) of `predictions` against `ground_truth`
  (0 for each where there are no predictions, which pycocotools cannot load)."""
  if not predictions:
    return dict.fromkeys(STATS, 0.0)
  coco = COCO()
  coco.dataset = {"info": {}, **copy.deepcopy(ground_truth)}  # pycocotools 2.0.10 wants "info"
  with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
    coco.createIndex()
    detections = coco.loadRes(copy.deepcopy(predictions))
    evaluation = COCOeval(coco, detections, "keypoints")
    evaluation.params.kpt_oks_sigmas = np.asarray(sigmas, np.float64)
    evaluation.params.catIds = [category_id]
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
  return {name: float(value) for name, value in zip(STATS, evaluation.stats)}
