"""Training state, optimiser and the pure, compiled steps (training, prediction, evaluation)
with their device layouts. Imports neither TensorFlow nor the input pipeline, so it runs where
only JAX, Flax and Optax are installed (as on the GPU machines of benchmarks/peers.py).
"""

import collections
import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import jax_utils
from flax.training import train_state
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from kp_jax import metrics
from kp_jax.data import pixels

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


NO_WEIGHT_DECAY = ("pos_embed",)  # ViT's position embedding (MMPose's decay_mult=0)


def decay_mask(params):
  """Weight decay applies to kernels (ndim > 1), not to biases, norm scales and offsets or a
  position embedding."""
  return jax.tree_util.tree_map_with_path(
      lambda path, p: p.ndim > 1 and path[-1].key not in NO_WEIGHT_DECAY, params)


def _encoder_layer(names) -> int | None:
  """i for a parameter of ViT encoder layer i (path "backbone/layer{i}/..."), else None."""
  if len(names) > 1 and names[0] == "backbone" and names[1].startswith("layer"):
    index = names[1].removeprefix("layer")
    return int(index) if index.isdigit() else None
  return None


def _layer_id(names, depth: int) -> int:
  """A ViT parameter's depth for layer-wise decay, as MMPose's LayerDecayOptimWrapperConstructor
  counts it: 0 for the patch and position embeddings, i + 1 for encoder layer i, depth + 1 for
  the rest (the final norm, the head)."""
  if names[:2] in (["backbone", "patch_embed"], ["backbone", "pos_embed"]):
    return 0
  layer = _encoder_layer(names)
  return depth + 1 if layer is None else layer + 1


def scale_by_layer_decay(rate: float) -> optax.GradientTransformation:
  """Layer-wise learning-rate decay (BEiT, ViTPose): the updates of a parameter at depth `id`
  (`_layer_id`) of a `depth`-layer encoder scaled by rate ** (depth + 1 - id), so the head
  learns at the full rate and each layer below at `rate` times the one above."""

  def scale(updates, params=None):
    del params
    names = lambda path: [k.key for k in path]
    layers = {_encoder_layer(names(path))
              for path, _ in jax.tree_util.tree_leaves_with_path(updates)} - {None}
    depth = len(layers)
    return jax.tree_util.tree_map_with_path(
        lambda path, u: u * rate ** (depth + 1 - _layer_id(names(path), depth)), updates)

  return optax.stateless(scale)


SCHEDULES = ("cosine", "step")


def learning_rate_schedule(config) -> optax.Schedule:
  """A linear warmup from 0, then a cosine to `final_lr_fraction` of the peak, or steps down
  by `step_factor` at `step_boundaries` (fractions of the run; MMPose's MultiStepLR)."""
  opt, total = config.optimizer, config.num_train_steps
  name = opt.get("schedule", "cosine")
  if name not in SCHEDULES:
    raise ValueError(f"config.optimizer.schedule={name!r}: choose one of {SCHEDULES}.")
  if name == "cosine":
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=opt.learning_rate, warmup_steps=opt.warmup_steps,
        decay_steps=total, end_value=opt.learning_rate * opt.final_lr_fraction)
  warmup = optax.linear_schedule(0.0, opt.learning_rate, opt.warmup_steps)
  steps = optax.piecewise_constant_schedule(
      opt.learning_rate, {round(f * total) - opt.warmup_steps: opt.step_factor
                          for f in opt.step_boundaries})
  return optax.join_schedules([warmup, steps], [opt.warmup_steps])


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
  schedule = learning_rate_schedule(config)
  if opt.max_skipped_nonfinite < 0:
    raise ValueError(f"config.optimizer.max_skipped_nonfinite={opt.max_skipped_nonfinite} must "
                     "be >= 0.")
  steps = []
  if opt.grad_clip_norm:
    steps.append(optax.clip_by_global_norm(opt.grad_clip_norm))
  if opt.weight_decay and opt.name != "adamw":  # L2 regularisation, coupled to the gradient
    steps.append(optax.add_decayed_weights(opt.weight_decay, mask=decay_mask))
  steps.append(OPTIMIZERS[opt.name](schedule, opt))
  layer_decay = opt.get("layer_decay", 0.0)
  if not 0 <= layer_decay <= 1:
    raise ValueError(f"config.optimizer.layer_decay={layer_decay} must be in [0, 1] (0: off).")
  if layer_decay:
    steps.append(scale_by_layer_decay(layer_decay))
  tx = optax.chain(*steps)
  if opt.max_skipped_nonfinite:  # skip updates with NaN/Inf gradients, counting them
    tx = optax.apply_if_finite(tx, max_consecutive_errors=opt.max_skipped_nonfinite)
  return tx


