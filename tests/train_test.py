import functools
import itertools
import json
import os
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest
from flax import traverse_util

from conftest import NUM_DEVICES, relative_difference, tiny_config
from kp_jax import checkpoint, evaluation, metrics, pretrained, runs, steps, train
from kp_jax.data import pipeline, pixels
from kp_jax.models import create_model


def model_and_head(config, mode="jit"):
  return create_model(config.model, 15, (32, 32),
                      axis_name=steps.AXIS_NAME if mode == "pmap" else None)


def image_stats(config):
  return pixels.normalisation(config.data, 1)  # the built-in faces are grey


def initial_state(config):
  source = pipeline.get_source(config.data)
  model, _ = model_and_head(config)
  state = steps.create_train_state(config, model, (32, 32, 1), jax.random.key(0))
  return jax.device_get(state), source  # on the host: the donating steps consume device buffers


def final_params(config, workdir):
  template, _ = initial_state(config)
  manager = checkpoint.create_manager(os.path.join(workdir, "checkpoints"), 1, 1)
  step = manager.latest_step()
  restored, meta = checkpoint.restore(manager, step, steps.checkpointable(template))
  manager.close()
  return step, restored["params"], meta


def test_jit_and_pmap_match_a_single_device_run(config):
  state, source = initial_state(config)
  batches = list(itertools.islice(
      pipeline.train_iterator(config, source, start_step=0, local_devices=NUM_DEVICES), 3))
  _, head = model_and_head(config)
  single = jax.jit(functools.partial(steps.train_step, head=head, ema_decay=0.5,
                                     image_stats=image_stats(config)))
  results = {}
  for mode in ("single", "jit", "pmap"):
    if mode == "single":  # the whole global batch on one device, no collectives
      s, losses = state, []
      for b in batches:
        s, m = single(s, b)
        losses.append(float(m["loss"]))
      results[mode] = (losses, jax.device_get(steps.checkpointable(s)))
      continue
    model, head = model_and_head(config, mode)  # under pmap, BatchNorm syncs over AXIS_NAME
    parallel = steps.make_parallel(mode, head, ema_decay=0.5, image_stats=image_stats(config))
    s, losses = parallel.put_state(state.replace(apply_fn=model.apply)), []
    for b in batches:
      s, m = parallel.train_step(s, parallel.put_batch(b))
      losses.append(float(parallel.first(m)["loss"]))
    results[mode] = (losses, parallel.get_state(steps.checkpointable(s)))
  ref_losses, ref_state = results["single"]
  assert ref_state["batch_stats"]  # the BatchNorm statistics are compared too
  for mode in ("jit", "pmap"):
    losses, state_after = results[mode]
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    # The layouts differ only in the order of the cross-device sums (gradient and loss
    # means, BatchNorm statistics): a few float32 ulp per step, which RMSprop can amplify
    # elementwise for near-zero gradients, so compare each part of the state as a whole
    # (relative L2). Measured after 3 steps: 1e-9 to 3e-8 (on an AVX-512 Intel Xeon); a
    # missing synchronisation (BatchNorm statistics per device) fails the loss check at once.
    for key in ("params", "ema_params", "batch_stats", "opt_state"):
      assert relative_difference(ref_state[key], state_after[key]) < 1e-5, (mode, key)
    assert int(state_after["step"]) == int(ref_state["step"])
  assert ref_losses[-1] != ref_losses[0]


def test_cpu_kernels_and_xla_layers_train_alike_sharded_over_devices(config):
  # A jit step over the 4 simulated devices with each form of the layers, from one state.
  config.model.backbone = {"name": "resnet", "stage_sizes": (1, 1), "width": 8,
                           "output_stride": 8, "small_stem": False}
  state, source = initial_state(config)
  batches = list(itertools.islice(
      pipeline.train_iterator(config, source, start_step=0, local_devices=NUM_DEVICES), 2))
  results = {}
  for kernels in ("cpu", "xla"):
    config.model.kernels = kernels
    model, head = model_and_head(config)
    parallel = steps.make_parallel("jit", head, image_stats=image_stats(config))
    s, losses = parallel.put_state(state.replace(apply_fn=model.apply)), []
    for b in batches:
      s, m = parallel.train_step(s, parallel.put_batch(b))
      losses.append(float(m["loss"]))
    results[kernels] = (losses, parallel.get_state(steps.checkpointable(s)))
  np.testing.assert_allclose(results["cpu"][0], results["xla"][0], rtol=1e-5)
  for key in ("params", "batch_stats", "opt_state"):
    assert relative_difference(results["cpu"][1][key], results["xla"][1][key]) < 1e-5, key


