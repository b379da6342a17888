import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kp_jax import heatmaps, steps
from kp_jax.models import create_model

HEADS = {
    "regression": {"name": "regression", "hidden": (16,), "pool": "avg", "loss": "wing"},
    "heatmap": {"name": "heatmap", "features": 8, "sigma": 1.5},
    "heatmap_bce": {"name": "heatmap", "features": 8, "sigma": 1.5, "loss": "bce"},
    "integral": {"name": "integral", "features": 8, "loss": "l1"},
}
BACKBONE = {"name": "resnet", "stage_sizes": (1, 1), "width": 8, "output_stride": 8,
            "small_stem": True}


def batch(size=4, k=3):
  rng = np.random.default_rng(0)
  return {"image": jnp.asarray(rng.normal(size=(size, 32, 32, 1)), jnp.float32),
          "keypoints": jnp.asarray(rng.uniform(0, 31, size=(size, k, 2)), jnp.float32),
          "visible": jnp.asarray(rng.integers(0, 2, size=(size, k)), jnp.float32)}


@pytest.mark.parametrize("name", sorted(HEADS))
def test_head_loss_gradients_are_finite_and_reach_the_backbone(name):
  model, head = create_model({"dtype": "float32", "backbone": BACKBONE, "head": HEADS[name]},
                             3, (32, 32))
  data = batch()
  variables = jax.jit(model.init)(jax.random.key(0), data["image"])

  def loss_fn(params):
    outputs, _ = model.apply({**variables, "params": params}, data["image"], train=True,
                             mutable=["batch_stats"])
    return head.compute_loss(outputs, data)

  loss, grads = jax.jit(jax.value_and_grad(loss_fn))(variables["params"])
  assert np.isfinite(loss) and loss > 0
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  stem = grads["backbone"]["Conv_0"]["kernel"]  # the first layer of the backbone
  assert np.abs(stem).max() > 0


def test_heatmap_loss_is_zero_at_the_target_and_decodes_to_the_keypoints():
  _, head = create_model({"dtype": "float32", "backbone": BACKBONE, "head": HEADS["heatmap"]},
                         3, (32, 32))
  data = batch()
  target = heatmaps.gaussian_maps(data["keypoints"], (8, 8), 4, 1.5)
  assert float(head.compute_loss({"maps": target}, data)) == 0.0
  np.testing.assert_allclose(head.decode({"maps": target}), data["keypoints"], atol=0.05)
  # The likelihood is each map's peak: the Gaussian sampled at its nearest map pixel.
  offset = heatmaps.to_map(data["keypoints"], 4)
  nearest = np.exp(-np.sum((offset - np.round(offset)) ** 2, -1) / (2 * 1.5**2))
  np.testing.assert_allclose(head.likelihood({"maps": target}), nearest, rtol=1e-5)
  np.testing.assert_array_equal(head.likelihood({"maps": -target}), 0.0)  # clipped to [0, 1]


def test_bce_heatmap_reads_its_logits_as_the_mse_heatmap_reads_its_maps():
  (_, mse), (_, bce) = (create_model({"dtype": "float32", "backbone": BACKBONE,
                                      "head": HEADS[name]}, 3, (32, 32))
                        for name in ("heatmap", "heatmap_bce"))
  data = batch()
  probabilities = 0.01 + 0.98 * heatmaps.gaussian_maps(data["keypoints"], (8, 8), 4, 1.5)
  as_logits = {"maps": jax.scipy.special.logit(probabilities)}
  np.testing.assert_allclose(bce.decode(as_logits), mse.decode({"maps": probabilities}),
                             atol=1e-3)  # input pixels; DARK's log of a float32 sigmoid
  np.testing.assert_allclose(bce.likelihood(as_logits), mse.likelihood({"maps": probabilities}),
                             rtol=1e-5)
  with pytest.raises(ValueError, match=r"loss='l1': choose one of \['bce', 'mse'\]"):
    create_model({"dtype": "float32", "backbone": BACKBONE,
                  "head": {**HEADS["heatmap"], "loss": "l1"}}, 3, (32, 32))


