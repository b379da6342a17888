"""Every instance of a frame, after the models: scores, OKS, OKS non-maximum suppression,
matching to labels, and tracks across video frames (by box overlap). NumPy on the host: a
frame holds a handful of instances.

The conventions are MMPose's, so numbers compare: an instance's score is its detection score
times the mean likelihood of its keypoints above `keypoint_threshold` ("bbox_keypoint"), and
two poses are duplicates when their object keypoint similarity (COCO's OKS, over the keypoints
both models see above `keypoint_threshold`, at the mean of their areas) exceeds the NMS
threshold (MMPose's `oks_nms`, 0.9 in its top-down configs).
"""

import dataclasses

import numpy as np


def instance_scores(detection_scores, likelihood, keypoint_threshold: float):
  """[N] scores: detection score [N] x the mean of the likelihoods [N, K] above the threshold
  (0 where none is)."""
  above = likelihood > keypoint_threshold
  mean = np.where(above, likelihood, 0.0).sum(-1) / np.maximum(above.sum(-1), 1)
  return np.asarray(detection_scores) * np.where(above.any(-1), mean, 0.0)


def areas(keypoints) -> np.ndarray:
  """[N] areas of poses [N, K, 2]: their keypoints' bounding box (MMPose's area for OKS-NMS)."""
  extent = keypoints.max(-2) - keypoints.min(-2)
  return extent[..., 0] * extent[..., 1]


def _similarity(d2, area, sigmas):
  """Each keypoint's similarity exp(-d^2 / (2 (2 sigma)^2 area)) [..., K], COCO's, from squared
  distances [..., K] and areas broadcast against their leading axes."""
  variances = (2 * np.asarray(sigmas, np.float64)) ** 2
  return np.exp(-d2 / variances / (np.asarray(area, np.float64)[..., None] + np.spacing(1)) / 2)


def oks(pose, likelihood, area, others, others_likelihood, others_area, sigmas,
        keypoint_threshold: float | None = None) -> np.ndarray:
  """Object keypoint similarity [N] of one pose [K, 2] (likelihoods [K], area) with `others`
  [N, K, 2]: the mean over keypoints of their similarity at the mean of the two areas; with a
  threshold, only over the keypoints both poses see above it (0 where there are none)."""
  similarity = _similarity(((others - pose) ** 2).sum(-1),
                           (area + np.asarray(others_area, np.float64)) / 2, sigmas)
  if keypoint_threshold is None:
    return similarity.mean(-1)
  both = (likelihood > keypoint_threshold) & (others_likelihood > keypoint_threshold)
  return np.where(both, similarity, 0.0).sum(-1) / np.maximum(both.sum(-1), 1)


def oks_nms(keypoints, likelihood, scores, sigmas, threshold: float,
            keypoint_threshold: float | None = None) -> np.ndarray:
  """Indices of the poses kept, best score first: each pose removes the lower-scored ones
  whose OKS with it exceeds `threshold`."""
  order = np.argsort(-np.asarray(scores), kind="stable")
  area = areas(keypoints)
  kept = []
  while order.size:
    best, rest = order[0], order[1:]
    kept.append(int(best))
    overlap = oks(keypoints[best], likelihood[best], area[best], keypoints[rest],
                  likelihood[rest], area[rest], sigmas, keypoint_threshold)
    order = rest[overlap <= threshold]
  return np.array(kept, np.int64)


@dataclasses.dataclass(frozen=True)
class Selection:
  """How a frame's candidate instances become its instances."""
  score_threshold: float  # instances scoring under it are dropped
  nms_threshold: float  # OKS above which the lower-scored of two poses is a duplicate
  keypoint_threshold: float  # likelihoods counted in the score and the OKS
  sigmas: tuple[float, ...]


def select(selection: Selection, keypoints, likelihood, detection_scores) -> tuple:
  """(indices kept, best first, and every candidate's score [N]) of one frame's candidates
  (keypoints [N, K, 2], likelihood [N, K], detection scores [N])."""
  scores = instance_scores(detection_scores, likelihood, selection.keypoint_threshold)
  candidates = np.flatnonzero(scores >= selection.score_threshold)
  kept = oks_nms(keypoints[candidates], likelihood[candidates], scores[candidates],
                 selection.sigmas, selection.nms_threshold, selection.keypoint_threshold)
  return candidates[kept], scores


# ---------------------------------------------------------------------------------------------
# Tracks.