@pytest.mark.parametrize("mode", ["jit", "pmap"])
def test_collective_steps_run_one_at_a_time(config, mode):
  # Two steps with collectives in flight over the 4 CPU devices can deadlock XLA:CPU under
  # load (steps.one_in_flight; benchmarks/cpu_collectives.py reproduces it): each step must
  # return with its outputs computed.
  state, source = initial_state(config)
  model, head = model_and_head(config, mode)
  parallel = steps.make_parallel(mode, head, image_stats=image_stats(config))
  batch = next(pipeline.train_iterator(config, source, start_step=0, local_devices=NUM_DEVICES))
  s = parallel.put_state(state.replace(apply_fn=model.apply))
  for _ in range(3):
    s, m = parallel.train_step(s, parallel.put_batch(batch))
    assert all(x.is_ready() for x in jax.tree.leaves((s, m)))
  mean_shape = pipeline.training_mean_shape(config.data, source)
  eval_batch = next(pipeline.eval_iterator(config, source, "validation",
                                           local_devices=NUM_DEVICES))
  out = parallel.eval_step(s, parallel.put_batch(pipeline.device_batch(eval_batch)), mean_shape)
  assert all(x.is_ready() for x in jax.tree.leaves(out))


@pytest.mark.parametrize("mode", ["jit", "pmap"])
def test_evaluation_counts_each_example_once(config, mode):
  state, source = initial_state(config)
  model, head = model_and_head(config, mode)
  parallel = steps.make_parallel(mode, head, image_stats=image_stats(config))
  mean_shape = pipeline.training_mean_shape(config.data, source)
  got, per_keypoint = evaluation.evaluate_split(parallel, parallel.put_state(state), config,
                                                source, "validation", mean_shape)
  assert got["num_examples"] == 21  # padded to 24, counted 21
  # Reference: the whole split in one unpadded batch on the host.
  examples = list(source.load("validation", 0, 1).as_numpy_iterator())
  stack = lambda key: np.stack([e[key] for e in examples])
  images = (stack("image").astype(np.float32) / 255 - 0.5) / 0.25
  pred, _ = steps.predict(state.apply_fn, steps.eval_variables(state), images, head=head)
  want = metrics.summarize(metrics.metric_sums(
      np.asarray(pred), stack("keypoints"), stack("visible"), stack("norm")))
  for name, value in want.items():
    assert got[name] == pytest.approx(value, rel=1e-4), name
  want_keypoints = metrics.summarize_keypoints(metrics.keypoint_sums(
      np.asarray(pred), stack("keypoints"), stack("visible"), stack("norm"),
      np.ones(len(examples), np.float32)), source.spec.names)
  for name, values in want_keypoints.items():
    assert per_keypoint[name]["nme"] == pytest.approx(values["nme"], rel=1e-4), name


def test_a_run_writes_its_outputs_and_lowers_the_loss(trained):
  config, workdir, summary = trained
  records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  train_losses = [r["loss"] for r in records if r["split"] == "train"]
  assert [r["step"] for r in records if r["split"] == "train"] == [5, 10, 15, 20]
  assert train_losses[-1] < 0.8 * train_losses[0]
  assert [r["step"] for r in records if r["split"] == "validation"] == [10, 20]
  on_disk = json.load(open(os.path.join(workdir, "summary.json")))
  assert on_disk == pytest.approx(summary)
  for key in ("nme", "nme_baseline", "pck@0.05", "pck@0.1", "rmse_input_px", "error_image_px",
              "rmse_image_px", "error_image_px_baseline", "steps",
              "wall_seconds", "train_images_per_sec", "config"):
    assert key in on_disk, key
  assert on_disk["steps"] == 20 and on_disk["num_examples"] == 21
  assert os.path.getsize(os.path.join(workdir, "predictions.png")) > 10_000
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir))
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["10", "20"]


