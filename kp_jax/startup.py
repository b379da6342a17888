"""What the commands do before their first JAX or TensorFlow work (train.py, `kp_jax.predict`,
`evaluate`, `export`), never library functions: both settings are process-wide."""

from kp_jax import compilation_cache


def tensorflow_off_accelerators():
  """TensorFlow only reads and augments data here. Left to see a GPU, it claims most of its
  memory at its first operation beside JAX's (a pip TensorFlow finds the CUDA libraries that
  jax[cuda] installs), as the Flax examples and big_vision also guard against."""
  import tensorflow as tf  # noqa: PLC0415 -- train.py parses its flags first
  tf.config.set_visible_devices([], "GPU")


def for_run(workdir: str) -> str | None:
  """A command on a trained run: TensorFlow off the accelerators, and the run's compilation
  cache on (`compilation_cache.enable_for_run`; returns its folder, or None)."""
  tensorflow_off_accelerators()
  return compilation_cache.enable_for_run(workdir)