def test_heatmap_soft_decode_is_the_centroid_of_the_maps_raised_to_its_power():
  """soft_decode, the keypoints that losses on decoded points train: against a NumPy float64
  centroid of random maps within 3 map pixels of their maxima, on Gaussian maps (BCE logits,
  MSE maps, UDP's codec) the keypoints themselves, and finite gradients."""
  rng = np.random.default_rng(3)
  head = create_model({"dtype": "float32", "backbone": BACKBONE, "head": HEADS["heatmap_bce"]},
                      3, (32, 32))[1]
  logits = rng.normal(0.0, 3.0, (2, 8, 8, 3))
  weights = (1.0 / (1.0 + np.exp(-logits))) ** head.soft_decode_power
  peak_y, peak_x = np.unravel_index(logits.reshape(2, 64, 3).argmax(1), (8, 8))  # [B, K] each
  grid = np.arange(8.0)
  weights *= ((np.abs(grid[None, None, :, None] - peak_x[:, None, None]) <= 3)
              & (np.abs(grid[None, :, None, None] - peak_y[:, None, None]) <= 3))
  weights /= weights.sum((1, 2), keepdims=True)
  centroid = np.stack([np.einsum("bhwk,w->bk", weights, grid),
                       np.einsum("bhwk,h->bk", weights, grid)], -1)
  np.testing.assert_allclose(head.soft_decode({"maps": jnp.asarray(logits, jnp.float32)}),
                             (centroid + 0.5) * 4 - 0.5, atol=1e-3)  # float32 softmax

  keypoints = jnp.asarray(rng.uniform(40, 216, (2, 3, 2)), jnp.float32)
  wide = {"dtype": "float32", "backbone": BACKBONE}
  for loss in ("bce", "mse"):
    for udp in (False, True):
      _, head = create_model({**wide, "head": {**HEADS["heatmap"], "loss": loss, "udp": udp}},
                             3, (256, 256))
      maps = (heatmaps.udp_gaussian_maps(keypoints, (256, 256), (64, 64), 1.5) if udp
              else heatmaps.gaussian_maps(keypoints, (64, 64), 4, 1.5))
      maps = 0.01 + 0.98 * maps  # a background the centroid must not be pulled towards
      outputs = {"maps": jax.scipy.special.logit(maps) if loss == "bce" else maps}
      np.testing.assert_allclose(head.soft_decode(outputs), keypoints, atol=0.01,
                                 err_msg=f"{loss}, udp={udp}")

  grad = jax.grad(lambda m: head.soft_decode({"maps": m}).sum())(outputs["maps"])
  assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0


def test_integral_likelihood_is_the_softmax_mass_around_the_peak():
  _, head = create_model({"dtype": "float32", "backbone": BACKBONE, "head": HEADS["integral"]},
                         2, (32, 32))
  logits = np.zeros((1, 8, 8, 2), np.float32)  # keypoint 0: flat; keypoint 1: one sharp peak
  logits[0, 0, 5, 1] = 10.0  # at the border: its 3x3 window holds 6 cells
  got = np.asarray(head.likelihood({"maps": jnp.asarray(logits)}))
  # Flat: the argmax is the first cell, a corner whose window holds 4 of the 64 cells.
  np.testing.assert_allclose(got[0, 0], 4 / 64, rtol=1e-6)
  peak = np.exp(10.0)
  np.testing.assert_allclose(got[0, 1], (peak + 5) / (peak + 63), rtol=1e-6)


def test_flip_test_averages_with_the_mirrored_prediction_of_swapped_keypoints():
  # A stand-in model that predicts the same two points on any image: left (10, 20) and
  # right (30, 22). On the mirror (width 32) left is read from right: (31 - 30, 22) = (1, 22),
  # right from left: (31 - 10, 20) = (21, 20). Averages: (5.5, 21) and (25.5, 21).
  _, head = create_model({"dtype": "float32", "backbone": BACKBONE,
                          "head": {"name": "regression"}}, 2, (32, 32))
  coords = (jnp.array([[[10.0, 20.0], [30.0, 22.0]]]) + 0.5) / 32  # normalised

  def apply_fn(variables, images):
    return {"coords": jnp.broadcast_to(coords, (images.shape[0], 2, 2))}

  got, likelihood = steps.predict(apply_fn, {}, jnp.zeros((1, 32, 32, 1)), head=head,
                                  flip_permutation=np.array([1, 0]))
  np.testing.assert_allclose(got, [[[5.5, 21.0], [25.5, 21.0]]], atol=1e-5)
  np.testing.assert_array_equal(likelihood, [[1.0, 1.0]])  # regression: no confidence


