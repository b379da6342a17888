"""Keypoint models: a backbone and a head. Nothing here imports TensorFlow.

`create_model(model_config, num_keypoints, image_hw)` -> (module, head): `module.apply` maps
images to the head's outputs, `head.decode` maps those to keypoints in pixels and
`head.compute_loss` scores them against a batch.
"""

import copy

import flax.linen as nn
import jax
import jax.numpy as jnp

from kp_jax.models.backbones import VGG, ConvPool, ResNet, resnet_shape  # noqa: F401
from kp_jax.models.hrnet import HRNet, hrnet_shape  # noqa: F401
from kp_jax.models.heads import HEADS
from kp_jax.models.vit import VIT_SIZES, ViT, vit_shape  # noqa: F401

BACKBONES = {"conv_pool": ConvPool, "vgg": VGG, "resnet": ResNet, "hrnet": HRNet, "vit": ViT}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
KERNELS = ("auto", "xla", "cpu")


class KeypointModel(nn.Module):
  backbone: nn.Module
  head: nn.Module

  def __call__(self, images, train: bool = False):
    return self.head(self.backbone(images, train=train), images.shape[1:3], train=train)


def _build(table: dict, fields, key: str, **extra):
  fields = dict(fields)
  name = fields.pop("name", None)
  if name not in table:
    raise ValueError(f"{key}.name={name!r} is not known; choose one of {sorted(table)}.")
  try:
    return table[name](**fields, **extra)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{key} ({name!r}): {e}") from None


def uses_cpu_kernels(kernels: str) -> bool:
  """`config.model.kernels`: "cpu" (kernels.py's forms), "xla" (XLA's own layers) or "auto",
  the CPU forms only when JAX's default backend is the CPU. Parameters are the same."""
  if kernels not in KERNELS:
    raise ValueError(f"config.model.kernels={kernels!r}: choose one of {KERNELS}.")
  return kernels == "cpu" or (kernels == "auto" and jax.default_backend() == "cpu")


def loaded_model_config(model_config, portable: bool = False):
  """A saved run's `model_config` (config.model) with its attention implementation chosen for
  where the run is loaded; the parameters are the same whichever runs. cuDNN's fused kernel
  ("cudnn") becomes "auto" (that kernel where it runs, XLA's elsewhere), so a run trained with
  it predicts on a CPU. With `portable`, for an artifact every runtime runs (kp_jax.export):
  XLA's attention everywhere, as a cuDNN call would tie it to NVIDIA GPUs, and float32
  arithmetic, as the CPU runtimes of ONNX and TFLite have no bfloat16 convolutions."""
  config = copy.deepcopy(model_config)
  if portable:
    config["dtype"] = "float32"
  if config["backbone"].get("name") == "vit":  # the one backbone with attention
    chosen = config["backbone"].get("attention", "auto")
    config["backbone"]["attention"] = ("xla" if portable else
                                       "auto" if chosen == "cudnn" else chosen)
  return config


def create_model(model_config, num_keypoints: int, image_hw, axis_name: str | None = None):
  """The module and head of `model_config` (config.model); `axis_name` is the pmap axis that
  BatchNorm averages its statistics over, if any."""
  dtype_name = model_config.get("dtype", "float32")
  if dtype_name not in DTYPES:
    raise ValueError(f"config.model.dtype={dtype_name!r}: choose one of {sorted(DTYPES)}.")
  dtype = DTYPES[dtype_name]
  cpu_kernels = uses_cpu_kernels(model_config.get("kernels", "auto"))
  head = _build(HEADS, model_config["head"], "config.model.head",
                num_keypoints=num_keypoints, image_hw=tuple(image_hw))
  backbone = _build(BACKBONES, model_config["backbone"], "config.model.backbone",
                    dtype=dtype, axis_name=axis_name, cpu_kernels=cpu_kernels)
  check_input_size(backbone, head, tuple(image_hw))
  return KeypointModel(backbone, head.module(dtype, axis_name, cpu_kernels)), head


def check_input_size(backbone, head, image_hw):
  """Map heads need the backbone's features to tile the input exactly."""
  stride = getattr(backbone, "stride", None)
  if not hasattr(head, "stride") or stride is None or (image_hw[0] % stride == 0
                                                       and image_hw[1] % stride == 0):
    return
  fit = tuple(max(stride, round(n / stride) * stride) for n in image_hw)
  raise ValueError(f"Input size {image_hw} (config.data.input_size, or the images' size): "
                   f"height and width must be multiples of {stride}, the stride of "
                   f"config.model.backbone ({backbone.__class__.__name__}); for example "
                   f"config.data.input_size={fit}.")
