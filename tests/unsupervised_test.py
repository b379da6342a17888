"""kp_jax/unsupervised.py: the losses on unlabelled clips against hand computations, their
config checks, and a training step that learns from them."""

import jax
import numpy as np
import pytest

from conftest import relative_difference, tiny_config
from kp_jax import steps, unsupervised
from kp_jax.data import pipeline
from kp_jax.models import create_model


@pytest.fixture
def faces(data_dir):
  """(tiny config with an integral head and a clip stream, its synthetic faces source)."""
  config = tiny_config(data_dir)
  config.model.head = {"name": "integral", "stride": 4, "features": 8, "loss": "l1"}
  config.data.unlabelled_batch_size = 2
  config.optimizer.ema_decay = 0.0
  return config, pipeline.get_source(config.data)


def test_subspace_fit_and_distances():
  rng = np.random.default_rng(0)
  # Poses of two keypoints (4 coordinates) on a 2-D plane through (1, 2, 3, 4).
  plane = np.array([[1.0, 0, 0, 0], [0, 1.0, 1.0, 0]]) / np.array([[1.0], [np.sqrt(2)]])
  poses = np.array([1.0, 2, 3, 4]) + rng.normal(0, 5, (50, 2)) @ plane
  fitted = unsupervised.fit_subspace(poses, rank=2)
  assert fitted.epsilon < 1e-9  # every labelled pose lies in it
  np.testing.assert_allclose(fitted.basis @ fitted.basis.T, plane.T @ plane, atol=1e-9)
  off = np.array([[1.0, 2, 3, 4 + 3.0]])  # 3 px off along keypoint 2's y
  distances = np.asarray(unsupervised.point_residuals(off, fitted.mean, fitted.basis))
  np.testing.assert_allclose(distances, [[0.0, 3.0]], atol=1e-6)
  # The loss averages each point's distance beyond the labelled poses' largest (here 0).
  assert float(unsupervised.subspace_loss(off, fitted)) == pytest.approx(1.5, abs=1e-5)
  # Its gradient: half of keypoint 2's unit residual; keypoint 1, on the plane (distance 0),
  # gives 0, not NaN (the norm's gradient at 0).
  grad = jax.grad(unsupervised.subspace_loss)(off.astype(np.float32), fitted)
  np.testing.assert_allclose(grad, [[0.0, 0.0, 0.0, 0.5]], atol=1e-5)
  at_mean = jax.grad(unsupervised.subspace_loss)(fitted.mean[None].astype(np.float32), fitted)
  np.testing.assert_array_equal(at_mean, np.zeros((1, 4)))  # every residual exactly 0
  # `explained`: the fewest components holding that share of the variance.
  assert unsupervised.fit_subspace(poses, explained=0.99).basis.shape == (4, 2)


def test_temporal_loss_by_hand():
  points = np.zeros((1, 3, 2, 2), np.float32)  # one clip, three frames, two keypoints
  points[0, :, 0, 0] = [0, 15, 16]  # keypoint 0 moves 15, then 1 px
  points[0, :, 1, 1] = [0, 0, 30]  # keypoint 1 moves 0, then 30 px
  likelihood = np.array([[[1.0, 1.0], [0.5, 1.0], [1.0, 0.2]]], np.float32)
  loss = unsupervised.temporal_loss(points, likelihood, threshold_px=10.0)
  # Excess moves 5, 0 | 0, 20, weighted by min(likelihood) 0.5, 1 | 0.5, 0.2.
  assert float(loss) == pytest.approx((0.5 * 5 + 0.2 * 20) / (0.5 + 1 + 0.5 + 0.2), rel=1e-6)
  # Its gradient moves each excess move's ends apart by its weight; the still keypoint (a
  # move of 0) gives 0, not NaN (the norm's gradient at 0).
  grad = jax.grad(unsupervised.temporal_loss)(points, likelihood, 10.0)
  want = np.zeros_like(points)
  want[0, 0, 0, 0], want[0, 1, 0, 0] = -0.5, 0.5  # keypoint 0's first move, along x
  want[0, 1, 1, 1], want[0, 2, 1, 1] = -0.2, 0.2  # keypoint 1's second move, along y
  np.testing.assert_allclose(grad, want / 2.2, atol=1e-6)


