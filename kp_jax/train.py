"""Training and evaluation: pure steps compiled with `jax.jit` (over a device mesh) or `jax.pmap`.

`train_and_evaluate(config, workdir)` is the whole run: it resumes from the latest checkpoint in
`workdir/checkpoints`, trains, evaluates, checkpoints, and leaves the outputs described in the
README (metrics.jsonl, summary.json, predictions.png, TensorBoard events).
"""

import dataclasses
import functools
import json
import os
import signal
import threading
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from clu import metric_writers, periodic_actions
from flax import jax_utils
from flax.training import train_state
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from kp_jax import checkpoint, metrics, visualize
from kp_jax.data import pipeline
from kp_jax.models import create_model

AXIS_NAME = "batch"  # the pmap axis over which gradients, BN statistics and metric sums reduce
PARALLEL_MODES = ("auto", "jit", "pmap")


def _rmsprop(lr, c):
  return optax.rmsprop(lr, decay=c.rmsprop_decay, eps=c.eps)


def _adam(lr, c):
  return optax.adam(lr, eps=c.eps)


def _adamw(lr, c):  # decoupled weight decay, on kernels only
  return optax.adamw(lr, eps=c.eps, weight_decay=c.weight_decay, mask=decay_mask)


OPTIMIZERS = {"rmsprop": _rmsprop, "adam": _adam, "adamw": _adamw}


# ---------------------------------------------------------------------------------------------
# State and optimiser.


class TrainState(train_state.TrainState):
  batch_stats: Any  # BatchNorm running statistics ({} without BatchNorm)
  ema_params: Any  # exponential moving average of `params`, which evaluation uses