def watch_initialisation(monkeypatch) -> list:
  """Records, for each `steps.create_train_state` call from here on, whether it ran (True) or
  was only traced for the state's shapes (False)."""
  real, ran = steps.create_train_state, []

  def watched(config, model, image_shape, rng):
    ran.append(not isinstance(rng, jax.core.Tracer))
    return real(config, model, image_shape, rng)
  monkeypatch.setattr(steps, "create_train_state", watched)
  return ran


def test_a_restored_run_is_not_initialised(trained, monkeypatch):
  """Prediction, evaluation and export restore into the state's shapes: a large network's
  initialisers compile for long (benchmarks/compile_time.py --state)."""
  config, workdir, _ = trained
  step, saved, _ = final_params(config, workdir)
  ran = watch_initialisation(monkeypatch)
  run = runs.load_run(workdir, step=step)
  assert ran == [False]
  assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(run.state))  # on device
  for a, b in zip(jax.tree.leaves(run.state.params), jax.tree.leaves(saved), strict=True):
    np.testing.assert_array_equal(a, b)


def test_an_interrupted_run_resumes_to_the_same_parameters(trained, data_dir, tmp_path,
                                                           monkeypatch):
  config, reference_workdir, _ = trained
  workdir = str(tmp_path)
  real_save = checkpoint.save

  def save_then_crash(manager, step, *args):
    real_save(manager, step, *args)
    if step == 10:
      raise KeyboardInterrupt("simulated interruption after the step-10 checkpoint")

  monkeypatch.setattr(checkpoint, "save", save_then_crash)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(tiny_config(data_dir), workdir)
  assert final_params(config, workdir)[0] == 10
  monkeypatch.setattr(checkpoint, "save", real_save)
  ran = watch_initialisation(monkeypatch)
  summary = train.train_and_evaluate(tiny_config(data_dir), workdir)  # resumes at step 10
  assert summary["steps"] == 20
  assert ran == [False]  # restored into its shapes, not initialised
  train_steps = [json.loads(l)["step"] for l in open(os.path.join(workdir, "metrics.jsonl"))
                 if '"train"' in l]
  assert train_steps == [5, 10, 15, 20]  # steps 11-20 ran once, after the resume
  _, resumed, meta = final_params(config, workdir)
  _, uninterrupted, _ = final_params(config, reference_workdir)
  for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(uninterrupted)):
    np.testing.assert_array_equal(a, b)
  assert meta.keypoint_names[0] == "left_eye_center"


def test_a_new_run_starts_from_another_runs_weights(trained, data_dir, tmp_path):
  """`--config.model.init_from=WORKDIR` through train.py: at learning rate 0 the new run's last
  checkpoint holds exactly the weights it took from the other run."""
  _, source_workdir, _ = trained
  config = tiny_config(data_dir)
  config.model.init_from = source_workdir
  config.optimizer.learning_rate = 0.0
  config.num_train_steps = 10
  train.train_and_evaluate(config, str(tmp_path))
  _, params, _ = final_params(config, str(tmp_path))
  got = traverse_util.flatten_dict(params)
  want = pretrained.workdir_variables(source_workdir)["params"]
  assert got.keys() == want.keys()
  for path, value in got.items():
    np.testing.assert_array_equal(value, want[path], err_msg=str(path))


def test_the_baseline_is_computed_once_and_stored_with_the_run(config, trained, tmp_path,
                                                               monkeypatch):
  _, trained_workdir, first = trained
  workdir = str(tmp_path / "run")
  shutil.copytree(trained_workdir, workdir)
  _, _, meta = final_params(config, workdir)
  want = pipeline.training_mean_shape(config.data, pipeline.get_source(config.data))
  np.testing.assert_array_equal(np.array(meta.mean_shape, np.float32), want)

  def no_pass(*args):
    raise AssertionError("a pass over the training split")
  monkeypatch.setattr(pipeline, "training_mean_shape", no_pass)  # resume and evaluate reuse it
  config.num_train_steps = 25
  second = train.train_and_evaluate(config, workdir)
  assert second["nme_baseline"] == pytest.approx(first["nme_baseline"], rel=1e-6)
  summary = evaluation.evaluate_run(workdir, "validation")
  assert summary["nme_baseline"] == pytest.approx(first["nme_baseline"], rel=1e-6)


