"""The training run: input pipeline, kp_jax.steps' compiled steps, evaluation, checkpoints.

`train_and_evaluate(config, workdir)` is the whole run: it resumes from the latest checkpoint in
`workdir/checkpoints`, trains, evaluates, checkpoints, and leaves the outputs described in
docs/usage.md (metrics.jsonl, summary.json, predictions.png, TensorBoard events).
"""

import contextlib
import dataclasses
import json
import os
import signal
import sys
import threading
import time

import jax
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers, periodic_actions
from etils import epath

from kp_jax import checkpoint, evaluation, pretrained, steps, unsupervised, visualize
from kp_jax.data import pipeline, pixels
from kp_jax.models import create_model

# ---------------------------------------------------------------------------------------------
# Outputs.


class MetricsLog:
  """`metrics.jsonl` (one {"step", "split", ...} object a line) plus clu writers."""

  def __init__(self, workdir: str, is_writer: bool):
    self.writer = metric_writers.create_default_writer(workdir, just_logging=not is_writer)
    self.path = epath.Path(workdir) / "metrics.jsonl" if is_writer else None

  def write(self, step: int, split: str, values: dict):
    self.writer.write_scalars(step, {f"{split}/{k}": v for k, v in values.items()
                                     if v is not None})
    if self.path:
      with self.path.open("a") as f:
        f.write(json.dumps({"step": step, "split": split, **values}) + "\n")

  def close(self):
    self.writer.flush()
    self.writer.close()


def _mean_train_metrics(history: list, parallel: steps.Parallel) -> dict:
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

  def close(self):
    """Ends the stream: its tf.data threads, shuffle buffer and cache go now."""
    self.iterator.close()


def _check_finite(history: list, values: dict, first_step: int, last_checkpoint,
                  parallel: steps.Parallel):
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


