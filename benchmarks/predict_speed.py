"""Images/s of `predict` on image files, end to end as a user runs it (start-up, decoding,
compilation, both stages, JSON and overlays), for one or more checkouts of kp-jax in turn, in
one run on one machine: this one, and for instance an older one, to measure a change.

  python benchmarks/predict_speed.py --workdir W --frames 200 [--size 640x480]
      [--project P] [--suffix jpg] [--encodings] [--checkouts . /path/to/older/checkout]

The pictures: `--frames` copies of the project's labelled frames (cycled), resized to --size,
or (no --project) the built-in synthetic faces at their own size; PNG files, or with
`--suffix jpg` JPEGs (quality 90, as a camera's photos). Each checkout also predicts
the first `--first` of them alone: the difference between the two runs is the rate past the
start-up (imports, restoring the run, compiling), which is the same whatever the count. Each
whole run's peak resident memory is its process's own (`os.wait4`). `--encodings` also times
writing one overlay each way `predict` writes them, on one core.
"""

import argparse
import glob
import io
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

from machine import machine_line

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def write_pictures(folder: str, count: int, project: str | None, size,
                   suffix: str) -> list[str]:
  paths = []
  if project:
    frames = sorted(glob.glob(os.path.join(project, "labeled-data", "**", "*.png"),
                              recursive=True))
    pictures = []
    for i in range(count):
      with Image.open(frames[i % len(frames)]) as image:
        pictures.append(image.convert("RGB").resize(size, Image.BILINEAR) if size
                        else image.copy())
  else:
    from kp_jax.data import faces  # noqa: PLC0415
    pictures = [Image.fromarray(faces.render_example(np.random.default_rng([7, i]), 96)
                                ["image"][..., 0]) for i in range(count)]
  for i, picture in enumerate(pictures):
    paths.append(os.path.join(folder, f"{'frame' if project else 'face'}{i:04d}.{suffix}"))
    picture.save(paths[-1], **({"quality": 90} if suffix == "jpg" else {}))
  return paths


def timed(checkout: str, workdir: str, paths, out: str) -> tuple[float, float]:
  """(wall seconds, peak resident GB) of the predict command in `checkout`."""
  start = time.perf_counter()
  child = subprocess.Popen(
      [sys.executable, "-m", "kp_jax.predict", f"--workdir={os.path.abspath(workdir)}",
       f"--output_dir={out}", *paths], cwd=checkout, stdout=subprocess.DEVNULL,
      stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": os.path.abspath(checkout)})
  _, status, usage = os.wait4(child.pid, 0)  # this child's own resource use
  if status:
    raise RuntimeError(f"predict in {checkout} failed (wait status {status}).")
  return time.perf_counter() - start, usage.ru_maxrss / 1e6  # kB on Linux


def overlay_encodings(path: str, calls: int = 5) -> str:
  """Milliseconds to write one overlay of the picture at `path` each way predict has."""
  picture = Image.open(path).convert("RGB")
  rows = []
  for name, options in (("PNG, PIL's default level", {"format": "PNG"}),
                        ("PNG, zlib level 1", {"format": "PNG", "compress_level": 1}),
                        ("JPEG, quality 95", {"format": "JPEG", "quality": 95})):
    start = time.perf_counter()
    for _ in range(calls):
      stream = io.BytesIO()
      picture.save(stream, **options)
    rows.append(f"| {name} | {(time.perf_counter() - start) / calls * 1e3:.0f} "
                f"| {len(stream.getvalue()) / 1e3:.0f} |")
  return ("| overlay written as | ms, one core | KB |\n|---|---|---|\n" + "\n".join(rows))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--frames", type=int, default=200)
  parser.add_argument("--project")
  parser.add_argument("--size", help="WxH")
  parser.add_argument("--suffix", choices=("png", "jpg"), default="png")
  parser.add_argument("--checkouts", nargs="+", default=[ROOT])
  parser.add_argument("--first", type=int, default=20)
  parser.add_argument("--encodings", action="store_true",
                      help="also time writing the first picture's overlay each way")
  args = parser.parse_args()
  size = tuple(int(v) for v in args.size.split("x")) if args.size else None
  folder = tempfile.mkdtemp(prefix="kp_jax_predict_speed_")
  paths = write_pictures(folder, args.frames, args.project, size, args.suffix)
  print(f"{args.workdir}: {len(paths)} {args.suffix} pictures {args.size or '(their own size)'}; "
        f"{machine_line()}\n")
  if args.encodings:
    print(overlay_encodings(paths[0]) + "\n")
  print(f"| checkout | commit | wall s | images/s | peak GB | wall s, first {args.first} "
        f"| images/s past the first {args.first} |\n|---|---|---|---|---|---|---|")
  for checkout in args.checkouts:
    commit = subprocess.run(["git", "-C", checkout, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    out = os.path.join(folder, f"out_{commit}")
    seconds, peak_gb = timed(checkout, args.workdir, paths, out)
    first, _ = timed(checkout, args.workdir, paths[:args.first], out + "_first")
    print(f"| {checkout} | {commit} | {seconds:.1f} | {len(paths) / seconds:.1f} "
          f"| {peak_gb:.2f} | {first:.1f} | {(len(paths) - args.first) / (seconds - first):.1f} |",
          flush=True)


if __name__ == "__main__":
  main()