def test_bad_config_values_name_the_key(config, tmp_path):
  for key, value, pattern in [
      ("parallel", "tpu", r"config.parallel='tpu'"),
      ("model.head.decoder", "median", r"config.model.head \('heatmap'\): decoder='median'"),
      ("model.backbone.name", "resnet9", r"config.model.backbone.name='resnet9'.*vgg"),
      ("model.dtype", "float16", r"config.model.dtype='float16'.*bfloat16"),
      ("batch_size", 18, r"config.batch_size=18 must be a positive multiple of the number of "
       r"devices \(4\)"),
      ("eval_batch_size", 0, r"config.eval_batch_size=0 must be a positive multiple"),
      ("optimizer.max_skipped_nonfinite", -1, r"config.optimizer.max_skipped_nonfinite=-1"),
      ("optimizer.layer_decay", 1.5, r"config.optimizer.layer_decay=1.5 must be in \[0, 1\]"),
      ("data.udp", True, r"config.data.udp=True .* set config.model.head.udp=True"),
      ("data.image_mean", (0.4, 0.5, 0.6), r"config.data.image_mean=\(0.4, 0.5, 0.6\): give "
       r"one number, or one per channel of the images \(1\)"),
  ]:
    bad = tiny_config(config.data.data_dir)
    bad.update_from_flattened_dict({key: value})
    with pytest.raises(ValueError, match=pattern):
      train.train_and_evaluate(bad, str(tmp_path / key))
    if key in ("batch_size", "eval_batch_size", "optimizer.max_skipped_nonfinite",
               "optimizer.layer_decay", "data.udp"):
      assert not (tmp_path / key).exists()  # refused before any work
  bad = tiny_config(config.data.data_dir)
  bad.optimizer.name = "sgd"
  with pytest.raises(ValueError, match=r"config.optimizer.name='sgd'.*adam"):
    steps.create_optimizer(bad)
  bad.optimizer.name, bad.optimizer.warmup_steps = "rmsprop", 20
  with pytest.raises(ValueError, match=r"config.optimizer.warmup_steps=20"):
    steps.create_optimizer(bad)
  with pytest.raises(ValueError, match=r"config.shard_state=True needs config.parallel='jit'"):
    steps.make_parallel("pmap", None, shard_state=True, image_stats=(0.0, 1.0))


@pytest.mark.parametrize("override, message", [
    ("--config.batch_sizee=32", 'Did you mean "batch_size"'),
    ("--config.batch_size=many", "--config.batch_size=many: invalid literal for int()"),
])
def test_train_command_rejects_unknown_keys_and_wrong_types(override, message, tmp_path):
  workdir = tmp_path / "run"
  result = subprocess.run(
      [sys.executable, "train.py", "--config=configs/default.py", f"--workdir={workdir}",
       override], capture_output=True, text=True, env={**os.environ, "XLA_FLAGS": ""})
  assert result.returncode != 0 and message in result.stderr
  assert not workdir.exists()  # refused before any work


def test_global_norm_reduces_small_arrays_once_per_shape():
  rng = np.random.default_rng(0)
  shapes = [(8,), (16,), (8,), (3, 3, 4, 8), (64, 64), (8,), (64, 64), (16,)]
  tree = {f"w{i}": rng.normal(size=shape).astype(np.float32) for i, shape in enumerate(shapes)}
  want = np.sqrt(sum(np.sum(np.float64(x) ** 2) for x in tree.values()))
  np.testing.assert_allclose(steps.global_norm(tree), want, rtol=1e-5)  # float32 sums of 8k
  # Below MIN_SHARDED_SIZE (4,096 elements) one reduction for each of the three shapes; the
  # two 64x64 arrays (4,096) one each.
  lowered = jax.jit(steps.global_norm).lower(tree).as_text()
  assert len(re.findall(r"stablehlo\.reduce\b", lowered)) == 3 + 2


