"""kp_jax/compilation_cache.py: JAX's persistent cache, on by default, moved or turned off by
the config; a second process reads a program back instead of compiling it. kp_jax/startup.py:
what a command on a run does first."""

import json
import os
import subprocess
import sys

import jax
import tensorflow as tf

from kp_jax import startup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Enables the cache from a workdir's config, compiles one program and prints JAX's cache
# events. min_compile_time 0: this small program is cached too (the default keeps only those
# that take a second or more to compile).
COMPILE = """
import sys, jax, jax.numpy as jnp
from kp_jax import compilation_cache
events = []
jax.monitoring.register_event_listener(lambda event, **_: events.append(event))
print(compilation_cache.enable_for_run(sys.argv[1]))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.jit(lambda x: jnp.sin(x) @ x.T)(jnp.ones((64, 64))).block_until_ready()
print(sum(e.endswith("/cache_hits") for e in events), sum(e.endswith("/cache_misses") for e in events))
"""


def compile_in_process(workdir):
  run = subprocess.run([sys.executable, "-c", COMPILE, str(workdir)], cwd=ROOT,
                       capture_output=True, text=True, check=True)
  directory, counts = run.stdout.strip().splitlines()
  hits, misses = map(int, counts.split())
  return directory, hits, misses


def test_a_second_process_reads_the_program_back(tmp_path):
  cache = tmp_path / "cache"
  (tmp_path / "config.json").write_text(json.dumps({"compilation_cache_dir": str(cache)}))
  directory, hits, misses = compile_in_process(tmp_path)
  assert (directory, hits) == (str(cache), 0) and misses >= 1  # compiled and written
  assert len(os.listdir(cache)) == misses  # the program and jnp.ones' small ones
  assert compile_in_process(tmp_path) == (str(cache), misses, 0)  # every one read back


def test_default_folder_and_off(tmp_path):
  env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
  run = lambda **extra: subprocess.run(
      [sys.executable, "-c", COMPILE, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
      check=True, env={**env, **extra}).stdout.splitlines()[0]
  (tmp_path / "config.json").write_text(json.dumps({"compilation_cache_dir": ""}))
  assert run() == "None"  # "": off
  assert run(JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax")) == "None"  # off means off
  (tmp_path / "config.json").unlink()  # a run trained before the field: the default
  assert run(XDG_CACHE_HOME=str(tmp_path)) == str(tmp_path / "kp_jax" / "xla")
  # A folder given to JAX itself (as this suite does for its processes) is kept.
  assert run(JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax")) == str(tmp_path / "jax")


def test_a_command_on_a_run_keeps_tensorflow_off_the_gpus_and_turns_its_cache_on(tmp_path,
                                                                                 monkeypatch):
  hidden = []
  monkeypatch.setattr(tf.config, "set_visible_devices",
                      lambda devices, kind=None: hidden.append((list(devices), kind)))
  # A run with no compilation_cache_dir: the folder JAX was given (this suite's) is kept.
  assert startup.for_run(str(tmp_path)) == jax.config.jax_compilation_cache_dir
  assert hidden == [([], "GPU")]
