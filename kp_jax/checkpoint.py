"""Checkpoints with Orbax: save every N steps and at the end, keep the last few and the best by
validation NME, resume from the latest.

A checkpoint holds the train state (step, parameters, optimiser state) as one host-side copy,
whatever the device layout of the run, and its run's `RunMeta` (keypoints, image shape, model
config) as JSON: written by the training loop, checked when a run resumes, read by predict,
evaluate and export. Saves run in the background while training goes on; Orbax writes each
step to a temporary folder and renames it when complete, so a crash mid-save leaves the
previous checkpoints intact.
"""

import dataclasses
import json
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

BEST_METRIC = "nme"
# What the model config may change without changing what a checkpoint holds.
STATE_NEUTRAL_MODEL_KEYS = ("init_from", "kernels")


@dataclasses.dataclass(frozen=True)
class RunMeta:
  """What a checkpoint records about its run beside the state."""
  config_name: str
  source: str
  keypoint_names: tuple[str, ...]
  flip_permutation: tuple[int, ...]
  skeleton: tuple[tuple[int, int], ...]  # keypoint index pairs, for drawing
  image_shape: tuple[int, int, int]  # the model input (H, W, C)
  model: dict  # config.model, less STATE_NEUTRAL_MODEL_KEYS
  # The baseline: the training split's mean keypoints [K, 2] in model-input pixels, computed
  # once (a pass over the training split) and reused on resume and by evaluation.
  mean_shape: tuple[tuple[float, float], ...] | None = None
  # Per-keypoint OKS sigmas, for comparing poses after training (OKS-NMS, tracks); None in
  # older runs (then KeypointSpec's default).
  oks_sigmas: tuple[float, ...] | None = None

  @classmethod
  def of_run(cls, config, source_name: str, spec, image_shape) -> "RunMeta":
    return cls(config.name, source_name, tuple(spec.names),
               tuple(int(i) for i in spec.flip_permutation()),
               spec.skeleton_indices(), tuple(image_shape),
               {k: v for k, v in config.model.to_dict().items()
                if k not in STATE_NEUTRAL_MODEL_KEYS},
               oks_sigmas=tuple(float(s) for s in spec.oks_sigmas()))

  def to_json(self) -> dict:
    """As JSON reads it back (tuples as lists), so records compare equal to saved ones."""
    return json.loads(json.dumps(dataclasses.asdict(self)))

  @classmethod
  def from_json(cls, record: dict) -> "RunMeta":
    return cls(record.get("config_name", ""), record.get("source", ""),
               tuple(record["keypoint_names"]), tuple(record.get("flip_permutation", ())),
               tuple(tuple(pair) for pair in record.get("skeleton", ())),
               tuple(record["image_shape"]), record.get("model", {}),
               None if record.get("mean_shape") is None
               else tuple(tuple(point) for point in record["mean_shape"]),
               None if record.get("oks_sigmas") is None else tuple(record["oks_sigmas"]))

  def check_compatible(self, saved: "RunMeta", directory, step: int):
    """Raises when the checkpoint `saved` at `step` is of another model or other keypoints."""
    mine, theirs = self.to_json(), saved.to_json()
    differences = [f"{key}: checkpoint {theirs[key]!r}, config {mine[key]!r}"
                   for key in ("keypoint_names", "image_shape", "model")
                   if theirs[key] and theirs[key] != mine[key]]
    if differences:
      raise ValueError(
          f"{directory} holds a checkpoint (step {step}) of an incompatible run: "
          + "; ".join(differences) + ". Use another --workdir, or delete that one to start "
          "over.")


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
      enable_async_checkpointing=True)
  directory = epath.Path(directory)  # gs:// and other remote paths stay as they are
  return ocp.CheckpointManager(directory if directory.is_absolute() else directory.absolute(),
                               options=options,
                               item_names=("state", "meta"))


def save(manager: ocp.CheckpointManager, step: int, state, meta: RunMeta,
         metrics: dict | None):
  """Starts saving `state` (a pytree of host arrays) with its run's `meta` in the background;
  `manager.wait_until_finished()` (or closing the manager) waits for it."""
  # Own copies: the arrays may view device buffers that the next (donating) step reuses.
  state = jax.tree.map(np.array, state)
  manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                             meta=ocp.args.JsonSave(meta.to_json())),
               metrics=metrics, force=True)


def restore(manager: ocp.CheckpointManager, step: int, target):
  """(state shaped like `target`, its RunMeta) saved at `step`."""
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
  return restored.state, RunMeta.from_json(restored.meta)


def restore_raw(manager: ocp.CheckpointManager, step: int) -> dict:
  """The state saved at `step` as host NumPy arrays, without a target of the model (for
  initialising another model from it)."""
  restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  return jax.device_get(restored.state)


def restore_meta(manager: ocp.CheckpointManager, step: int) -> RunMeta:
  return RunMeta.from_json(
      manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta)


def restore_latest(manager: ocp.CheckpointManager, target, meta: RunMeta, is_writer: bool):
  """(step, state, saved meta) of the newest checkpoint that reads back, or None if none.

  A checkpoint that fails to read (truncated or missing files) is moved aside to
  `<checkpoints>-unreadable/` with a warning, and the previous one is tried; one written for an
  incompatible config stops the run instead (`RunMeta.check_compatible`).
  """
  directory = str(manager.directory)
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      saved_meta = restore_meta(manager, step)
    except Exception as e:  # noqa: BLE001 -- any read failure means an unusable checkpoint
      _set_aside(manager, step, e, is_writer)
      continue
    meta.check_compatible(saved_meta, directory, step)
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