def box_iou(boxes, others) -> np.ndarray:
  """Intersection over union [N, M] of boxes [N, 4] and [M, 4], (x0, y0, x1, y1)."""
  low = np.maximum(boxes[:, None, :2], others[None, :, :2])
  high = np.minimum(boxes[:, None, 2:], others[None, :, 2:])
  overlap = np.prod(np.clip(high - low, 0, None), -1)
  area = lambda b: np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), -1)
  union = area(boxes)[:, None] + area(others)[None] - overlap
  return np.where(union > 0, overlap / np.maximum(union, np.spacing(1)), 0.0)


@dataclasses.dataclass(frozen=True)
class Track:
  id: int
  box: np.ndarray  # [4] (x0, y0, x1, y1), where it was last seen
  last_frame: int


@dataclasses.dataclass(frozen=True)
class Tracks:
  """The live tracks and the next id: what `track` carries from frame to frame."""
  live: tuple[Track, ...] = ()
  next_id: int = 1


def track(tracks: Tracks, frame: int, boxes, *, min_iou: float,
          max_age: int) -> tuple[Tracks, list[int]]:
  """(the tracks after `frame`, the track id of each of its instances, boxes [N, 4]
  (x0, y0, x1, y1)).

  Pairs are taken greedily, most overlapping first (box IoU between the instance and where
  the track was last seen: forgiving of a small animal's few pixels of motion, where OKS at
  its small area is not), down to `min_iou`; an instance left over starts a track. A track not
  seen for more than `max_age` frames ends, so a returning animal gets a new id rather than a
  stale one.
  """
  live = [t for t in tracks.live if frame - t.last_frame <= max_age]
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  n = len(boxes)
  overlap = (box_iou(np.array([t.box for t in live]), boxes) if live and n
             else np.zeros((len(live), n)))
  ids, taken, next_id = [None] * n, set(), tracks.next_id
  for flat in np.argsort(-overlap, axis=None, kind="stable"):
    i, j = divmod(int(flat), n)
    if overlap[i, j] < min_iou:
      break
    if i not in taken and ids[j] is None:
      ids[j] = live[i].id
      taken.add(i)
  for j in range(n):
    if ids[j] is None:
      ids[j], next_id = next_id, next_id + 1
  seen = {ids[j]: Track(ids[j], boxes[j], frame) for j in range(n)}
  kept = [seen.pop(t.id, t) for t in live]
  return Tracks(tuple(kept) + tuple(seen.values()), next_id), ids


# ---------------------------------------------------------------------------------------------
# Against the labels.


def label_oks(keypoints, true_keypoints, true_visible, true_area, sigmas) -> np.ndarray:
  """COCO's OKS [N, G] of poses [N, K, 2] with labelled instances [G, K, 2]: over each
  label's visible keypoints, at its area (pycocotools' `computeOks`)."""
  d2 = ((keypoints[:, None] - true_keypoints[None]) ** 2).sum(-1)  # [N, G, K]
  similarity = _similarity(d2, np.asarray(true_area)[None], sigmas)
  visible = np.asarray(true_visible)[None] > 0
  return np.where(visible, similarity, 0.0).sum(-1) / np.maximum(visible.sum(-1), 1)


def match_labels(keypoints, scores, true_keypoints, true_visible, true_area, sigmas,
                 min_oks: float = 0.5) -> dict:
  """Predicted instances against one image's labelled ones, best score first, as COCO
  matches them: a prediction takes the unmatched label it overlaps most (OKS >= `min_oks`);
  one that overlaps only labels already taken is a duplicate, one that overlaps none a false
  positive; labels left are missed. Labels without a visible keypoint are not counted.
  Returns {"pairs": [(prediction, label)], "duplicates", "false_positives", "missed"}."""
  counted = np.asarray(true_visible).sum(-1) > 0
  similarity = label_oks(keypoints, true_keypoints, true_visible, true_area, sigmas)
  similarity[:, ~counted] = 0.0
  taken, pairs, duplicates, false_positives = set(), [], 0, 0
  for p in np.argsort(-np.asarray(scores), kind="stable"):
    overlapping = np.flatnonzero(similarity[p] >= min_oks)
    free = [g for g in overlapping if g not in taken]
    if free:
      g = max(free, key=lambda g: similarity[p, g])
      pairs.append((int(p), int(g)))
      taken.add(g)
    elif overlapping.size:
      duplicates += 1
    else:
      false_positives += 1
  return {"pairs": pairs, "duplicates": duplicates, "false_positives": false_positives,
          "missed": int(counted.sum()) - len(pairs)}