def decay_mask(params):
  """Weight decay applies to kernels (ndim > 1), not to biases or norm scales and offsets."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def create_optimizer(config) -> optax.GradientTransformation:
  opt = config.optimizer
  if opt.name not in OPTIMIZERS:
    raise ValueError(f"config.optimizer.name={opt.name!r} is not known; "
                     f"choose one of {sorted(OPTIMIZERS)}.")
  if not 0 <= opt.warmup_steps < config.num_train_steps:
    raise ValueError(f"config.optimizer.warmup_steps={opt.warmup_steps} must be in "
                     f"[0, config.num_train_steps={config.num_train_steps}).")
  if not 0 <= opt.ema_decay < 1:
    raise ValueError(f"config.optimizer.ema_decay={opt.ema_decay} must be in [0, 1).")
  schedule = optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=opt.learning_rate, warmup_steps=opt.warmup_steps,
      decay_steps=config.num_train_steps, end_value=opt.learning_rate * opt.final_lr_fraction)
  if opt.max_skipped_nonfinite < 0:
    raise ValueError(f"config.optimizer.max_skipped_nonfinite={opt.max_skipped_nonfinite} must "
                     "be >= 0.")
  steps = []
  if opt.grad_clip_norm:
    steps.append(optax.clip_by_global_norm(opt.grad_clip_norm))
  if opt.weight_decay and opt.name != "adamw":  # L2 regularisation, coupled to the gradient
    steps.append(optax.add_decayed_weights(opt.weight_decay, mask=decay_mask))
  tx = optax.chain(*steps, OPTIMIZERS[opt.name](schedule, opt))
  if opt.max_skipped_nonfinite:  # skip updates with NaN/Inf gradients, counting them
    tx = optax.apply_if_finite(tx, max_consecutive_errors=opt.max_skipped_nonfinite)
  return tx


def create_train_state(config, model, image_shape, rng) -> TrainState:
  variables = jax.jit(model.init)(rng, jnp.zeros((1, *image_shape), jnp.float32))
  return TrainState.create(apply_fn=model.apply, params=variables["params"],
                           batch_stats=variables.get("batch_stats", {}),
                           ema_params=jax.tree.map(jnp.copy, variables["params"]),  # own buffers,
                           tx=create_optimizer(config))  # as steps donate the state


def checkpointable(state: TrainState) -> dict:
  return {"step": state.step, "params": state.params, "opt_state": state.opt_state,
          "batch_stats": state.batch_stats, "ema_params": state.ema_params}


# ---------------------------------------------------------------------------------------------
# Pure steps.


def train_step(state, batch, *, head, ema_decay: float = 0.0, axis_name: str | None = None):
  """One update on `batch`; returns (new state, {loss, l2_grads, l2_params})."""

  def loss_fn(params):
    outputs, updates = state.apply_fn({"params": params, "batch_stats": state.batch_stats},
                                      batch["image"], train=True, mutable=["batch_stats"])
    return head.compute_loss(outputs, batch), updates.get("batch_stats", {})

  (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  if axis_name is not None:  # each replica saw an equal share of the batch
    loss, grads = jax.lax.pmean((loss, grads), axis_name)
  new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  ema = jax.tree.map(lambda e, p: ema_decay * e + (1 - ema_decay) * p,
                     state.ema_params, new_state.params)
  metrics = {"loss": loss, "l2_grads": optax.global_norm(grads),
             "l2_params": optax.global_norm(new_state.params)}
  if isinstance(new_state.opt_state, optax.ApplyIfFiniteState):
    metrics["skipped_updates"] = new_state.opt_state.total_notfinite.astype(jnp.float32)
  return new_state.replace(ema_params=ema), metrics


def predict(apply_fn, variables, images, *, head, flip_permutation=None):
  """Keypoints [B, K, 2] in pixels. With a flip permutation (the dataset's left/right pairs),
  also predicts on the mirrored images and averages (test-time flip)."""
  points = head.decode(apply_fn(variables, images))
  if flip_permutation is None:
    return points
  mirrored = head.decode(apply_fn(variables, images[:, :, ::-1]))[:, flip_permutation]
  width = images.shape[2]
  mirrored = mirrored.at[..., 0].set(width - 1 - mirrored[..., 0])
  return (points + mirrored) / 2


def eval_variables(state):
  return {"params": state.ema_params, "batch_stats": state.batch_stats}


def eval_step(state, batch, mean_shape, *, head, flip_permutation=None,
              axis_name: str | None = None):
  """(metric sums of the model and of the mean-shape baseline, per-keypoint sums, and the
  predictions) on a (masked) batch."""
  pred = predict(state.apply_fn, eval_variables(state), batch["image"], head=head,
                 flip_permutation=flip_permutation)
  baseline = jnp.broadcast_to(mean_shape, pred.shape)
  args = (batch["keypoints"], batch["visible"], batch["norm"], batch["mask"])
  sums = {"model": metrics.metric_sums(pred, *args),
          "baseline": metrics.metric_sums(baseline, *args),
          "per_keypoint": metrics.keypoint_sums(pred, *args),
          "num_examples": batch["mask"].sum()}
  if axis_name is not None:
    sums = jax.lax.psum(sums, axis_name)
  return sums, pred


# ---------------------------------------------------------------------------------------------
# Device layouts.


@dataclasses.dataclass(frozen=True)
class Parallel:
  """Where state and batches live, and the steps compiled for that layout.

  Batches arrive from the pipeline as NumPy [local_devices, per_device, ...].
  """
  mode: str
  train_step: Callable
  eval_step: Callable
  put_state: Callable  # host pytree -> device layout
  get_state: Callable  # device layout -> host NumPy pytree
  put_batch: Callable
  first: Callable  # replicated step outputs -> one copy


def first_replica(tree):
  """This process's first copy of pmapped values (the others' may live on other hosts)."""
  return jax.tree.map(lambda x: x.addressable_data(0).reshape(x.shape[1:]), tree)


def resolve_mode(mode: str) -> str:
  if mode not in PARALLEL_MODES:
    raise ValueError(f"config.parallel={mode!r}: choose one of {PARALLEL_MODES}.")
  if mode == "auto":
    return "pmap" if jax.local_device_count() > 1 else "jit"
  return mode


def make_parallel(mode: str, head, *, ema_decay: float = 0.0, flip_permutation=None) -> Parallel:
  """Steps for `mode` ("jit" or "pmap", as resolved); under pmap the model's BatchNorm must
  name AXIS_NAME."""
  train = functools.partial(train_step, head=head, ema_decay=ema_decay)
  evaluate_batch = functools.partial(eval_step, head=head, flip_permutation=flip_permutation)
  if mode == "pmap":
    return Parallel(
        mode=mode,
        train_step=jax.pmap(functools.partial(train, axis_name=AXIS_NAME),
                            axis_name=AXIS_NAME, donate_argnums=(0,)),
        eval_step=jax.pmap(functools.partial(evaluate_batch, axis_name=AXIS_NAME),
                           axis_name=AXIS_NAME, in_axes=(0, 0, None)),
        put_state=jax_utils.replicate,
        get_state=lambda state: jax.device_get(first_replica(state)),
        put_batch=lambda batch: batch,
        first=first_replica,
    )
  # jit over a 1-D mesh: the batch is split over the `data` axis, the state replicated.
  mesh = Mesh(np.array(jax.devices()), ("data",))
  replicated = NamedSharding(mesh, PartitionSpec())
  batch_sharding = NamedSharding(mesh, PartitionSpec("data"))

  def put_batch(batch):
    return {k: jax.make_array_from_process_local_data(
        batch_sharding, v.reshape(-1, *v.shape[2:])) for k, v in batch.items()}

  return Parallel(
      mode=mode,
      train_step=jax.jit(train, out_shardings=replicated, donate_argnums=(0,)),
      eval_step=jax.jit(evaluate_batch, out_shardings=replicated),
      put_state=lambda state: jax.device_put(state, replicated),
      get_state=lambda state: jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), state),
      put_batch=put_batch,
      first=lambda tree: tree,
  )


# ---------------------------------------------------------------------------------------------
# Evaluation and outputs.


def evaluate(parallel: Parallel, state, config, source, split: str, mean_shape,
             on_predictions: Callable | None = None) -> tuple[dict, dict]:
  """(model and baseline metrics, per-keypoint metrics) over a whole split; every example
  counted exactly once. `on_predictions(pred [B, K, 2], batch)`, single-process only, sees each
  batch's predictions (in model input pixels) with the batch, both flattened to [B, ...]."""
  total = None
  for batch in pipeline.eval_iterator(config, source, split,
                                      local_devices=jax.local_device_count(),
                                      process_index=jax.process_index(),
                                      process_count=jax.process_count()):
    sums, pred = parallel.eval_step(state, parallel.put_batch(pipeline.device_batch(batch)),
                                    mean_shape)
    total = sums if total is None else jax.tree.map(jnp.add, total, sums)
    if on_predictions is not None:  # a host-device sync point
      flat = {k: v.reshape(-1, *v.shape[2:]) for k, v in batch.items()}
      on_predictions(np.asarray(pred).reshape(-1, *pred.shape[-2:]), flat)
  total = jax.device_get(parallel.first(total))  # a host-device sync point
  names = pipeline.keypoint_subset(config.data, source.spec)[0].names
  return ({**metrics.summarize(total["model"]),
           **metrics.summarize(total["baseline"], prefix="baseline_"),
           "num_examples": int(total["num_examples"])},
          metrics.summarize_keypoints(total["per_keypoint"], names))


