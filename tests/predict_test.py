import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image

from kp_jax import predict
from kp_jax.data import faces

from train_test import trained  # noqa: F401  (the shared trained run)


def test_rescale_maps_pixel_centres_between_sizes():
  points = np.array([[0.0, 0.0], [31.0, 15.0]])
  back = predict.rescale(predict.rescale(points, (16, 32), (48, 96)), (48, 96), (16, 32))
  np.testing.assert_allclose(back, points)
  # The image's corners (pixel edges) map to corners: -0.5 stays -0.5, 31.5 becomes 95.5.
  np.testing.assert_allclose(predict.rescale(np.array([[-0.5, 31.5]]), (32, 32), (96, 96)),
                             [[-0.5, 95.5]])


def test_predict_command_on_png_files(trained, tmp_path):  # noqa: F811
  _, workdir, _ = trained
  paths = []
  for i, (height, width) in enumerate([(32, 32), (80, 60)]):
    image = faces.render_example(np.random.default_rng([9, i]), 32)["image"][..., 0]
    path = str(tmp_path / f"face{i}.png")
    Image.fromarray(image).resize((width, height)).save(path)
    paths.append((path, height, width))
  out = str(tmp_path / "out")
  subprocess.run([sys.executable, "-m", "kp_jax.predict", f"--workdir={workdir}",
                  f"--output_dir={out}", *[p for p, _, _ in paths]],
                 check=True, capture_output=True, env={**os.environ, "XLA_FLAGS": ""})
  results = json.load(open(os.path.join(out, "keypoints.json")))
  for path, height, width in paths:
    points = np.array(list(results[path].values()))
    assert list(results[path])[:2] == ["left_eye_center", "right_eye_center"]
    assert points.shape == (15, 2)
    assert np.all(points >= -0.5) and np.all(points[:, 0] <= width - 0.5)
    assert np.all(points[:, 1] <= height - 0.5)
    stem = os.path.splitext(os.path.basename(path))[0]
    assert os.path.getsize(os.path.join(out, f"{stem}_keypoints.png")) > 1000


def test_predict_names_an_unreadable_image(trained, tmp_path):  # noqa: F811
  _, workdir, _ = trained
  bad = tmp_path / "broken.png"
  bad.write_bytes(b"not a png")
  predictor = predict.Predictor(workdir)
  try:
    predictor(str(bad))
  except ValueError as e:
    assert "broken.png" in str(e)
  else:
    raise AssertionError("no error for an unreadable image")
