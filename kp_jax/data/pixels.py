"""Pixel values: how images become the network's inputs. NumPy only (configs and the
accelerator benchmarks import it where TensorFlow is not installed).

Batches carry pixels, uint8 as they were decoded, and the compiled steps make the network's
input from them (`model_input`): a batch crosses to the accelerator as a quarter of the bytes
of float32, and the host spends none of its cores on the conversion, which under jit fuses
into the first layer (in the input pipeline, converting, normalising and batching a 256x192
float32 crop cost 0.6 ms of a core more than its uint8 pixels, as much as the warp:
`benchmarks/input_pipeline.py`, docs/benchmarks.md)."""

import numpy as np

# MMPose's PoseDataPreprocessor: mean (123.675, 116.28, 103.53) and std (58.395, 57.12, 57.375)
# of 0-255 RGB, here of [0, 1] (config.data.image_mean / image_std): the ImageNet statistics
# every MMPose checkpoint was trained with.
MMPOSE_NORMALISATION = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def normalisation(data_config, channels: int) -> tuple[np.ndarray, np.ndarray]:
  """(mean, std) of `config.data.image_mean` / `image_std` as float32 arrays that broadcast
  over images [..., channels] in [0, 1]: one number for every channel, or one per channel
  (MMPose's ImageNet statistics, `MMPOSE_NORMALISATION`)."""
  out = []
  for key in ("image_mean", "image_std"):
    value = np.asarray(data_config[key], np.float32).reshape(-1)
    if value.size not in (1, channels):
      raise ValueError(f"config.data.{key}={data_config[key]}: give one number, or one per "
                       f"channel of the images ({channels}).")
    out.append(value if value.size > 1 else value[0])
  if np.any(out[1] <= 0):
    raise ValueError(f"config.data.image_std={data_config.image_std} must be positive.")
  return out[0], out[1]


def unit_floats(images):
  """float32 images in [0, 1]: uint8 pixels divided by 255, float ones taken as they are.
  NumPy or JAX arrays."""
  unit = images.astype(np.float32)
  return unit / 255.0 if images.dtype == np.uint8 else unit


def model_input(images, mean, std):
  """Images [..., C] -> the network's float32 input (image - mean) / std, the image in [0, 1]
  (`unit_floats`). NumPy or JAX arrays; `mean` and `std` from `normalisation`."""
  return (unit_floats(images) - mean) / std