class MetricsLog:
  """`metrics.jsonl` (one {"step", "split", ...} object a line) plus clu writers."""

  def __init__(self, workdir: str, is_writer: bool):
    self.writer = metric_writers.create_default_writer(workdir, just_logging=not is_writer)
    self.path = os.path.join(workdir, "metrics.jsonl") if is_writer else None

  def write(self, step: int, split: str, values: dict):
    self.writer.write_scalars(step, {f"{split}/{k}": v for k, v in values.items()})
    if self.path:
      with open(self.path, "a") as f:
        f.write(json.dumps({"step": step, "split": split, **values}) + "\n")

  def close(self):
    self.writer.flush()
    self.writer.close()


def _mean_train_metrics(history: list, parallel: Parallel) -> dict:
  """Averages the buffered per-step metrics; pulling them is a host-device sync point."""
  stacked = jax.device_get([parallel.first(m) for m in history])
  return {k: float(np.mean([m[k] for m in stacked])) for k in stacked[0]}


class WaitClock:
  """Wraps the batch iterator, adding up the seconds the loop waits for it. Steps run
  asynchronously, so this is time the devices may sit idle for want of input."""

  def __init__(self, iterator):
    self.iterator, self.seconds = iterator, 0.0

  def __iter__(self):
    return self

  def __next__(self):
    start = time.perf_counter()
    try:
      return next(self.iterator)
    finally:
      self.seconds += time.perf_counter() - start


