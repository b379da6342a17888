"""JAX's persistent compilation cache, on by default.

A large network's training step compiles for minutes on a GPU, where XLA autotunes every
convolution and GEMM; with the cache a later run of the same program (same shapes, dtypes,
devices, flags and JAX) reads the compiled executable back in seconds. With the cache on,
JAX also points XLA:GPU's per-fusion autotuning cache into it
(`jax_persistent_cache_enable_xla_caches`), so a changed program (another learning rate or
head) may reuse the autotuning results of fusions it shares with an earlier one; kp-jax has
not measured that on a GPU yet. The cache is switched on once, at start-up, by the
entry points (train.py, `kp_jax.predict` / `evaluate` / `export`, `benchmarks/accelerator.py`),
never inside library functions: the cache is process-wide.

`config.compilation_cache_dir` moves it (any path JAX can write, gs:// too) or turns it off
(""); unset, it is the folder JAX's own JAX_COMPILATION_CACHE_DIR names, else the user cache
folder, $XDG_CACHE_HOME/kp_jax/xla or ~/.cache/kp_jax/xla. Programs that compile in under a
second are not written (JAX's jax_persistent_cache_min_compile_time_secs).
"""

import json
import os

import jax

import kp_jax


def default_directory() -> str:
  return kp_jax.user_cache_folder("xla")


def enable(directory: str | None = None) -> str | None:
  """Compiled programs are kept in and read from `directory` (None: the one JAX was given
  through its environment, else `default_directory()`; "": no cache). Returns the folder
  used, or None."""
  if directory == "":
    jax.config.update("jax_compilation_cache_dir", None)
    return None
  directory = directory or jax.config.jax_compilation_cache_dir or default_directory()
  directory = os.path.expanduser(directory)
  jax.config.update("jax_compilation_cache_dir", directory)
  return directory


def enable_for_run(workdir: str) -> str | None:
  """`enable` with the `compilation_cache_dir` of the run in `workdir` (its config.json; runs
  trained before the field existed get the default)."""
  from etils import epath  # noqa: PLC0415 -- workdirs on any file system; the benchmarks,
  #                          which need only JAX, call `enable`
  config_path = epath.Path(workdir) / "config.json"
  config = json.loads(config_path.read_text()) if config_path.exists() else {}
  return enable(config.get("compilation_cache_dir"))
