"""Checkpoints with Orbax: save every N steps and at the end, keep the last few and the best by
validation NME, resume from the latest.

A checkpoint holds the train state (step, parameters, optimiser state) as one host-side copy,
whatever the device layout of the run, and a small JSON record (the keypoint names and the
image shape) for the prediction command. Orbax writes each step to a temporary folder and
renames it when complete, so a crash mid-save leaves the previous checkpoints intact.
"""

import time

import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

BEST_METRIC = "nme"


def create_manager(directory: str, keep_last: int, keep_best: int) -> ocp.CheckpointManager:
  policies = ocp.checkpoint_managers
  preservation = policies.AnyPreservationPolicy([
      policies.LatestN(n=keep_last),
      # reverse=True: a lower NME is better.
      policies.BestN(get_metric_fn=lambda m: m[BEST_METRIC], reverse=True, n=keep_best,
                     keep_checkpoints_without_metrics=False),
  ])
  options = ocp.CheckpointManagerOptions(
      best_fn=lambda m: m[BEST_METRIC], best_mode="min", preservation_policy=preservation,
      enable_async_checkpointing=False)
  directory = epath.Path(directory)  # gs:// and other remote paths stay as they are
  return ocp.CheckpointManager(directory if directory.is_absolute() else directory.absolute(),
                               options=options,
                               item_names=("state", "meta"))


def save(manager: ocp.CheckpointManager, step: int, state, meta: dict, metrics: dict | None):
  """Saves `state` (a pytree of host or fully replicated arrays) with its `meta` record."""
  manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                             meta=ocp.args.JsonSave(meta)),
               metrics=metrics, force=True)
  manager.wait_until_finished()


def restore(manager: ocp.CheckpointManager, step: int, target):
  """(state shaped like `target`, meta) saved at `step`."""
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
  return restored.state, restored.meta


def restore_raw(manager: ocp.CheckpointManager, step: int) -> dict:
  """The state saved at `step` as host NumPy arrays, without a target of the model (for
  initialising another model from it)."""
  restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  return jax.device_get(restored.state)


def restore_meta(manager: ocp.CheckpointManager, step: int) -> dict:
  return manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta


def _differences(saved: dict, current: dict, keys) -> list[str]:
  return [f"{key}: checkpoint {saved[key]!r}, config {current[key]!r}"
          for key in keys if key in saved and saved[key] != current[key]]


def check_compatible(saved: dict, current: dict, directory: str, step: int):
  """Raises when a checkpoint's meta record shows another model or other keypoints."""
  differences = _differences(saved, current, ("keypoint_names", "image_shape", "model"))
  if differences:
    raise ValueError(
        f"{directory} holds a checkpoint (step {step}) of an incompatible run: "
        + "; ".join(differences) + ". Use another --workdir, or delete that one to start over.")


def restore_latest(manager: ocp.CheckpointManager, target, meta: dict, is_writer: bool):
  """(step, state, saved meta) of the newest checkpoint that reads back, or None if none.

  A checkpoint that fails to read (truncated or missing files) is moved aside to
  `<checkpoints>-unreadable/` with a warning, and the previous one is tried; one written for an
  incompatible config stops the run instead (see `check_compatible`).
  """
  directory = str(manager.directory)
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      saved_meta = restore_meta(manager, step)
    except Exception as e:  # noqa: BLE001 -- any read failure means an unusable checkpoint
      _set_aside(manager, step, e, is_writer)
      continue
    check_compatible(saved_meta, meta, directory, step)
    try:
      state, _ = restore(manager, step, target)
    except Exception as e:  # noqa: BLE001
      _set_aside(manager, step, e, is_writer)
      continue
    return step, state, saved_meta
  return None


def _set_aside(manager: ocp.CheckpointManager, step: int, error: Exception, is_writer: bool):
  directory = epath.Path(manager.directory)
  aside = directory.parent / f"{directory.name}-unreadable" / f"{step}-{int(time.time())}"
  logging.warning("Checkpoint %d in %s cannot be read (%s: %s); moving it to %s and trying "
                  "the previous one.", step, directory, type(error).__name__,
                  str(error).splitlines()[0][:300] if str(error) else "", aside)
  if is_writer:
    aside.parent.mkdir(parents=True, exist_ok=True)
    (directory / str(step)).rename(aside)
  manager.reload()
