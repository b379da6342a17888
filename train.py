"""Trains a keypoint detector; the command lives in `kp_jax.train` (this file is kept short).

  python train.py --config configs/default.py --workdir workdirs/default \
      [--config.num_train_steps=1000 ...]

The same as `kp-jax train` (kp_jax/cli.py); `python train.py --help` lists the flags.
"""

from kp_jax import train

if __name__ == "__main__":
  train.command()
