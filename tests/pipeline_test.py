import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from conftest import NUM_DEVICES
from kp_jax.data import pipeline, pixels
from kp_jax.data.keypoints import FACE5_NAMES


def take(iterator, n):
  return list(itertools.islice(iterator, n))


def test_train_batches_are_global_batch_shaped(config):
  # The pipeline yields the process's rows of the global batch; the device layout places them.
  source = pipeline.get_source(config.data)
  batch = next(pipeline.train_iterator(config, source, start_step=0, local_devices=NUM_DEVICES))
  assert batch["image"].shape == (config.batch_size, 32, 32, 1)
  assert batch["image"].dtype == np.uint8  # pixels: the compiled step normalises them
  assert batch["keypoints"].shape == (config.batch_size, 15, 2)
  assert batch["visible"].shape == (config.batch_size, 15)
  assert batch["norm"].shape == (config.batch_size,)
  halves = [next(pipeline.train_iterator(config, source, start_step=0, local_devices=2,
                                         process_index=i, process_count=2)) for i in range(2)]
  assert halves[0]["image"].shape == (config.batch_size // 2, 32, 32, 1)


def test_starting_at_a_step_continues_the_same_stream(config):
  # 96 examples / 16 a batch = 6 steps an epoch: steps 5..9 cross an epoch boundary.
  source = pipeline.get_source(config.data)
  whole = take(pipeline.train_iterator(config, source, start_step=0, local_devices=1), 10)
  resumed = take(pipeline.train_iterator(config, source, start_step=5, local_devices=1), 5)
  for a, b in zip(whole[5:], resumed):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  assert not np.array_equal(whole[0]["image"], whole[6]["image"])  # epochs are reshuffled


def test_each_epoch_sees_every_example_once(config):
  config.data.augment.scale_range = (1.0, 1.0)  # keep `norm` as each example's fingerprint
  source = pipeline.get_source(config.data)
  raw = sorted(float(ex["norm"]) for ex in source.load("train", 0, 1).as_numpy_iterator())
  for epoch in range(2):
    batches = take(pipeline.train_iterator(config, source, start_step=6 * epoch,
                                           local_devices=1), 6)
    seen = sorted(np.concatenate([b["norm"].ravel() for b in batches]).tolist())
    np.testing.assert_allclose(seen, raw, rtol=1e-6)


def test_process_shards_partition_the_split(config):
  config.data.augment.scale_range = (1.0, 1.0)
  source = pipeline.get_source(config.data)
  shards = [sorted(float(ex["norm"]) for ex in source.load("train", i, 3).as_numpy_iterator())
            for i in range(3)]
  everything = sorted(float(ex["norm"]) for ex in source.load("train", 0, 1).as_numpy_iterator())
  assert sorted(sum(shards, [])) == everything and all(len(s) == 32 for s in shards)


def test_global_batches_do_not_depend_on_the_process_count(config):
  # Two input shards: one process reading both gives the global batches that two processes,
  # each reading its own shard, give when their local batches are put together.
  config.data.input_shards = 2
  source = pipeline.get_source(config.data)
  alone = take(pipeline.train_iterator(config, source, start_step=3, local_devices=2), 4)
  hosts = [take(pipeline.train_iterator(config, source, start_step=3, local_devices=1,
                                        process_index=i, process_count=2), 4) for i in range(2)]
  for step, whole in enumerate(alone):
    for key in whole:
      np.testing.assert_array_equal(
          whole[key], np.concatenate([hosts[0][step][key], hosts[1][step][key]]))


def test_input_shards_must_split_over_processes(config):
  config.data.input_shards = 3
  source = pipeline.get_source(config.data)
  with pytest.raises(ValueError, match=r"config.data.input_shards=3 .* processes \(2\)"):
    next(pipeline.train_iterator(config, source, start_step=0, local_devices=1,
                                 process_index=0, process_count=2))


def test_eval_pads_the_last_batch_and_masks_it(config):
  source = pipeline.get_source(config.data)
  batches = list(pipeline.eval_iterator(config, source, "validation", local_devices=NUM_DEVICES))
  assert len(batches) == 3  # 21 examples in batches of 8
  masks = np.stack([b["mask"] for b in batches])
  assert masks.sum() == 21 and masks[-1].tolist() == [1] * 5 + [0] * 3
  assert batches[-1]["image"].shape == (8, 32, 32, 1)
  assert np.all(batches[-1]["image"][5:] == 0)


def test_processes_run_the_same_number_of_eval_batches(config):
  source = pipeline.get_source(config.data)
  counts, real = [], 0
  for index in range(2):  # 21 examples over 2 processes: 11 and 10
    batches = list(pipeline.eval_iterator(config, source, "validation", local_devices=2,
                                          process_index=index, process_count=2))
    counts.append(len(batches))
    real += sum(b["mask"].sum() for b in batches)
  assert counts == [3, 3] and real == 21


def test_keypoint_subset_selects_and_remaps_flip_pairs(config):
  config.data.keypoints = FACE5_NAMES
  source = pipeline.get_source(config.data)
  assert source.spec.names == FACE5_NAMES
  np.testing.assert_array_equal(source.spec.flip_permutation(), [1, 0, 2, 4, 3])
  # The subset's points are the full source's points at FACE15's indices of those names.
  config.data.keypoints = ()
  full = pipeline.get_source(config.data)
  raw = next(source.load("validation", 0, 1).as_numpy_iterator())
  raw_full = next(full.load("validation", 0, 1).as_numpy_iterator())
  for key in ("keypoints", "visible"):
    np.testing.assert_array_equal(raw[key], raw_full[key][[0, 1, 10, 11, 12]])
  batch = next(pipeline.train_iterator(config, source, start_step=0, local_devices=1))
  assert batch["keypoints"].shape[-2:] == (5, 2)


def test_configuration_errors_name_the_key(config):
  config.data.source = "imagenet"
  with pytest.raises(ValueError, match=r"config.data.source='imagenet'.*synthetic_faces"):
    pipeline.get_source(config.data)
  config.data.source = "synthetic_faces"
  config.data.keypoints = ("left_eye_center", "third_eye")
  with pytest.raises(ValueError, match=r"config.data.keypoints.*third_eye"):
    pipeline.get_source(config.data)
  config.data.keypoints = ()
  config.batch_size = 18
  with pytest.raises(ValueError, match=r"config.batch_size=18 must be a positive multiple of "
                                       r"the number of devices \(4\)"):
    next(pipeline.train_iterator(config, pipeline.get_source(config.data), start_step=0,
                                 local_devices=NUM_DEVICES))


def test_model_input_normalises_pixels_per_channel():
  mean, std = pixels.normalisation(dict(zip(("image_mean", "image_std"),
                                            pixels.MMPOSE_NORMALISATION)), 3)
  image = np.random.default_rng(0).integers(0, 256, (2, 4, 5, 3), dtype=np.uint8)
  want = (image / 255.0 - np.array(pixels.MMPOSE_NORMALISATION[0])) / np.array(
      pixels.MMPOSE_NORMALISATION[1])  # float64
  unit = (image / 255.0).astype(np.float32)  # float images are taken to be in [0, 1]
  for got in (pixels.model_input(image, mean, std), pixels.model_input(jnp.asarray(image),
                                                                        mean, std),
              pixels.model_input(unit, mean, std)):
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-6)  # values up to 2.7: float32 rounding


def test_photometric_augmentation_returns_pixels(config):
  # Colour jitter and blur work on floats in [0, 1]; the batch still carries uint8 pixels.
  source = pipeline.get_source(config.data)
  plain = next(pipeline.train_iterator(config, source, start_step=0, local_devices=1))
  config.data.augment.brightness, config.data.augment.contrast = 0.3, 0.3
  config.data.augment.blur_probability = 1.0
  jittered = next(pipeline.train_iterator(config, source, start_step=0, local_devices=1))
  assert jittered["image"].dtype == np.uint8
  assert jittered["image"].shape == plain["image"].shape
  assert not np.array_equal(jittered["image"], plain["image"])


def test_training_streams_left_open_are_closed_at_exit(config):
  # tf.data's threads outliving the interpreter abort its exit or hang it: what atexit runs
  # closes the streams a script left open.
  source = pipeline.get_source(config.data)
  stream = pipeline.train_iterator(config, source, start_step=0, local_devices=1)
  next(stream)
  pipeline._close_open_iterators()  # noqa: SLF001
  with pytest.raises(StopIteration):
    next(stream)