@contextlib.contextmanager
def _finishing(what: str):
  """Says on the console what a run does after its last step, and how long it took."""
  logging.info("%s...", what)
  start = time.perf_counter()
  yield
  logging.info("%s: %.1f s.", what, time.perf_counter() - start)


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
  steps.create_optimizer(config)
  steps.resolve_mode(config.parallel)
  for key in ("batch_size", "eval_batch_size"):
    pipeline.check_batch_size(config[key], jax.process_count(), jax.local_device_count(), key)
  pipeline.input_shards(config.data, jax.process_index(), jax.process_count())
  if config.data.get("udp") and not config.model.head.get("udp"):
    raise ValueError("config.data.udp=True aligns the crops for UDP's heatmap codec: set "
                     "config.model.head.udp=True too (MMPose's UDP is both).")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains `config` in `workdir` (resuming if it holds a checkpoint); returns the summary."""
  run_start = time.time()
  check_config(config)
  is_writer = jax.process_index() == 0
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)
  source = pipeline.get_source(config.data)
  spec = source.spec
  image_shape = pipeline.input_shape(config.data, source)
  mode = steps.resolve_mode(config.parallel)
  model, head = create_model(config.model, spec.num_keypoints, image_shape[:2],
                             axis_name=steps.AXIS_NAME if mode == "pmap" else None)
  flip_permutation = np.array(spec.flip_permutation()) if config.flip_test else None
  image_stats = pixels.normalisation(config.data, image_shape[2])
  parallel = steps.make_parallel(mode, head, image_stats=image_stats,
                                 ema_decay=config.optimizer.ema_decay,
                                 flip_permutation=flip_permutation, seed=config.seed,
                                 shard_state=config.get("shard_state", False),
                                 unsupervised=unsupervised.fit(config, source))
  logging.info("Data %s (%s), %d keypoints, images %s; %s on %d devices.", source.name,
               source.split_sizes, spec.num_keypoints, image_shape, parallel.mode,
               jax.device_count())

  # One owner for what must be released on every exit (a NaN stop, a full disk, a
  # preemption): the checkpoint manager, the metric writers and the SIGTERM handler.
  with contextlib.ExitStack() as stack:
    manager = stack.enter_context(contextlib.closing(checkpoint.create_manager(
        epath.Path(workdir) / "checkpoints", config.keep_last_checkpoints,
        config.keep_best_checkpoints)))
    meta = checkpoint.RunMeta.of_run(config, source.name, spec, image_shape)
    last_checkpoint = None
    restored = None
    if manager.all_steps():  # restored into the state's shapes: a resumed run initialises nothing
      shapes = steps.state_shapes(config, model, image_shape)
      restored = checkpoint.restore_latest(manager, steps.checkpointable(shapes), meta, is_writer)
    if restored is not None:
      last_checkpoint, restored_state, saved_meta = restored
      state = shapes.replace(**restored_state)
      meta = dataclasses.replace(meta, mean_shape=saved_meta.mean_shape)
      logging.info("Resuming from the checkpoint at step %d in %s.", last_checkpoint, workdir)
    else:
      state = steps.create_train_state(config, model, image_shape, jax.random.key(config.seed))
      if config.model.get("init_from"):  # a new run starts from pretrained weights
        state = steps.train_state_around(config, model, pretrained.load(
            config.model.init_from, {"params": state.params, "batch_stats": state.batch_stats},
            config.data))
    start_step = int(state.step)
    if is_writer:
      (epath.Path(workdir) / "config.json").write_text(config.to_json_best_effort(indent=2))

    if meta.mean_shape is None:
      meta = dataclasses.replace(meta, mean_shape=tuple(
          map(tuple, pipeline.training_mean_shape(config.data, source).tolist())))
    mean_shape = np.array(meta.mean_shape, np.float32)
    log = stack.enter_context(contextlib.closing(MetricsLog(workdir, is_writer)))
    train_iter = WaitClock(pipeline.train_iterator(
        config, source, start_step=start_step, local_devices=jax.local_device_count(),
        process_index=jax.process_index(), process_count=jax.process_count()))
    stack.callback(train_iter.close)
    report = periodic_actions.ReportProgress(num_train_steps=config.num_train_steps,
                                             writer=log.writer, every_steps=config.log_every_steps)
    num_steps = config.num_train_steps
    device_state = parallel.put_state(state)
    history, eval_results = [], None
    first_logged_step = start_step + 1
    train_seconds, timed_steps, step_clock = 0.0, 0, None
    input_wait, wait_mark = 0.0, 0.0

    preemption = Preemption(manager)
    stack.callback(preemption.restore)
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
        eval_results, _ = evaluation.evaluate_split(parallel, device_state, config, source,
                                                      "validation", mean_shape)
        log.write(step, "validation", eval_results)

      if step % config.checkpoint_every_steps == 0 or is_last_step:
        checkpoint.save(manager, step, parallel.get_state(steps.checkpointable(device_state)),
                        meta, {"nme": eval_results["nme"]}
                        if eval_results and eval_results["nme"] is not None else None)
        last_checkpoint = step
      step_clock = time.time() if step % config.log_every_steps == 0 else step_clock

      if preemption.reached(step):
        if history:  # never save a diverged state
          _check_finite(history, _mean_train_metrics(history, parallel), first_logged_step,
                        last_checkpoint, parallel)
        if last_checkpoint != step:
          checkpoint.save(manager, step, parallel.get_state(steps.checkpointable(device_state)),
                          meta, None)
        manager.wait_until_finished()
        logging.warning("Preempted (SIGTERM): saved a checkpoint at step %d in %s; run the same "
                        "command again to resume.", step, workdir)
        return {"config": config.name, "preempted_at_step": step}
    preemption.restore()  # past the loop nothing checks for SIGTERM: let it stop the run
    # The last save first: closing tf.data's iterator while Orbax's async save is in flight
    # took 19 s of a silent minute at the end of `make train` (benchmarks/run_ending.py).
    with _finishing("Finishing the checkpoint writes"):
      manager.wait_until_finished()  # a failed last save stops the run before its summary
    with _finishing("Closing the input pipeline"):
      train_iter.close()

    if eval_results is None:  # resumed a finished run: evaluate what is there
      eval_results, _ = evaluation.evaluate_split(parallel, device_state, config, source,
                                                  "validation", mean_shape)
    host_state = parallel.get_state(device_state)
    summary = {
        "config": config.name, "source": source.name, "split": "validation",
        **evaluation.headline_metrics(eval_results),
        "steps": int(host_state.step), "batch_size": config.batch_size,
        "wall_seconds": time.time() - run_start,
        "train_images_per_sec": (timed_steps * config.batch_size / train_seconds
                                 if train_seconds else None),
        "input_wait_fraction": input_wait / train_seconds if train_seconds else None,
        "parallel": parallel.mode, "devices": jax.device_count(),
    }
    if is_writer:
      (epath.Path(workdir) / "summary.json").write_text(json.dumps(summary, indent=2))
      with _finishing("Drawing predictions.png"):
        batch = next(pipeline.eval_iterator(config, source, "validation", local_devices=1))
        images = batch["image"][:visualize.GRID_COUNT]  # predict only the images drawn
        # Compiled: run op by op, the model was most of this stage's seconds (a dispatch and a
        # compile each op; docs/benchmarks.md, "The end of a training run").
        predict = steps.compiled_predict(model.apply, head=head,
                                         flip_permutation=flip_permutation)
        pred, likelihood = predict(steps.eval_variables(host_state),
                                   pixels.model_input(images, *image_stats))
        visualize.save_grid(epath.Path(workdir) / "predictions.png", images, np.asarray(pred),
                            np.asarray(likelihood), batch["keypoints"][:len(images)],
                            batch["visible"][:len(images)],
                            spec, config)
    logging.info("Summary: %s", json.dumps(summary))
    return summary


# ---------------------------------------------------------------------------------------------
# The command: `python train.py`, `kp-jax train`.

# Environment variables by which JAX's own cluster detection (jax.distributed.initialize()
# without arguments) recognises a multi-process launch, with the process count they carry.
_CLUSTER_SIZES = {"SLURM_NTASKS": int, "OMPI_COMM_WORLD_SIZE": int,
                  "TPU_WORKER_HOSTNAMES": lambda hosts: len(hosts.split(","))}
COMMAND_HELP = """Trains a keypoint model: one run in --workdir, which resumes if it holds one.

  kp-jax train --config default --workdir workdirs/default [--config.num_train_steps=1000 ...]
  python train.py --config configs/default.py --workdir workdirs/default