def test_weight_decay_skips_biases_and_norms(config):
  params = {"Conv_0": {"kernel": np.ones((3, 3, 1, 2), np.float32),
                       "bias": np.ones(2, np.float32)},
            "BatchNorm_0": {"scale": np.ones(2, np.float32), "bias": np.ones(2, np.float32)}}
  zero_grads = jax.tree.map(np.zeros_like, params)
  for name in ("adamw", "rmsprop"):
    config.optimizer.name, config.optimizer.weight_decay = name, 0.1
    config.optimizer.warmup_steps, config.optimizer.grad_clip_norm = 0, 0.0
    tx = steps.create_optimizer(config)
    updates, _ = tx.update(zero_grads, tx.init(params), params)
    # With zero gradients only the decay moves parameters: kernels shrink, the rest stays.
    assert np.all(updates["Conv_0"]["kernel"] < 0), name
    for leaf in (updates["Conv_0"]["bias"], *updates["BatchNorm_0"].values()):
      np.testing.assert_array_equal(leaf, 0.0)


def test_parameter_ema_follows_its_decay(config):
  state, _ = initial_state(config)
  _, head = model_and_head(config)
  data = next(pipeline.train_iterator(config, pipeline.get_source(config.data), start_step=0,
                                      local_devices=1))
  before = jax.device_get(state.ema_params)
  after, _ = jax.jit(functools.partial(steps.train_step, head=head, ema_decay=0.75,
                                       image_stats=image_stats(config)))(state, data)
  # ema' = 0.75 * ema + 0.25 * params'
  jax.tree.map(lambda e0, e1, p1: np.testing.assert_allclose(e1, 0.75 * e0 + 0.25 * p1,
                                                             rtol=1e-6, atol=1e-7),
               before, jax.device_get(after.ema_params), jax.device_get(after.params))


def test_the_step_normalises_pixels_as_the_host_did(config):
  """Batches carry uint8 pixels and the step makes the network's input: the same update as a
  batch normalised beforehand, (x / 255 - mean) / std in float64, given to a step that
  normalises by mean 0 and std 1 (which leaves float inputs as they are)."""
  config.data.image_mean, config.data.image_std = (0.4,), (0.3,)
  state, source = initial_state(config)
  _, head = model_and_head(config)
  batch = next(pipeline.train_iterator(config, source, start_step=0, local_devices=1))
  assert batch["image"].dtype == np.uint8
  normalised = {**batch, "image": ((batch["image"] / 255.0 - 0.4) / 0.3).astype(np.float32)}
  step = lambda stats: jax.jit(functools.partial(steps.train_step, head=head,
                                                 image_stats=stats))
  pixels_in, pixels_metrics = step(image_stats(config))(state, batch)
  floats_in, floats_metrics = step((0.0, 1.0))(state, normalised)
  unnormalised, _ = step((0.0, 1.0))(state, batch)  # the pixels / 255 alone
  # Inputs 1e-7 apart (float32 rounding) through one step: the loss and the gradients'
  # statistics (the learning rate is 0 at step 0) to 1e-5. The first BatchNorm undoes most of
  # an affine change of the input, yet the unnormalised pixels' gradients differ by ~1e-3.
  assert float(pixels_metrics["loss"]) == pytest.approx(float(floats_metrics["loss"]), rel=1e-5)
  gradients = lambda state: jax.device_get(state.opt_state)
  assert relative_difference(gradients(pixels_in), gradients(floats_in)) < 1e-5
  assert relative_difference(gradients(pixels_in), gradients(unnormalised)) > 1e-4


def test_step_schedule_is_mmposes_multistep_after_a_linear_warmup(config):
  config.num_train_steps, config.optimizer.learning_rate = 210, 5e-4
  config.optimizer.warmup_steps, config.optimizer.schedule = 10, "step"
  schedule = steps.learning_rate_schedule(config)
  # Linear from 0 over the warmup, the peak until step 170, a tenth until 200, then a hundredth.
  want = {0: 0.0, 5: 2.5e-4, 10: 5e-4, 169: 5e-4, 170: 5e-5, 199: 5e-5, 200: 5e-6, 209: 5e-6}
  for step, rate in want.items():
    assert float(schedule(step)) == pytest.approx(rate, rel=1e-6), step
  config.optimizer.schedule = "linear"
  with pytest.raises(ValueError, match=r"config.optimizer.schedule='linear'"):
    steps.learning_rate_schedule(config)


