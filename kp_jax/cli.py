"""kp-jax's command line.

  kp-jax train --config default --workdir workdirs/default [--config.num_train_steps=500 ...]
  kp-jax predict --workdir workdirs/default face.png session.mp4 [--smooth kalman]
  kp-jax evaluate --workdir workdirs/default [--split test]
  kp-jax export --workdir workdirs/default --format onnx
  kp-jax pick-frames --project P session.mp4 [--predictions session_keypoints.json]
  kp-jax bench accelerator [--configs coco_vitpose_b ...]

Each command is the module's own (`python -m kp_jax.predict` = `kp-jax predict`, `python
train.py` = `kp-jax train`), with the same flags: `kp-jax <command> --help`. A config is a
built-in one's name (`kp-jax train --config lightning_pose:video`) or a file's path.
"""

import logging as std_logging
import os
import runpy
import sys
import textwrap

import kp_jax

COMMANDS = {  # name -> (what it does, its module)
    "train": ("train a keypoint model on a config (a built-in name or a file)", None),
    "predict": ("keypoints of image files, videos and folders of them, with a trained run",
                "kp_jax.predict"),
    "evaluate": ("a trained run's metrics on a split", "kp_jax.evaluate"),
    "export": ("a trained run as StableHLO, SavedModel, ONNX or TFLite", "kp_jax.export"),
    "pick-frames": ("video frames to label next, into a DeepLabCut project or SLEAP labels: "
                    "diverse, or where a run errs",
                    "kp_jax.pick_frames"),
    "bench": ("run a benchmark: kp-jax bench NAME [its flags]", None),
}
BENCHMARKS = {  # name -> what it measures (benchmarks/NAME.py)
    "accelerator": "train steps on a GPU or TPU beside PyTorch's, compile seconds, MFU",
    "input_pipeline": "the training input pipeline's examples per second",
    "models": "parameters, multiply-adds and training speed of configs",
    "peers": "training speed beside Keras and PyTorch on this machine's CPU",
    "sharding": "each device's share of a large model's training state",
}


def usage() -> str:
  lines = [f"kp-jax {kp_jax.__version__}: keypoint detection in JAX/Flax.", "",
           "usage: kp-jax <command> [flags]     kp-jax <command> --help", "", "commands:"]
  lines += [f"  {name:<11} {text}" for name, (text, _) in COMMANDS.items()]
  lines += ["", "benchmarks (kp-jax bench NAME --help):"]
  lines += [f"  {name:<15} {text}" for name, text in BENCHMARKS.items()]
  lines += ["", "built-in configs (--config NAME[:variant]), or a config file's path:"]
  from kp_jax import builtin_configs  # noqa: PLC0415
  lines += textwrap.wrap(", ".join(builtin_configs.names()), 96, initial_indent="  ",
                         subsequent_indent="  ")
  return "\n".join(lines)


class QuietLibraries(std_logging.Filter):
  """Keeps Orbax's and TFDS's per-operation INFO lines off the console (warnings still show)."""

  def filter(self, record):
    noisy = any(f"/{lib}/" in record.pathname for lib in ("orbax", "tensorflow_datasets"))
    return record.levelno >= std_logging.WARNING or not noisy


def quiet_console(verbose: bool):
  """Library logs (TensorFlow's, XLA's, Orbax's INFO lines) off the console unless `verbose`:
  a command then prints what it wrote where, and how fast."""
  if verbose:
    return
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # for TensorFlow's C++ side, if not started
  from absl import logging  # noqa: PLC0415
  logging.set_verbosity(logging.WARNING)


def benchmarks_folder() -> str:
  """benchmarks/ of a clone, else the installed package's copy (kp_jax/benchmarks)."""
  clone = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "benchmarks")
  if os.path.isdir(clone):
    return clone
  return os.path.join(os.path.dirname(os.path.abspath(__file__)), "benchmarks")


def bench(args: list[str]) -> int:
  if not args or args[0] not in BENCHMARKS:
    print(f"kp-jax bench: name one of {sorted(BENCHMARKS)}.", file=sys.stderr)
    return 2
  path = os.path.join(benchmarks_folder(), f"{args[0]}.py")
  from kp_jax import builtin_configs  # noqa: PLC0415
  builtin_configs.make_importable()
  sys.argv = [f"kp-jax bench {args[0]}", *args[1:]]
  sys.path.insert(0, os.path.dirname(path))  # its helper modules beside it
  runpy.run_path(path, run_name="__main__")
  return 0


def main(argv=None) -> int:
  argv = list(sys.argv if argv is None else argv)
  if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
    print(usage())
    return 0
  if argv[1] == "--version":
    print(f"kp-jax {kp_jax.__version__}")
    return 0
  command, rest = argv[1], argv[2:]
  if command not in COMMANDS:
    print(f"kp-jax: no command {command!r}.\n\n{usage()}", file=sys.stderr)
    return 2
  if command == "bench":
    return bench(rest)
  sys.argv = [f"kp-jax {command}", *rest]
  if command != "train" and "--verbose" not in rest:  # before TensorFlow starts
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  if command == "train":
    from kp_jax import train  # noqa: PLC0415
    train.command()
  else:
    runpy.run_module(COMMANDS[command][1], run_name="__main__")
  return 0


if __name__ == "__main__":
  sys.exit(main())
