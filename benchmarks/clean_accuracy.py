"""Localisation error of a trained run on clean synthetic faces (no clutter, occluders,
contrast change, blur or noise; random face, pose and shades as in training).

  python benchmarks/clean_accuracy.py workdirs/default [num_images]

Prints the median, mean and 90th percentile of the per-keypoint error in pixels over the
visible keypoints of `num_images` (default 500) faces rendered from seeds no split uses, and
their NME.
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root
from kp_jax import predict  # noqa: E402
from kp_jax.data import faces, pixels  # noqa: E402
from kp_jax.data.keypoints import FACE15  # noqa: E402

SEED = 20261124  # distinct from the generator's (seed, split, index) streams


def main(workdir: str, num_images: int = 500):
  predictor = predict.Predictor(workdir)
  size = predictor.image_shape[0]
  mean, std = pixels.normalisation(predictor.config.data, predictor.image_shape[2])
  examples = [faces.render_example(np.random.default_rng([SEED, i]), size, clean=True)
              for i in range(num_images)]
  stack = lambda key: np.stack([e[key] for e in examples])
  inputs = (stack("image").astype(np.float32) / 255 - mean) / std
  points = np.concatenate([predictor.on_inputs(inputs[i:i + 250])[0]
                           for i in range(0, num_images, 250)])
  columns = [FACE15.index(name) for name in predictor.names]  # the run's keypoint subset
  truth, visible = stack("keypoints")[:, columns], stack("visible")[:, columns] > 0
  error = np.linalg.norm(points - truth, axis=-1)
  per_keypoint = error[visible]
  nme = np.mean([e[v].mean() / n for e, v, n in zip(error, visible, stack("norm"))])
  print(f"clean {size}x{size} faces: {num_images} images, {per_keypoint.size} visible keypoints")
  print(f"error px: median {np.median(per_keypoint):.3f}, mean {per_keypoint.mean():.3f}, "
        f"90th percentile {np.percentile(per_keypoint, 90):.3f}; NME {nme:.4f}")


if __name__ == "__main__":
  main(sys.argv[1], *(int(a) for a in sys.argv[2:]))
