"""kp_jax.poses: instance scores, OKS, OKS-NMS, matching to labels and tracks, against
pycocotools and values worked out by hand."""

import contextlib
import io

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from kp_jax import coco_eval, poses

SIGMAS = np.array([0.025, 0.05, 0.1])


def test_instance_score_is_detection_times_mean_likelihood_above_threshold():
  likelihood = np.array([[0.9, 0.1, 0.5], [0.1, 0.15, 0.2], [1.0, 1.0, 1.0]])
  scores = poses.instance_scores(np.array([0.5, 1.0, 0.2]), likelihood, 0.2)
  # (0.9 + 0.5) / 2 * 0.5; nothing above 0.2 (0.2 itself is not above); 1 * 0.2.
  np.testing.assert_allclose(scores, [0.35, 0.0, 0.2])


def test_oks_by_hand():
  pose = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
  other = pose + np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
  area = 100.0
  # exp(-d^2 / (2 (2 sigma)^2 area)) for each keypoint, then the mean.
  expected = np.mean([np.exp(-1 / (2 * 0.05**2 * 100)), np.exp(-4 / (2 * 0.1**2 * 100)), 1.0])
  got = poses.oks(pose, np.ones(3), area, other[None], np.ones((1, 3)), [area], SIGMAS)
  np.testing.assert_allclose(got, [expected])
  # With a threshold, only the keypoints both see: here the last one alone.
  seen = poses.oks(pose, np.array([0.9, 0.1, 0.9]), area, other[None],
                   np.array([[0.1, 0.9, 0.9]]), [area], SIGMAS, keypoint_threshold=0.5)
  np.testing.assert_allclose(seen, [1.0])


def test_label_oks_equals_pycocotools():
  rng = np.random.default_rng(0)
  true = rng.uniform(0, 50, (3, 3, 2))
  visible = np.array([[1, 1, 1], [1, 0, 1], [0, 1, 1]], np.float32)
  boxes = np.array([[0, 0, 40, 30], [5, 5, 20, 20], [10, 0, 30, 50]], np.float64)
  # COCO results hold 3 decimals (coco_eval.results): start from such values.
  pred = np.round(true[[0, 1, 2, 0]] + rng.normal(0, 2, (4, 3, 2)), 3)
  scores = np.array([0.9, 0.8, 0.7, 0.6])
  truth = coco_eval.ground_truth_from_examples([1] * 3, boxes, true, visible, ["a", "b", "c"])
  coco = COCO()
  coco.dataset = truth
  with contextlib.redirect_stdout(io.StringIO()):
    coco.createIndex()
    evaluation = COCOeval(coco, coco.loadRes(coco_eval.results([1] * 4, pred, scores, 1)),
                          "keypoints")
  evaluation.params.kpt_oks_sigmas = SIGMAS
  evaluation._prepare()
  reference = evaluation.computeOks(1, 1)  # [detections by score, labels]
  ours = poses.label_oks(pred, true, visible, boxes[:, 2] * boxes[:, 3], SIGMAS)
  np.testing.assert_allclose(ours, reference, rtol=1e-6)


def test_oks_nms_keeps_the_best_of_each_overlapping_group():
  base = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]])
  candidates = np.stack([base, base + 0.5, base + 100, base + 100.3, base + 8.0])
  likelihood = np.ones((5, 3))
  scores = np.array([0.5, 0.9, 0.4, 0.3, 0.8])
  kept = poses.oks_nms(candidates, likelihood, scores, SIGMAS * 10, threshold=0.9)
  # 1 removes 0 (0.5 px apart); 2 removes 3; 4, 7.5 px off, has OKS under 0.9 with 1.
  oks_4 = poses.oks(base + 0.5, np.ones(3), 400.0, (base + 8.0)[None], np.ones((1, 3)),
                    [400.0], SIGMAS * 10)
  assert oks_4[0] <= 0.9
  np.testing.assert_array_equal(kept, [1, 4, 2])


def test_select_thresholds_scores_then_removes_duplicates():
  base = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]])
  keypoints = np.stack([base, base + 0.2, base + 60])
  likelihood = np.array([[0.9] * 3, [0.8] * 3, [0.9] * 3])
  selection = poses.Selection(score_threshold=0.3, nms_threshold=0.9, keypoint_threshold=0.2,
                              sigmas=tuple(SIGMAS))
  kept, scores = poses.select(selection, keypoints, likelihood, np.array([0.6, 0.9, 0.1]))
  np.testing.assert_allclose(scores, [0.54, 0.72, 0.09])
  np.testing.assert_array_equal(kept, [1])  # 0 duplicates 1; 2 scores under 0.3


def test_match_labels_counts_found_missed_duplicates_false_positives():
  true = np.array([[[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]]]) + np.array([[[0, 0]], [[100, 0]],
                                                                        [[0, 100]]])
  visible = np.array([[1, 1, 1], [1, 1, 1], [0, 0, 0]])  # the third is not labelled
  area = np.full(3, 400.0)
  pred = np.stack([true[0] + 0.5, true[0] + 1.0, true[2], true[1] + 200])
  result = poses.match_labels(pred, np.array([0.9, 0.8, 0.7, 0.6]), true, visible, area,
                              SIGMAS * 10)
  assert result["pairs"] == [(0, 0)]
  assert result["duplicates"] == 1  # the second guess at label 0
  assert result["false_positives"] == 2  # on the unlabelled instance, and far from any
  assert result["missed"] == 1  # label 1


def test_box_iou_by_hand():
  boxes = np.array([[0.0, 0.0, 10.0, 10.0]])
  others = np.array([[5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0], [2.0, 2.0, 4.0, 4.0]])
  np.testing.assert_allclose(poses.box_iou(boxes, others), [[50 / 150, 0.0, 4 / 100]])


def test_tracks_follow_instances_and_end_after_max_age():
  a = np.array([0.0, 0.0, 10.0, 10.0])
  b = a + 100
  track = lambda tracks, frame, boxes: poses.track(tracks, frame, np.array(boxes), min_iou=0.3,
                                                   max_age=2)
  tracks, ids = track(poses.Tracks(), 0, [a, b])
  assert ids == [1, 2]
  tracks, ids = track(tracks, 1, [b + 2, a + 2])  # listed the other way round, moved 2 px
  assert ids == [2, 1]
  tracks, ids = track(tracks, 2, [b + 4])  # a is not seen
  assert ids == [2]
  tracks, ids = track(tracks, 3, [a + 4, b + 6])  # a back within max_age frames
  assert ids == [1, 2]
  tracks, ids = track(tracks, 4, [a + 8, b + 6])  # a moved too far: IoU 36 / 164 < 0.3
  assert ids == [3, 2]
  tracks, ids = track(tracks, 8, [a + 8, b + 6])  # both gone longer than max_age
  assert ids == [4, 5]
  assert tracks.next_id == 6 and {t.id for t in tracks.live} == {4, 5}