@pytest.mark.parametrize("name", sorted(HEADS))
def test_flip_test_on_a_symmetric_image_gives_mirror_symmetric_keypoints(name):
  # Keypoints 0 and 1 are a left/right pair, 2 lies on the axis of symmetry.
  model, head = create_model({"dtype": "float32", "backbone": BACKBONE, "head": HEADS[name]},
                             3, (32, 32))
  image = batch(1)["image"]
  image = image + image[:, :, ::-1]  # symmetric about the vertical axis
  variables = model.init(jax.random.key(1), image)
  permutation = np.array([1, 0, 2])
  points = steps.predict(model.apply, variables, image, head=head,
                         flip_permutation=permutation)[0][0]
  mirrored = points[permutation].at[:, 0].set(31 - points[permutation][:, 0])
  np.testing.assert_allclose(mirrored, points, atol=1e-4)


@pytest.mark.parametrize("name", sorted(HEADS))
def test_bfloat16_compute_matches_float32_within_a_few_percent(name):
  """bf16 keeps 8 bits of mantissa (0.4% per rounding, compounding through the layers): the loss
  must agree within 2% and the gradient within 10% (relative norm of the difference; 5.8% was
  measured for the integral head), with float32 parameters and gradients either way."""
  data = batch(8)
  results = {}
  for dtype in ("float32", "bfloat16"):
    model, head = create_model({"dtype": dtype, "backbone": BACKBONE, "head": HEADS[name]},
                               3, (32, 32))
    variables = jax.jit(create_model(
        {"dtype": "float32", "backbone": BACKBONE, "head": HEADS[name]}, 3, (32, 32))[0].init)(
            jax.random.key(0), data["image"])

    def loss_fn(params):
      outputs, _ = model.apply({**variables, "params": params}, data["image"], train=True,
                               mutable=["batch_stats"])
      return head.compute_loss(outputs, data)

    loss, grads = jax.jit(jax.value_and_grad(loss_fn))(variables["params"])
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))
    results[dtype] = loss, jnp.concatenate([g.ravel() for g in jax.tree.leaves(grads)])
  (loss32, grad32), (loss16, grad16) = results["float32"], results["bfloat16"]
  assert float(loss16) == pytest.approx(float(loss32), rel=0.02)
  assert float(jnp.linalg.norm(grad16 - grad32) / jnp.linalg.norm(grad32)) < 0.10


def test_unlabelled_keypoints_can_train_towards_empty_maps():
  config = {"dtype": "float32", "backbone": BACKBONE, "head": HEADS["heatmap"]}
  _, ignore = create_model(config, 3, (32, 32))
  _, absent = create_model({**config, "head": {**HEADS["heatmap"], "unlabelled_as_absent": True}},
                           3, (32, 32))
  data = batch()
  target = heatmaps.gaussian_maps(data["keypoints"], (8, 8), 4, 1.5)
  maps = target + 0.5  # off everywhere by 0.5
  visible = np.asarray(data["visible"])
  assert float(ignore.compute_loss({"maps": maps}, data)) == pytest.approx(
      0.25 * visible.mean(), rel=1e-6)
  # Labelled maps: 0.5 off everywhere; unlabelled ones are compared with an empty map.
  want = np.where(visible[:, None, None, :] > 0, 0.25, np.asarray(maps) ** 2).mean()
  assert float(absent.compute_loss({"maps": maps}, data)) == pytest.approx(want, rel=1e-5)
  # The same with binary cross-entropy: an unlabelled keypoint's map against an empty one.
  _, absent_bce = create_model(
      {**config, "head": {**HEADS["heatmap_bce"], "unlabelled_as_absent": True}}, 3, (32, 32))
  p = 1 / (1 + np.exp(-np.asarray(maps, np.float64)))
  t = np.asarray(target, np.float64) * visible[:, None, None, :]
  want = np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p)))
  assert float(absent_bce.compute_loss({"maps": maps}, data)) == pytest.approx(want, rel=1e-5)
