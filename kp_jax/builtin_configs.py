"""The built-in configs by name, from a clone (the repository's configs/) or an installed
package (the same files, installed as kp_jax/configs): `--config default`,
`--config lightning_pose:video`, or any config file's path.

The config files import each other as the package `configs` (`from configs import default`),
as in the Flax examples. In a clone that is the repository's folder; in an installed package
`make_importable` names kp_jax.configs so for the process that loads them.
"""

import importlib
import importlib.util
import os
import sys

CLONE_FOLDER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "configs")


def folder() -> str:
  """Where the built-in configs are: the clone's configs/, else the installed package's."""
  if os.path.exists(os.path.join(CLONE_FOLDER, "default.py")):
    return CLONE_FOLDER
  spec = importlib.util.find_spec("kp_jax.configs")
  if spec is None:
    raise FileNotFoundError("kp-jax's built-in configs are missing: neither a clone's configs/ "
                            "nor an installed kp_jax/configs.")
  return list(spec.submodule_search_locations)[0]


def names() -> list[str]:
  return sorted(f[:-3] for f in os.listdir(folder())
                if f.endswith(".py") and not f.startswith("_"))


def resolve(spec: str) -> str:
  """A config file path (with its ":variant"), from a built-in config's name or a path."""
  path, colon, variant = spec.partition(":")
  if os.path.exists(path) or path.endswith(".py"):
    return spec
  if path not in names():
    raise ValueError(f"--config {spec}: no such file, nor a built-in config; the built-in ones "
                     f"are {names()}.")
  return os.path.join(folder(), f"{path}.py") + colon + variant


def resolve_argv(argv: list[str]) -> list[str]:
  """`argv` with its --config value (`--config X` or `--config=X`) resolved to a file."""
  out = list(argv)
  for i, arg in enumerate(out):
    if arg.startswith("--config="):
      out[i] = "--config=" + resolve(arg.split("=", 1)[1])
    elif arg == "--config" and i + 1 < len(out):
      out[i + 1] = resolve(out[i + 1])
  return out


def make_importable():
  """Makes `import configs` find the built-in configs, so their imports of each other work."""
  found = importlib.util.find_spec("configs")
  here = folder()
  if found is not None and list(found.submodule_search_locations or []) == [here]:
    return
  if here == CLONE_FOLDER:
    sys.path.insert(0, os.path.dirname(CLONE_FOLDER))
  else:
    sys.modules["configs"] = importlib.import_module("kp_jax.configs")