def _check_finite(history: list, values: dict, first_step: int, last_checkpoint,
                  parallel: Parallel):
  """Raises, naming the first step whose loss or gradient norm is NaN or infinite. Where
  non-finite updates are skipped (their metrics say how many), only the parameters count."""
  watched = ("l2_params",) if "skipped_updates" in values else tuple(values)
  if all(np.isfinite(values[k]) for k in watched):
    return
  for offset, step_metrics in enumerate(jax.device_get([parallel.first(m) for m in history])):
    bad = {k: float(step_metrics[k]) for k in watched if not np.isfinite(step_metrics[k])}
    if bad:
      raise FloatingPointError(
          f"Non-finite training metrics {bad} at step {first_step + offset}; the last good "
          f"checkpoint is step {last_checkpoint}. Check the data of that step, or lower "
          "config.optimizer.learning_rate or set config.optimizer.grad_clip_norm, and run "
          "again (it resumes from that checkpoint).")


class Preemption:
  """Whether to save and stop now: on SIGTERM (how cluster schedulers preempt). A single
  process catches the signal itself; several processes ask Orbax, whose JAX preemption
  service agrees on one step for all of them."""

  def __init__(self, manager):
    self.manager, self.signalled, self.previous = manager, False, None
    if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
      self.previous = signal.signal(signal.SIGTERM, self._catch)

  def _catch(self, signum, frame):
    del signum, frame
    self.signalled = True

  def reached(self, step: int) -> bool:
    if jax.process_count() > 1:
      return self.manager.reached_preemption(step)
    return self.signalled

  def restore(self):
    if self.previous is not None:
      signal.signal(signal.SIGTERM, self.previous)
      self.previous = None


# ---------------------------------------------------------------------------------------------
# The run.


