"""Each TFDS landmark adapter on `tfds.testing.mock_data` (random examples with the real
features), through the whole pipeline."""

import io

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from configs import aflw2k3d, celeb_a, the300w_lp
from kp_jax import train
from kp_jax.data import pipeline
from kp_jax.data.tfds_landmarks import CELEB_A_LANDMARKS

CONFIGS = {"celeb_a": celeb_a, "aflw2k3d": aflw2k3d, "the300w_lp": the300w_lp}


def expected_keypoints(name, raw):
  """The dataset's landmarks in pixels, written from the TFDS feature docs."""
  if name == "celeb_a":
    return np.array([[raw["landmarks"][f"{n}_x"], raw["landmarks"][f"{n}_y"]]
                     for n in CELEB_A_LANDMARKS], np.float32)
  key = "landmarks_68_3d_xy_normalized" if name == "aflw2k3d" else "landmarks_3d"
  return raw[key] * 450.0  # stored divided by the 450-pixel image size


def small(config, tmp_path):
  config.data.data_dir = str(tmp_path)
  config.data.input_size = (32, 32)
  config.data.shuffle_buffer = 16
  config.model.backbone = {"name": "resnet", "stage_sizes": (1, 1), "width": 8,
                           "output_stride": 8, "small_stem": True}
  config.model.head = {"name": "integral", "stride": 4, "features": 8}
  config.batch_size, config.eval_batch_size = 8, 8
  config.num_train_steps, config.optimizer.warmup_steps = 2, 1
  config.log_every_steps = config.eval_every_steps = config.checkpoint_every_steps = 2
  return config


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_adapter_shapes_and_values(name, tmp_path):
  config = small(CONFIGS[name].get_config(), tmp_path)
  with tfds.testing.mock_data(num_examples=12):
    source = pipeline.get_source(config.data)
    raw = list(tfds.builder(name).as_dataset(
        split="train", decoders={"image": tfds.decode.SkipDecoding()}).as_numpy_iterator())
    examples = list(source.load("train", 0, 1).as_numpy_iterator())
    k = source.spec.num_keypoints
    assert k == (5 if name == "celeb_a" else 68)
    assert len(examples) == len(raw) == source.split_sizes["train"]
    for index, (example, features) in enumerate(zip(examples, raw)):
      # The stored JPEG decoded as PIL (and MMPose's OpenCV) decodes it: the accurate IDCT.
      features["image"] = np.asarray(Image.open(io.BytesIO(features["image"])).convert("RGB"))
      np.testing.assert_array_equal(example["image"], features["image"])
      want = expected_keypoints(name, features)
      np.testing.assert_allclose(example["keypoints"], want, rtol=1e-6)
      height, width = features["image"].shape[:2]
      inside = np.all((want >= -0.5) & (want <= np.array([width, height]) - 0.5), 1)
      np.testing.assert_array_equal(example["visible"], inside.astype(np.float32))
      assert example["image_id"] == index
      if name == "celeb_a":  # inter-ocular distance; the box is the whole image
        assert example["norm"] == pytest.approx(np.hypot(*(want[0] - want[1])), rel=1e-5)
        np.testing.assert_array_equal(example["box"], [0, 0, width, height])
      else:  # the box around the visible landmarks' pixels, and its size
        seen = want[inside]
        low, high = seen.min(0), seen.max(0)
        np.testing.assert_allclose(example["box"], [*(low + 0.5), *(high - low + 1)], rtol=1e-5)
        assert example["norm"] == pytest.approx(np.sqrt(np.prod(high - low + 1)), rel=1e-5)

    train_batch = next(pipeline.train_iterator(config, source, start_step=0, local_devices=1))
    assert train_batch["image"].shape == (8, 32, 32, 3)
    assert train_batch["keypoints"].shape == (8, k, 2)
    eval_batch = next(pipeline.eval_iterator(config, source, "validation", local_devices=1))
    assert eval_batch["matrix"].shape == (8, 3, 3)


def test_a_run_trains_on_mocked_celeb_a(tmp_path):
  config = small(celeb_a.get_config(), tmp_path)
  with tfds.testing.mock_data(num_examples=16):
    summary = train.train_and_evaluate(config, str(tmp_path / "run"))
  assert summary["steps"] == 2 and np.isfinite(summary["nme"])