def parameter_bytes_per_device(params) -> dict:
  per_device = {}
  for leaf in jax.tree.leaves(params):
    for shard in leaf.addressable_shards:
      per_device[shard.device.id] = per_device.get(shard.device.id, 0) + shard.data.nbytes
  return per_device


def test_a_sharded_state_steps_as_the_replicated_one(config):
  # FSDP-style over the 4 simulated devices: a small ViT with drop path, AdamW with weight
  # decay, gradient clipping and layer-wise decay (ViTPose's recipe), 3 steps each way.
  config.model.backbone = {"name": "vit", "dim": 64, "depth": 2, "heads": 4, "mlp_dim": 128,
                           "patch_size": 8, "drop_path_rate": 0.3}
  config.model.head = {"name": "heatmap", "stride": 4, "features": 16, "sigma": 1.0}
  opt = config.optimizer
  opt.name, opt.weight_decay, opt.grad_clip_norm, opt.layer_decay = "adamw", 0.1, 1.0, 0.75
  state, source = initial_state(config)
  model, head = model_and_head(config)
  batches = list(itertools.islice(
      pipeline.train_iterator(config, source, start_step=0, local_devices=NUM_DEVICES), 3))
  results = {}
  for shard in (False, True):
    parallel = steps.make_parallel("jit", head, ema_decay=0.5, seed=1, shard_state=shard,
                                   image_stats=image_stats(config))
    s, losses = parallel.put_state(state.replace(apply_fn=model.apply)), []
    for b in batches:
      s, m = parallel.train_step(s, parallel.put_batch(b))
      losses.append(float(m["loss"]))
    results[shard] = (losses, parallel.get_state(steps.checkpointable(s)))
    per_device = parameter_bytes_per_device(s.params)
    total = sum(leaf.nbytes for leaf in jax.tree.leaves(s.params))
    print(f"shard_state={shard}: parameter bytes per device {per_device} of {total}")
    if not shard:
      assert set(per_device.values()) == {total}
      continue
    # Each device holds a quarter of every large array (the layout survives the steps), and
    # whole copies of the small ones only.
    small = sum(leaf.nbytes for leaf in jax.tree.leaves(s.params)
                if leaf.size < steps.MIN_SHARDED_SIZE)
    for leaf in jax.tree.leaves((s.params, s.opt_state, s.ema_params)):
      if leaf.size >= steps.MIN_SHARDED_SIZE:
        assert leaf.addressable_shards[0].data.size == leaf.size // NUM_DEVICES, leaf.shape
    assert set(per_device.values()) == {(total - small) // NUM_DEVICES + small}
    assert (total - small) / total > 0.9  # most of the model is split
  np.testing.assert_allclose(results[True][0], results[False][0], rtol=1e-5)
  for key in ("params", "ema_params", "opt_state"):
    assert relative_difference(results[True][1][key], results[False][1][key]) < 1e-5, key
  assert results[False][0][0] != results[False][0][-1]


def test_layer_decay_scales_each_vit_layer_and_weight_decay_spares_embeddings():
  one = np.ones(2, np.float32)
  updates = {"backbone": {"patch_embed": {"kernel": one}, "pos_embed": one,
                          "layer0": {"fc1": {"kernel": one}}, "layer1": {"ln1": {"scale": one}},
                          "ln": {"scale": one}},
             "head": {"Conv_0": {"kernel": one}}}
  scaled, _ = steps.scale_by_layer_decay(0.5).update(updates, optax.EmptyState())
  # MMPose's ids for a 2-layer encoder: embeddings 0, layer i i + 1, the rest 3; scale
  # 0.5 ** (3 - id).
  expected = {"backbone": {"patch_embed": {"kernel": 0.125}, "pos_embed": 0.125,
                           "layer0": {"fc1": {"kernel": 0.25}}, "layer1": {"ln1": {"scale": 0.5}},
                           "ln": {"scale": 1.0}},
              "head": {"Conv_0": {"kernel": 1.0}}}
  jax.tree.map(lambda got, want: np.testing.assert_array_equal(got, want * one), scaled, expected)
  params = {"pos_embed": np.ones((1, 4, 2)), "Dense_0": {"kernel": np.ones((2, 2)),
                                                         "bias": np.ones(2)}}
  assert steps.decay_mask(params) == {"pos_embed": False,
                                      "Dense_0": {"kernel": True, "bias": False}}
