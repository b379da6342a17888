"""Checkpoints with Orbax: save every N steps and at the end, keep the last few and the best by
validation NME, resume from the latest.

A checkpoint holds the train state (step, parameters, optimiser state) as one host-side copy,
whatever the device layout of the run, and a small JSON record (the keypoint names and the
image shape) for the prediction command. Orbax writes each step to a temporary folder and
renames it when complete, so a crash mid-save leaves the previous checkpoints intact.
"""

import os

import orbax.checkpoint as ocp

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
  return ocp.CheckpointManager(os.path.abspath(directory), options=options,
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


def restore_meta(manager: ocp.CheckpointManager, step: int) -> dict:
  return manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