def check_config(config):
  """Config errors that would otherwise surface mid-run, raised before any data or compute."""
  create_optimizer(config)
  resolve_mode(config.parallel)
  for key in ("batch_size", "eval_batch_size"):
    pipeline.check_batch_size(config[key], jax.process_count(), jax.local_device_count(), key)
  pipeline.input_shards(config.data, jax.process_index(), jax.process_count())


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains `config` in `workdir` (resuming if it holds a checkpoint); returns the summary."""
  run_start = time.time()
  check_config(config)
  is_writer = jax.process_index() == 0
  os.makedirs(workdir, exist_ok=True)
  source = pipeline.get_source(config.data)
  spec, _ = pipeline.keypoint_subset(config.data, source.spec)
  image_shape = pipeline.input_shape(config.data, source)
  mode = resolve_mode(config.parallel)
  model, head = create_model(config.model, spec.num_keypoints, image_shape[:2],
                             axis_name=AXIS_NAME if mode == "pmap" else None)
  flip_permutation = np.array(spec.flip_permutation()) if config.flip_test else None
  parallel = make_parallel(mode, head, ema_decay=config.optimizer.ema_decay,
                           flip_permutation=flip_permutation)
  logging.info("Data %s (%s), %d keypoints, images %s; %s on %d devices.", source.name,
               source.split_sizes, spec.num_keypoints, image_shape, parallel.mode,
               jax.device_count())

  state = create_train_state(config, model, image_shape, jax.random.key(config.seed))
  manager = checkpoint.create_manager(os.path.join(workdir, "checkpoints"),
                                      config.keep_last_checkpoints, config.keep_best_checkpoints)
  meta = json.loads(json.dumps({  # as it reads back from JSON, to compare with saved ones
      "config_name": config.name, "source": source.name, "keypoint_names": spec.names,
      "flip_permutation": [int(i) for i in spec.flip_permutation()],
      "image_shape": image_shape, "model": config.model.to_dict()}))
  last_checkpoint = None
  restored = checkpoint.restore_latest(manager, checkpointable(state), meta, is_writer)
  if restored is not None:
    last_checkpoint, restored_state, _ = restored
    state = state.replace(**restored_state)
    logging.info("Resuming from the checkpoint at step %d in %s.", last_checkpoint, workdir)
  start_step = int(state.step)
  if is_writer:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))

  mean_shape = pipeline.training_mean_shape(config.data, source)
  log = MetricsLog(workdir, is_writer)
  train_iter = WaitClock(pipeline.train_iterator(
      config, source, start_step=start_step, local_devices=jax.local_device_count(),
      process_index=jax.process_index(), process_count=jax.process_count()))
  report = periodic_actions.ReportProgress(num_train_steps=config.num_train_steps,
                                           writer=log.writer, every_steps=config.log_every_steps)
  num_steps = config.num_train_steps
  device_state = parallel.put_state(state)
  history, eval_results = [], None
  first_logged_step = start_step + 1
  train_seconds, timed_steps, step_clock = 0.0, 0, None
  input_wait, wait_mark = 0.0, 0.0

  preemption = Preemption(manager)
  for step, batch in zip(range(start_step + 1, num_steps + 1), train_iter):
    is_last_step = step == num_steps
    with jax.profiler.StepTraceAnnotation("train", step_num=step):
      device_state, step_metrics = parallel.train_step(device_state, parallel.put_batch(batch))
    history.append(step_metrics)
    report(step)

    if step % config.log_every_steps == 0 or is_last_step:
      values = _mean_train_metrics(history, parallel)
      _check_finite(history, values, first_logged_step, last_checkpoint, parallel)
      if step_clock is not None:  # the first interval holds compilation: leave it out
        train_seconds += time.time() - step_clock
        timed_steps += len(history)
        input_wait += train_iter.seconds - wait_mark
      wait_mark = train_iter.seconds
      log.write(step, "train", values)
      history, first_logged_step = [], step + 1

    eval_results = None
    if step % config.eval_every_steps == 0 or is_last_step:
      eval_results, _ = evaluate(parallel, device_state, config, source, "validation",
                                 mean_shape)
      log.write(step, "validation", eval_results)

    if step % config.checkpoint_every_steps == 0 or is_last_step:
      checkpoint.save(manager, step, parallel.get_state(checkpointable(device_state)), meta,
                      {"nme": eval_results["nme"]} if eval_results else None)
      last_checkpoint = step
    step_clock = time.time() if step % config.log_every_steps == 0 else step_clock

    if preemption.reached(step):
      if history:  # never save a diverged state
        _check_finite(history, _mean_train_metrics(history, parallel), first_logged_step,
                      last_checkpoint, parallel)
      if last_checkpoint != step:
        checkpoint.save(manager, step, parallel.get_state(checkpointable(device_state)), meta,
                        None)
      logging.warning("Preempted (SIGTERM): saved a checkpoint at step %d in %s; run the same "
                      "command again to resume.", step, workdir)
      log.close()
      manager.close()
      preemption.restore()
      return {"config": config.name, "preempted_at_step": step}
  preemption.restore()

  if eval_results is None:  # resumed a finished run: evaluate what is there
    eval_results, _ = evaluate(parallel, device_state, config, source, "validation", mean_shape)
  host_state = parallel.get_state(device_state)
  summary = {
      "config": config.name, "source": source.name, "split": "validation",
      **{k: v for k, v in eval_results.items() if not k.startswith("baseline_")},
      "nme_baseline": eval_results["baseline_nme"],
      "nme_ratio_to_baseline": eval_results["nme"] / eval_results["baseline_nme"],
      "steps": int(host_state.step), "batch_size": config.batch_size,
      "wall_seconds": time.time() - run_start,
      "train_images_per_sec": (timed_steps * config.batch_size / train_seconds
                               if train_seconds else None),
      "input_wait_fraction": input_wait / train_seconds if train_seconds else None,
      "parallel": parallel.mode, "devices": jax.device_count(),
  }
  if is_writer:
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary, f, indent=2)
    batch = next(pipeline.eval_iterator(config, source, "validation", local_devices=1))
    images = batch["image"][0]
    pred = predict(model.apply, eval_variables(host_state), images, head=head,
                   flip_permutation=flip_permutation)
    visualize.save_grid(os.path.join(workdir, "predictions.png"), images, np.asarray(pred),
                        batch["keypoints"][0], batch["visible"][0], spec, config.data)
  log.close()
  manager.close()
  logging.info("Summary: %s", json.dumps(summary))
  return summary