def create_train_state(config, model, image_shape, rng) -> TrainState:
  variables = jax.jit(model.init)(rng, jnp.zeros((1, *image_shape), jnp.float32))
  return train_state_around(config, model, variables)


def train_state_around(config, model, variables: dict) -> TrainState:
  """A training state at step 0 around the network's `variables` ({"params"[,
  "batch_stats"]}, arrays or NumPy: initialised, pretrained or drawn on the host): the EMA a
  copy of the parameters, the optimiser's state fresh."""
  params = jax.tree.map(jnp.asarray, variables["params"])
  return TrainState.create(apply_fn=model.apply, params=params,
                           batch_stats=jax.tree.map(jnp.asarray,
                                                    variables.get("batch_stats", {})),
                           ema_params=jax.tree.map(jnp.copy, params),  # own buffers, as steps
                           tx=create_optimizer(config))  # donate the state


def state_shapes(config, model, image_shape) -> TrainState:
  """The training state as shapes and dtypes on this process's first device, where
  `create_train_state` puts it: a target to restore a checkpoint into without initialising
  the network, whose random initialisers compile for long (HRNet-W32's for ~40 s on a CPU,
  `benchmarks/compile_time.py --state`)."""
  abstract = jax.eval_shape(lambda: create_train_state(config, model, image_shape,
                                                       jax.random.key(0)))
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=device),
                      abstract)


def checkpointable(state: TrainState) -> dict:
  return {"step": state.step, "params": state.params, "opt_state": state.opt_state,
          "batch_stats": state.batch_stats, "ema_params": state.ema_params}


# ---------------------------------------------------------------------------------------------
# Pure steps.


def global_norm(tree) -> jax.Array:
  """`optax.global_norm`, with arrays small enough to stay whole on every device
  (`MIN_SHARDED_SIZE`: biases, norms' scales) stacked by shape and reduced once per shape: one
  reduction per array is ops to trace, lower and compile for each of a network's hundreds
  (HRNet-W32: 878, 584 of them BatchNorm vectors; benchmarks/compile_time.py --compile)."""
  small, squares = collections.defaultdict(list), []
  for leaf in jax.tree.leaves(tree):
    if leaf.size < MIN_SHARDED_SIZE:
      small[leaf.shape, leaf.dtype].append(leaf)
    else:
      squares.append(jnp.sum(jnp.square(leaf)))
  squares += [jnp.sum(jnp.square(jnp.stack(same))) for same in small.values()]
  return jnp.sqrt(sum(squares))