def test_views_and_source_pixels_through_the_matrices():
  rng = np.random.default_rng(1)
  points = rng.uniform(0, 50, (3, 4, 2)).astype(np.float32)
  def affine(seed):
    a = np.random.default_rng(seed).uniform(-1, 1, (2, 3))
    return np.vstack([np.eye(2, 3) + 0.3 * a, [0, 0, 1]]).astype(np.float32)
  first = np.stack([affine(s) for s in range(3)])
  second = np.stack([affine(s + 10) for s in range(3)])
  homogeneous = np.concatenate([points, np.ones((3, 4, 1), np.float32)], -1)
  in_second = np.einsum("nij,nkj->nki", second @ np.linalg.inv(first), homogeneous)[..., :2]
  np.testing.assert_allclose(unsupervised.between_views(points, first, second), in_second,
                             atol=1e-4)
  source = np.einsum("nij,nkj->nki", np.linalg.inv(first), homogeneous)[..., :2]
  np.testing.assert_allclose(unsupervised.to_source(points, first), source, atol=1e-4)


def switch_on(config, **losses):
  for name, weight in losses.items():
    config.unsupervised[name].weight = weight
  return config


@pytest.mark.parametrize("change, message", [
    (lambda c: c.unsupervised.consistency.update(weight=1.0), r"optimizer.ema_decay"),
    (lambda c: c.data.update(unlabelled_batch_size=0), r"data.unlabelled_batch_size"),
    (lambda c: c.unsupervised.pca.update(keypoints=("nose", "tail")), r"pca.keypoints.*tail"),
    (lambda c: c.unsupervised.multiview.update(weight=1.0), r"data.same_point"),
])
def test_config_errors_name_the_field(change, message, faces):
  config, source = faces
  change(switch_on(config, temporal=1.0, pca=1.0))
  with pytest.raises(ValueError, match=message):
    unsupervised.fit(config, source)


@pytest.mark.parametrize("head, on", [
    (None, unsupervised.LOSSES),
    # A heatmap head's keypoints reach the point losses through its soft_decode: those losses
    # alone must move the weights.
    ({"name": "heatmap", "stride": 4, "features": 8, "loss": "bce"}, unsupervised.POINT_LOSSES),
], ids=["integral", "heatmap_bce"])
def test_a_training_step_learns_from_clips(faces, head, on):
  """The step with the losses `on`: each reported, finite, and the update moves the weights
  differently from the labelled batch alone."""
  config, source = faces
  if head:
    config.model.head = head
  switch_on(config, **dict.fromkeys(on, 1.0))
  names = source.spec.names
  config.data.same_point = ((names[0], names[1]), (names[2], names[3]))
  config.optimizer.ema_decay = 0.5
  for loss in unsupervised.LOSSES:
    config.unsupervised[loss].ramp_steps = 0
  config.unsupervised.consistency.threshold = 0.0  # every teacher keypoint a label
  losses = unsupervised.fit(config, source)
  assert losses.pose.basis.shape[0] == 2 * len(names)
  model, head = create_model(config.model, len(names), (32, 32))
  state = steps.create_train_state(config, model, (32, 32, 1), jax.random.key(0))
  rng = np.random.default_rng(0)
  batch = {"image": rng.normal(size=(4, 32, 32, 1)).astype(np.float32),
           "keypoints": rng.uniform(4, 28, (4, len(names), 2)).astype(np.float32),
           "visible": np.ones((4, len(names)), np.float32), "norm": np.ones(4, np.float32)}
  clip = rng.normal(size=(2, 3, 32, 32, 1)).astype(np.float32)
  matrix = np.broadcast_to(np.eye(3, dtype=np.float32), (2, 3, 3))
  clips = {"unlabelled": clip, "unlabelled_matrix": matrix, "teacher": clip[:, :, :, ::-1],
           "teacher_matrix": np.broadcast_to(np.array(
               [[-1.0, 0, 31], [0, 1, 0], [0, 0, 1]], np.float32), (2, 3, 3))}
  with_clips, metrics = jax.jit(lambda s, b: steps.train_step(
      s, b, head=head, ema_decay=0.5, image_stats=(0.0, 1.0), unsupervised=losses))(
          state, {**batch, **clips})
  alone, _ = jax.jit(lambda s, b: steps.train_step(s, b, head=head, ema_decay=0.5,
                                                   image_stats=(0.0, 1.0)))(state, batch)
  for name in on:
    assert np.isfinite(metrics[f"unsupervised/{name}"]), name
  assert metrics["loss"] > metrics["supervised_loss"]
  # The optimiser's gradient statistics (the learning rate is still 0 at step 0): the clips'
  # losses reach the gradients.
  assert relative_difference(with_clips.opt_state, alone.opt_state) > 1e-3
  # BatchNorm's running statistics come from the labelled frames alone (the clips have a
  # forward pass of their own).
  assert jax.tree.leaves(alone.batch_stats)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               with_clips.batch_stats, alone.batch_stats)