--config: a built-in config's name (`kp-jax --help` lists them; `NAME:variant` for a variant)
or a config file; every field can be set with --config.<field>=<value>. Multi-process
(multi-host) runs start one such process per host (or per GPU): under SLURM, Open MPI and on
Cloud TPU pod slices JAX finds its peers itself; elsewhere pass --coordinator_address,
--num_processes and --process_id.
"""


def initialize_distributed(coordinator_address, num_processes, process_id):
  """Joins the other processes of a multi-process run; a single process needs nothing."""
  jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU-only multi-process
  if coordinator_address:
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
  elif any(size(os.environ[var]) > 1 for var, size in _CLUSTER_SIZES.items()
           if os.environ.get(var)):
    jax.distributed.initialize()


def define_flags():
  """Defines the training command's flags (a built-in config may be named); returns absl's
  FLAGS. Separate from `command` so that launchers can run their own main with them."""
  from absl import flags  # noqa: PLC0415 -- the command's, not the library's
  from ml_collections import config_flags  # noqa: PLC0415

  from kp_jax import builtin_configs  # noqa: PLC0415

  builtin_configs.make_importable()
  sys.argv = builtin_configs.resolve_argv(sys.argv)
  flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and pictures go; a run in a "
                      "workdir that holds checkpoints resumes from the latest.", required=True)
  config_flags.DEFINE_config_file("config", None, "A built-in config's name or a config file; "
                                  "override fields with --config.<key>=<value>.",
                                  lock_config=True)
  flags.mark_flags_as_required(["config"])
  flags.DEFINE_string("coordinator_address", None, "host:port of process 0 in a multi-process "
                      "run that JAX does not detect by itself.")
  flags.DEFINE_integer("num_processes", None, "With --coordinator_address: how many processes.")
  flags.DEFINE_integer("process_id", None, "With --coordinator_address: this process's index.")
  return flags.FLAGS


def start_process(values):
  """What every process does before training: TensorFlow off the accelerators, the other
  processes joined, the compilation cache on."""
  from kp_jax import compilation_cache, startup  # noqa: PLC0415

  startup.tensorflow_off_accelerators()
  initialize_distributed(values.coordinator_address, values.num_processes, values.process_id)
  compilation_cache.enable(values.config.get("compilation_cache_dir"))


def command():
  """train.py and `kp-jax train`: the flags, then one run (two stages where the config says)."""
  from absl import app  # noqa: PLC0415

  from kp_jax import cli, two_stage  # noqa: PLC0415

  values = define_flags()
  if {"-h", "--help", "-help", "--helpshort"} & set(sys.argv[1:]):
    print(COMMAND_HELP + "\nflags:\n" + values.module_help(__name__))
    sys.exit(0)

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.get_absl_handler().addFilter(cli.QuietLibraries())
    start_process(values)
    logging.info("Config:\n%s", values.config)
    run = (two_stage.train_and_evaluate if "two_stage" in values.config  # find, then refine
           else train_and_evaluate)
    summary = run(values.config, values.workdir)
    if "preempted_at_step" in summary:
      logging.warning("Stopped at step %d on SIGTERM, checkpoint saved.",
                      summary["preempted_at_step"])

  app.run(main)


if __name__ == "__main__":
  command()