def train_step(state, batch, *, head, image_stats, ema_decay: float = 0.0,
               axis_name: str | None = None, seed: int = 0, unsupervised=None):
  """One update on `batch`; returns (new state, {loss, l2_grads, l2_params}). Its images
  (uint8 pixels) become the network's input here, normalised by `image_stats` (mean, std:
  `pixels.normalisation`). Layers that draw random numbers in training (drop path) get the
  "dropout" stream of `seed` and the step (and the replica, under pmap).

  With `unsupervised` (kp_jax.unsupervised.Unsupervised) and the batch's clips of unlabelled
  frames (`unlabelled` [U, T, H, W, C], with their `unlabelled_matrix`, and for the
  consistency loss the EMA teacher's view `teacher` with its `teacher_matrix`), the clips go
  through a training-mode forward pass of their own, and the weighted unsupervised losses join
  the labelled one; each is reported unweighted (`unsupervised/<name>`) beside the labelled
  loss (`supervised_loss`)."""
  rng = jax.random.fold_in(jax.random.key(seed), state.step)
  if axis_name is not None:
    rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))
  images = pixels.model_input(batch["image"], *image_stats)
  clips = batch.get("unlabelled") if unsupervised is not None else None
  if clips is not None:
    frames = pixels.model_input(clips.reshape(-1, *clips.shape[2:]), *image_stats)
    teacher = None
    if "teacher" in batch:
      teacher = state.apply_fn(eval_variables(state), pixels.model_input(
          batch["teacher"].reshape(frames.shape), *image_stats))

  def loss_fn(params):
    variables = {"params": params, "batch_stats": state.batch_stats}
    outputs, updates = state.apply_fn(variables, images, train=True, mutable=["batch_stats"],
                                      rngs={"dropout": rng})
    loss = head.compute_loss(outputs, batch)
    terms = {}
    if clips is not None:
      # A forward pass of their own: BatchNorm normalises a clip's nearly alike frames by
      # their own statistics and drops their update. In the labelled frames' pass they kept a
      # BCE heatmap model at empty maps (docs/video.md).
      clip_outputs, _ = state.apply_fn(variables, frames, train=True, mutable=["batch_stats"],
                                       rngs={"dropout": rng})
      terms = unsupervised.losses(head, clip_outputs, batch, teacher)
    total = loss + unsupervised.total(terms, state.step) if terms else loss
    return total, (updates.get("batch_stats", {}), loss, terms)

  (loss, (batch_stats, supervised, terms)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  if axis_name is not None:  # each replica saw an equal share of the batch
    loss, grads, supervised, terms = jax.lax.pmean((loss, grads, supervised, terms), axis_name)
  new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  ema = jax.tree.map(lambda e, p: ema_decay * e + (1 - ema_decay) * p,
                     state.ema_params, new_state.params)
  metrics = {"loss": loss, "l2_grads": global_norm(grads),
             "l2_params": global_norm(new_state.params)}
  if terms:
    metrics.update({"supervised_loss": supervised,
                    **{f"unsupervised/{name}": value for name, value in terms.items()}})
  if isinstance(new_state.opt_state, optax.ApplyIfFiniteState):
    metrics["skipped_updates"] = new_state.opt_state.total_notfinite.astype(jnp.float32)
  return new_state.replace(ema_params=ema), metrics


def predict(apply_fn, variables, images, *, head, flip_permutation=None):
  """(keypoints [B, K, 2] in pixels, likelihoods [B, K]). With a flip permutation (the
  dataset's left/right pairs), also predicts on the mirrored images and averages both
  (test-time flip)."""
  outputs = apply_fn(variables, images)
  points, likelihood = head.decode(outputs), head.likelihood(outputs)
  if flip_permutation is None:
    return points, likelihood
  outputs = apply_fn(variables, images[:, :, ::-1])
  mirrored = head.decode(outputs)[:, flip_permutation]
  width = images.shape[2]
  mirrored = mirrored.at[..., 0].set(width - 1 - mirrored[..., 0])
  return (points + mirrored) / 2, (likelihood + head.likelihood(outputs)[:, flip_permutation]) / 2


def compiled_predict(apply_fn, *, head, flip_permutation=None):
  """`predict` compiled for one model and head: (variables, images) -> (keypoints,
  likelihoods)."""
  return jax.jit(functools.partial(predict, apply_fn, head=head,
                                   flip_permutation=flip_permutation))


def eval_variables(state):
  return {"params": state.ema_params, "batch_stats": state.batch_stats}


def eval_step(state, batch, mean_shape, *, head, image_stats, flip_permutation=None,
              axis_name: str | None = None):
  """(metric sums of the model and of the mean-shape baseline, per-keypoint sums, and the
  (predictions, likelihoods)) on a (masked) batch carrying its crop `matrix`; its images
  normalised by `image_stats` as in `train_step`."""
  images = pixels.model_input(batch["image"], *image_stats)
  pred, likelihood = head.match_labels(
      *predict(state.apply_fn, eval_variables(state), images, head=head,
               flip_permutation=flip_permutation), batch["keypoints"])
  baseline = jnp.broadcast_to(mean_shape, pred.shape)
  real = batch["mask"][:, None, None] > 0  # padding rows have no crop matrix to invert
  to_image = jnp.linalg.inv(jnp.where(real, batch["matrix"], jnp.eye(3)))
  args = (batch["keypoints"], batch["visible"], batch["norm"], batch["mask"], to_image)
  sums = {"model": metrics.metric_sums(pred, *args),
          "baseline": metrics.metric_sums(baseline, *args),
          "per_keypoint": metrics.keypoint_sums(pred, *args, batch["box"]),
          "per_keypoint_baseline": metrics.keypoint_sums(baseline, *args, batch["box"]),
          "num_examples": batch["mask"].sum()}
  if axis_name is not None:
    sums = jax.lax.psum(sums, axis_name)
  return sums, (pred, likelihood)


# ---------------------------------------------------------------------------------------------
# Device layouts.


@dataclasses.dataclass(frozen=True)
class Parallel:
  """Where state and batches live, and the steps compiled for that layout.

  Batches arrive from the pipeline as this process's rows of the global batch, NumPy
  [global_batch / processes, ...].
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
  if mode == "auto":  # jit with shardings: the supported path (pmap is in maintenance)
    return "jit"
  return mode


def _place(sharding, value):
  """A host value as a global array laid out by `sharding`, every process placing its own
  pieces (a plain device_put of a device-committed array would be a cross-host transfer,
  which CPU collectives do not offer)."""
  value = np.asarray(value)
  return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


MIN_SHARDED_SIZE = 2**12  # elements; smaller arrays (biases, norms) stay whole on every device


def fsdp_spec(shape, num_devices: int) -> PartitionSpec:
  """FSDP-style layout of one array of the state: its largest dimension that the devices
  divide evenly split over the "data" axis (the batch's), else (or if small) replicated."""
  if int(np.prod(shape, dtype=np.int64)) < MIN_SHARDED_SIZE:
    return PartitionSpec()
  fits = [d for d in np.argsort(shape)[::-1] if shape[d] % num_devices == 0]
  if not fits:
    return PartitionSpec()
  return PartitionSpec(*[("data" if d == fits[0] else None) for d in range(len(shape))])


def fsdp_shardings(mesh: Mesh, tree):
  """The NamedSharding of every array of `tree` (arrays or shapes) under `fsdp_spec`."""
  size = mesh.devices.size
  return jax.tree.map(lambda x: NamedSharding(mesh, fsdp_spec(np.shape(x), size)), tree)


def one_in_flight(step: Callable) -> Callable:
  """`step` (a compiled step), returning only once its outputs are computed, where it must.

  XLA:CPU's in-process collectives (jaxlib 0.10.2) deadlock when two programs with
  collectives over several CPU devices are in flight at once on a busy few-core host: one
  device never joins the rendezvous and XLA aborts the process after 40 s ("Termination
  timeout for `all gather ...`"; `benchmarks/cpu_collectives.py` reproduces it). Running one
  such program at a time avoids it. Only CPU runs with several devices pay, and there the
  input pipeline's own threads still overlap the steps.
  """
  if jax.default_backend() != "cpu" or jax.device_count() == 1:
    return step

  @functools.wraps(step)
  def synchronous(*args):
    return jax.block_until_ready(step(*args))

  synchronous.lower = step.lower  # benchmarks/profile_step.py reads the compiled program
  return synchronous


def make_parallel(mode: str, head, *, image_stats, ema_decay: float = 0.0,
                  flip_permutation=None, seed: int = 0, shard_state: bool = False,
                  unsupervised=None) -> Parallel:
  """Steps for `mode` ("jit" or "pmap", as resolved), making the network's input from the
  batches' pixels with `image_stats` (`pixels.normalisation`); under pmap the model's
  BatchNorm must name AXIS_NAME. `shard_state` (jit only): the state split over the devices
  (`fsdp_spec`) rather than copied to each; XLA gathers each layer's parameters where the step
  needs them and reduce-scatters the gradients, so the step computes what the replicated one
  does."""
  train = functools.partial(train_step, head=head, image_stats=image_stats,
                            ema_decay=ema_decay, seed=seed, unsupervised=unsupervised)
  evaluate_batch = functools.partial(eval_step, head=head, image_stats=image_stats,
                                     flip_permutation=flip_permutation)
  if mode == "pmap":
    if shard_state:
      raise ValueError("config.shard_state=True needs config.parallel='jit' (or 'auto').")
    return Parallel(
        mode=mode,
        train_step=one_in_flight(jax.pmap(functools.partial(train, axis_name=AXIS_NAME),
                                          axis_name=AXIS_NAME, donate_argnums=(0,))),
        eval_step=one_in_flight(jax.pmap(functools.partial(evaluate_batch, axis_name=AXIS_NAME),
                                         axis_name=AXIS_NAME, in_axes=(0, 0, None))),
        put_state=jax_utils.replicate,
        get_state=lambda state: jax.device_get(first_replica(state)),
        put_batch=lambda batch: {k: v.reshape(jax.local_device_count(), -1, *v.shape[1:])
                                 for k, v in batch.items()},
        first=first_replica,
    )
  # jit over a 1-D mesh: the batch is split over the `data` axis, the state replicated.
  mesh = Mesh(np.array(jax.devices()), ("data",))
  replicated = NamedSharding(mesh, PartitionSpec())
  batch_sharding = NamedSharding(mesh, PartitionSpec("data"))

  def put_batch(batch):
    return {k: jax.make_array_from_process_local_data(batch_sharding, v)
            for k, v in batch.items()}

  if shard_state:
    def sharded_train(state, batch):  # the new state keeps the state's layout
      new_state, metrics = train(state, batch)
      return jax.lax.with_sharding_constraint(new_state, fsdp_shardings(mesh, new_state)), \
          jax.lax.with_sharding_constraint(metrics, replicated)

    def put_state(state):
      state = jax.device_get(state)
      return jax.tree.map(_place, fsdp_shardings(mesh, state), state)

    return Parallel(
        mode=mode,
        train_step=one_in_flight(jax.jit(sharded_train, donate_argnums=(0,))),
        eval_step=one_in_flight(jax.jit(evaluate_batch, out_shardings=replicated)),
        put_state=put_state,
        get_state=lambda state: multihost_utils.process_allgather(state, tiled=True),
        put_batch=put_batch,
        first=lambda tree: tree,
    )
  return Parallel(
      mode=mode,
      train_step=one_in_flight(jax.jit(train, out_shardings=replicated, donate_argnums=(0,))),
      eval_step=one_in_flight(jax.jit(evaluate_batch, out_shardings=replicated)),
      put_state=lambda state: jax.tree.map(functools.partial(_place, replicated),
                                           jax.device_get(state)),
      get_state=lambda state: jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), state),
      put_batch=put_batch,
      first=lambda tree: tree,
  )
