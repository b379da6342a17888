"""What every dataset source provides to the pipeline."""

import dataclasses
from typing import Callable

import tensorflow as tf

from kp_jax.data.keypoints import KeypointSpec


@dataclasses.dataclass(frozen=True)
class Source:
  """A dataset in the common example form (see the design's table).

  Attributes:
    name: for messages and summaries.
    spec: the keypoints' names, flip pairs and normaliser.
    split_sizes: number of examples in each split.
    load: `(split, process_index, process_count) -> tf.data.Dataset` of this process's share
      of the split, in a fixed order, with a uint8 `image` [H, W, C], float32 `keypoints`
      [K, 2], `visible` [K] and `norm` [].
  """
  name: str
  spec: KeypointSpec
  split_sizes: dict[str, int]
  load: Callable[[str, int, int], tf.data.Dataset]
