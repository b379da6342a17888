"""Multiply-adds of a model and of its training step, counted from the program itself (its
jaxpr), so the count is the same on every backend.

XLA's cost analysis depends on the backend: XLA:GPU leaves out convolutions and GEMM fusions
(167 GFLOP for an HRNet-W32 step of 256 images that needs about 12 TFLOP), so an MFU read from
it is meaningless there. Here every `dot_general` and `conv_general_dilated` of the traced
program counts, with the conventions of mmcv's and fvcore's counters behind MMPose's
`get_flops` and the papers' tables:
- one multiply-add (MAC) per product term; FLOPs = 2 x MACs;
- a convolution with an input dilation (a transposed convolution, and the gradients of
  strided ones) counts the products it does: the zeros inserted between input pixels are left
  out (exact away from the border), as mmcv counts a deconvolution by its input positions;
- norms, activations, softmax, pooling and element-wise work are not counted (they are a few
  percent of these networks' work, and memory-bound).

The training step is counted as it runs (`steps.train_step`: forward, the gradients of the
parameters, the optimiser), so no "a step costs three forwards" rule is assumed: a step costs
less than three where the first layer's input gradient is not needed.
"""

import copy
import math

import jax
import jax.extend
import jax.numpy as jnp

from kp_jax import steps
from kp_jax.models import create_model


def _dot_macs(eqn) -> int:
  (contracting, _), _ = eqn.params["dimension_numbers"]
  lhs = eqn.invars[0].aval.shape
  return math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in contracting)


def _conv_macs(eqn, count_inserted_zeros: bool) -> int:
  rhs_spec = eqn.params["dimension_numbers"].rhs_spec  # (out features, in features, spatial...)
  rhs = eqn.invars[1].aval.shape
  per_output = rhs[rhs_spec[1]] * math.prod(rhs[d] for d in rhs_spec[2:])
  inserted = 1 if count_inserted_zeros else math.prod(eqn.params["lhs_dilation"])
  return math.prod(eqn.outvars[0].aval.shape) * per_output // inserted


def jaxpr_macs(jaxpr, count_inserted_zeros: bool = False) -> int:
  """The multiply-adds of every dot and convolution in `jaxpr`, inner programs included (a
  scan's body times its length; the larger branch of a conditional). `count_inserted_zeros`:
  a transposed convolution counted at its output's size, as if the zeros between its input
  pixels were multiplied too (the convention of some papers' tables, SimpleBaseline's)."""
  count = lambda inner: jaxpr_macs(inner, count_inserted_zeros)
  total = 0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "dot_general":
      total += _dot_macs(eqn)
    elif name == "conv_general_dilated":
      total += _conv_macs(eqn, count_inserted_zeros)
    elif name == "while":
      raise ValueError("A while loop's trip count is unknown: its multiply-adds cannot be "
                       "counted from the program.")
    elif name == "cond":
      total += max(count(branch.jaxpr) for branch in eqn.params["branches"])
    else:
      inner = sum(count(j) for j in jax.extend.core.jaxprs_in_params(eqn.params))
      total += inner * (eqn.params["length"] if name == "scan" else 1)
  return total


def macs(fn, *args, count_inserted_zeros: bool = False) -> int:
  """Multiply-adds of `fn(*args)`; `args` may be arrays or jax.ShapeDtypeStructs."""
  return jaxpr_macs(jax.make_jaxpr(fn)(*args).jaxpr, count_inserted_zeros)


def counted_model_config(model_config):
  """`model_config` with the layers every backend has: XLA's own convolutions (not the CPU
  forms) and attention as XLA's einsums (a fused kernel's products are the same, but they
  hide inside one call)."""
  counted = copy.deepcopy(model_config)
  counted.kernels = "xla"
  if counted.backbone.get("name") == "vit":
    counted.backbone.attention = "xla"
  return counted


def model_macs(config, num_keypoints: int, image_shape, count_inserted_zeros: bool = False,
               train_step: bool = True) -> dict:
  """{"forward": ..., "train_step": ...}: multiply-adds per image of `config`'s model on
  inputs of `image_shape` (height, width, channels): its forward pass in inference, and (with
  `train_step`) one training step (`steps.train_step` on a batch of one)."""
  config = copy.deepcopy(config)
  config.model = counted_model_config(config.model)
  model, head = create_model(config.model, num_keypoints, image_shape[:2])
  image = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
  options = {"count_inserted_zeros": count_inserted_zeros}
  if not train_step:
    variables = jax.eval_shape(model.init, jax.random.key(0), image)
    return {"forward": macs(model.apply, variables, image, **options)}
  state = steps.state_shapes(config, model, image_shape)
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  batch = {"image": image,
           "keypoints": jax.ShapeDtypeStruct((1, num_keypoints, 2), jnp.float32),
           "visible": jax.ShapeDtypeStruct((1, num_keypoints), jnp.float32),
           "norm": jax.ShapeDtypeStruct((1,), jnp.float32)}
  train = lambda state, batch: steps.train_step(state, batch, head=head,
                                                image_stats=(0.0, 1.0))  # no multiply-adds
  return {"forward": macs(model.apply, variables, image, **options),
          "train_step": macs(train, state, batch, **options)}
