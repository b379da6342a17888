"""The installable package: its wheel carries the command and the built-in configs; the command
line finds configs by name from anywhere and says what it has."""

import glob
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

import kp_jax
from kp_jax import builtin_configs, cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_wheel_carries_the_command_configs_and_benchmarks(tmp_path):
  source = tmp_path / "source"  # a copy: the build writes its build/ folder beside the sources
  source.mkdir()
  for part in ("pyproject.toml", "README.md", "kp_jax", "configs", "benchmarks"):
    copy = shutil.copytree if os.path.isdir(os.path.join(ROOT, part)) else shutil.copy
    copy(os.path.join(ROOT, part), source / part,
         **({"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree
            else {}))
  subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                  "--no-build-isolation", "-w", str(tmp_path), str(source)], check=True,
                 capture_output=True)
  wheel, = glob.glob(str(tmp_path / "kp_jax-*.whl"))
  assert os.path.basename(wheel) == f"kp_jax-{kp_jax.__version__}-py3-none-any.whl"
  with zipfile.ZipFile(wheel) as z:
    names = set(z.namelist())
    entry_points = z.read(f"kp_jax-{kp_jax.__version__}.dist-info/entry_points.txt").decode()
    metadata = z.read(f"kp_jax-{kp_jax.__version__}.dist-info/METADATA").decode()
  assert "kp-jax = kp_jax.cli:main" in entry_points
  for name in builtin_configs.names():
    assert f"kp_jax/configs/{name}.py" in names
  assert "kp_jax/benchmarks/accelerator.py" in names and "kp_jax/cli.py" in names
  assert not any(n.startswith(("tests/", "configs/")) for n in names)  # nothing top-level
  assert "Provides-Extra: gpu" in metadata and "Requires-Dist: jax<0.12,>=0.10.2" in metadata


def test_config_names_resolve_to_the_built_in_files():
  folder = builtin_configs.folder()
  assert builtin_configs.resolve("default") == os.path.join(folder, "default.py")
  assert builtin_configs.resolve("lightning_pose:video") == os.path.join(
      folder, "lightning_pose.py") + ":video"
  assert builtin_configs.resolve("my/own.py:variant") == "my/own.py:variant"  # paths pass
  with pytest.raises(ValueError, match=r"--config nope: no such file.*'default'"):
    builtin_configs.resolve("nope")
  assert builtin_configs.resolve_argv(["x", "--config=tiny", "--config", "seed", "--workdir=w"]) \
      == ["x", "--config=" + os.path.join(folder, "tiny.py"), "--config",
          os.path.join(folder, "seed.py"), "--workdir=w"]


def test_help_version_and_unknown_commands(capsys):
  assert cli.main(["kp-jax", "--version"]) == 0
  assert capsys.readouterr().out.strip() == f"kp-jax {kp_jax.__version__}"
  assert cli.main(["kp-jax"]) == 0
  out = capsys.readouterr().out
  for command in cli.COMMANDS:
    assert f"\n  {command} " in out
  assert "lightning_pose" in out and "accelerator" in out
  assert cli.main(["kp-jax", "fly"]) == 2 and "no command 'fly'" in capsys.readouterr().err
  assert cli.main(["kp-jax", "bench", "nope"]) == 2


def test_train_by_config_name_from_another_folder(data_dir, tmp_path):
  """`kp-jax train --config tiny` run where no configs/ folder is in sight."""
  workdir = tmp_path / "run"
  run = subprocess.run(
      [sys.executable, "-m", "kp_jax.cli", "train", "--config", "tiny", f"--workdir={workdir}",
       f"--config.data.data_dir={data_dir}", "--config.num_train_steps=4",
       "--config.eval_every_steps=4", "--config.checkpoint_every_steps=4"],
      cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT})
  assert run.returncode == 0, run.stderr[-3000:]
  assert (workdir / "summary.json").exists()
  for phase in ("Closing the input pipeline", "Finishing the checkpoint writes",
                "Drawing predictions.png"):
    assert f"{phase}: " in run.stderr  # the console says what the end of a run does
