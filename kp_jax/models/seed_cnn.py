"""The seed article's CNN: a conv/pool stack and two dense layers regressing coordinates."""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

POOLS = {"max": nn.max_pool, "avg": nn.avg_pool}


class SeedCNN(nn.Module):
  """[conv k x k -> ReLU -> pool 2] per entry of `features` -> flatten -> dense -> ReLU -> dense 2K
  -> sigmoid.

  With the defaults this is the seed article's network exactly: conv 32 3x3, max-pool 2,
  conv 64 3x3, max-pool 2, dense 64, dense 2K, 'VALID' convolutions as in Keras.

  Returns [B, K, 2] keypoints in normalised image coordinates: (x + 0.5) / W, (y + 0.5) / H.
  """
  num_keypoints: int
  features: Sequence[int] = (32, 64)
  kernel_size: int = 3
  conv_strides: int | Sequence[int] = 1  # one for all blocks, or one per block
  padding: str = "VALID"
  pool: str = "max"
  dense_features: int = 64
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, images, train: bool = False):
    del train  # no dropout or normalisation layers
    pool = POOLS[self.pool]
    x = images.astype(self.dtype)
    strides = self.conv_strides
    if isinstance(strides, int):
      strides = (strides,) * len(self.features)
    for width, stride in zip(self.features, strides, strict=True):
      x = nn.Conv(width, (self.kernel_size,) * 2, strides=stride,
                  padding=self.padding, dtype=self.dtype)(x)
      x = pool(nn.relu(x), (2, 2), strides=(2, 2))
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(self.dense_features, dtype=self.dtype)(x))
    x = nn.Dense(2 * self.num_keypoints, dtype=self.dtype)(x)
    return nn.sigmoid(x.astype(jnp.float32)).reshape(-1, self.num_keypoints, 2)
