import numpy as np
import tensorflow_datasets as tfds

from kp_jax.data import faces, synthetic


def test_render_is_deterministic_and_well_formed():
  a = faces.render_example(np.random.default_rng([0, 1, 2]), 96)
  b = faces.render_example(np.random.default_rng([0, 1, 2]), 96)
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])
  assert a["image"].shape == (96, 96, 1) and a["image"].dtype == np.uint8
  assert a["keypoints"].shape == (15, 2) and a["visible"].shape == (15,)
  # The normaliser is the inter-ocular distance.
  np.testing.assert_allclose(a["norm"], np.linalg.norm(a["keypoints"][0] - a["keypoints"][1]),
                             rtol=1e-6)


def test_examples_vary_and_some_keypoints_are_hidden():
  examples = [faces.render_example(np.random.default_rng([0, 0, i]), 96)
              for i in range(150)]
  norms = np.array([e["norm"] for e in examples])
  # Scale 0.7-1.3 around an inter-ocular distance of 0.3 * 96 = 28.8 px.
  assert norms.min() >= 0.7 * 28.8 - 1e-3 and norms.max() <= 1.3 * 28.8 + 1e-3
  assert norms.max() / norms.min() > 1.5
  eyes = np.array([e["keypoints"][0] - e["keypoints"][1] for e in examples])
  angles = np.degrees(np.arctan2(eyes[:, 1], eyes[:, 0]))
  assert np.abs(angles).max() > 20 and np.abs(angles).max() <= 30 + 1e-3
  hidden = 1 - np.mean([e["visible"].mean() for e in examples])
  assert 0.01 < hidden < 0.2  # occlusion and the image border hide some keypoints
  inside = np.all([(e["keypoints"][e["visible"] > 0] >= -0.5).all() for e in examples])
  assert inside


def test_clean_examples_have_no_nuisances():
  for i in range(20):
    e = faces.render_example(np.random.default_rng([7, i]), 96, clean=True)
    inside = np.all((e["keypoints"] >= -0.5) & (e["keypoints"] <= 95.5), axis=1)
    np.testing.assert_array_equal(e["visible"], inside)  # no occluders: only the border hides
    # No clutter, brightness change, blur or noise: the background stays exactly black.
    corners = e["image"][[0, 0, -1, -1], [0, -1, 0, -1], 0]
    assert (corners == 0).sum() >= 3  # a face may reach one corner at most


def test_builder_is_deterministic_across_data_dirs(tmp_path):
  fields = dict(image_size=24, num_train=6, num_validation=3, num_test=2, seed=5)
  splits = []
  for name in ("a", "b"):
    built = synthetic.builder(data_dir=str(tmp_path / name), **fields)
    assert built.info.splits["validation"].num_examples == 3
    splits.append(list(tfds.as_numpy(built.as_dataset(split="train", shuffle_files=False))))
  for x, y in zip(*splits):
    for key in ("image", "keypoints", "visible", "norm"):
      np.testing.assert_array_equal(x[key], y[key])
  # And equal to rendering directly, in the builder's order (by index).
  direct = sorted((faces.render_example(np.random.default_rng([5, 0, i]), 24)
                   for i in range(6)), key=lambda e: e["norm"])
  stored = sorted(splits[0], key=lambda e: e["norm"])
  for d, s in zip(direct, stored):
    np.testing.assert_array_equal(d["image"], s["image"])
