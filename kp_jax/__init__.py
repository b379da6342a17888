"""kp-jax: CNN image keypoint detection in JAX/Flax."""

import os

__version__ = "0.1.0"


def user_cache_folder(*parts: str) -> str:
  """$XDG_CACHE_HOME/kp_jax/<parts>, else ~/.cache/kp_jax/<parts>: where kp-jax keeps what it
  can make again (compiled programs, frames read out of videos)."""
  cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(cache_home, "kp_jax", *parts)


# XLA:CPU (jax 0.10) hands convolutions to YNNPACK, whose kernels run this project's
# convolutions and their weight gradients about 4x slower than XLA's own Eigen ones on x86
# (docs/benchmarks.md, "CPU convolutions"). Keep convolutions on XLA's path unless the user
# chose otherwise. XLA reads the flag when JAX first starts its CPU backend, so this must run
# before any computation: importing kp_jax does it.
_YNN_FUSION_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
if _YNN_FUSION_FLAG not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = " ".join(
      filter(None, [os.environ.get("XLA_FLAGS"), f"{_YNN_FUSION_FLAG}=-individual_convolution"]))
