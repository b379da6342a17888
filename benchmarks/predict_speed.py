"""Images/s of `predict` on image files, end to end as a user runs it (start-up, decoding,
compilation, both stages, JSON and overlays), for one or more checkouts of kp-jax in turn, in
one run on one machine: this one, and for instance an older one, to measure a change; or its
frames/s on a video, or the milliseconds of drawing one overlay.

  python benchmarks/predict_speed.py --workdir W --frames 200 [--size 640x480]
      [--project P] [--suffix jpg] [--encodings] [--checkouts . /path/to/older/checkout]
  python benchmarks/predict_speed.py --workdir W --video V.mp4 [--size 1280x1024]
      [--checkouts ...] [-- predict's flags, e.g. --nooverlay]
  python benchmarks/predict_speed.py --drawing [--checkouts ...]

The pictures: `--frames` copies of the project's labelled frames (cycled), resized to --size,
or (no --project) the built-in synthetic faces at their own size; PNG files, or with
`--suffix jpg` JPEGs (quality 90, as a camera's photos). Each checkout also predicts
the first `--first` of them alone: the difference between the two runs is the rate past the
start-up (imports, restoring the run, compiling), which is the same whatever the count. Each
whole run's peak resident memory is its process's own (`os.wait4`). `--encodings` also times
writing one overlay each way `predict` writes them, on one core.

`--video`: predict on the video (first re-encoded at --size, when given), the frames/s predict
prints (decoding, prediction, drawing and encoding the overlay video; start-up excluded).
`--drawing`: milliseconds to draw one overlay (`visualize.draw_frame`: 17 keypoints of a pose
over the middle of the frame, a skeleton, the legend with their likelihoods, new ones each
frame; `draw_instances`: three animals of 17 keypoints) on random frames of the sizes of
`--frame_sizes`, the median of --calls calls, in a fresh process per checkout.
"""
import argparse
import glob
import io
import json
import os
import re
import subprocess
import sys
import time

import numpy as np
from PIL import Image

from machine import machine_line, scratch_folder

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


def resized_video(path: str, size, folder: str) -> str:
  """`path`, or a copy of it re-encoded at `size` (W, H)."""
  if not size:
    return path
  from kp_jax import exported  # noqa: PLC0415

  fps, frames = exported.read_video(path)
  copy = os.path.join(folder, f"video_{size[0]}x{size[1]}.mp4")
  writer = exported.VideoWriter(copy, fps)
  for frame in frames:
    writer.write(np.asarray(Image.fromarray(frame).resize(size, Image.BILINEAR)))
  writer.close()
  return copy


def video_frames_per_second(checkout: str, workdir: str, video: str, out: str,
                            predict_flags=()) -> float:
  """The frames/s `predict` in `checkout` prints for `video`."""
  printed = subprocess.run(
      [sys.executable, "-m", "kp_jax.predict", f"--workdir={os.path.abspath(workdir)}",
       f"--output_dir={out}", *predict_flags, os.path.abspath(video)], cwd=checkout,
      capture_output=True, text=True, check=True,
      env={**os.environ, "PYTHONPATH": os.path.abspath(checkout)}).stdout
  return float(re.search(r"at ([0-9.]+) frames/s", printed).group(1))


def drawing_milliseconds(frame_sizes, calls: int) -> dict:
  """{"WxH": [draw_frame ms, draw_instances ms]}, medians of `calls` calls, with the kp_jax
  on sys.path."""
  from kp_jax import visualize  # noqa: PLC0415

  rng = np.random.default_rng(0)
  names = [f"keypoint{i}_top" for i in range(17)]
  skeleton = [(i, i + 1) for i in range(16)]
  result = {}
  for width, height in frame_sizes:
    images = rng.integers(0, 256, (4, height, width, 3), np.uint8)
    poses = rng.uniform(0.3, 0.7, (calls + 1, 3, 17, 2)) * [width, height]
    likelihoods = rng.uniform(0.0, 1.0, (calls + 1, 3, 17))
    draws = {
        "frame": lambda i: visualize.draw_frame(images[i % 4], poses[i, 0], likelihoods[i, 0],
                                                names, skeleton, 0.1),
        "instances": lambda i: visualize.draw_instances(
            images[i % 4], [(j + 1, poses[i, j] / 2 + poses[i, 0] / 2, likelihoods[i, j])
                            for j in range(3)], skeleton, 0.1)}
    result[f"{width}x{height}"] = []
    for draw in draws.values():
      draw(calls)  # warm-up
      times = []
      for i in range(calls):
        start = time.perf_counter()
        draw(i)
        times.append(time.perf_counter() - start)
      result[f"{width}x{height}"].append(float(np.median(times)) * 1e3)
  return result


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir")
  parser.add_argument("--frames", type=int, default=200)
  parser.add_argument("--project")
  parser.add_argument("--size", help="WxH")
  parser.add_argument("--suffix", choices=("png", "jpg"), default="png")
  parser.add_argument("--checkouts", nargs="+", default=[ROOT])
  parser.add_argument("--first", type=int, default=20)
  parser.add_argument("--encodings", action="store_true",
                      help="also time writing the first picture's overlay each way")
  parser.add_argument("--video", help="predict on this video instead of pictures")
  parser.add_argument("--drawing", action="store_true", help="time drawing overlays instead")
  parser.add_argument("--frame_sizes", nargs="+", default=["406x396", "832x747", "1280x1024",
                                                           "1920x1080"])
  parser.add_argument("--calls", type=int, default=50)
  parser.add_argument("--drawing_child", help=argparse.SUPPRESS)  # a checkout's kp_jax, timed
  parser.add_argument("predict_flags", nargs="*", help="after --: predict's, with --video")
  args = parser.parse_args()
  frame_sizes = [tuple(int(v) for v in s.split("x")) for s in args.frame_sizes]
  if args.drawing_child:
    sys.path.insert(0, args.drawing_child)
    print(json.dumps(drawing_milliseconds(frame_sizes, args.calls)))
    return
  size = tuple(int(v) for v in args.size.split("x")) if args.size else None
  folder = scratch_folder("kp_jax_predict_speed_")
  if args.drawing:
    columns = " | ".join(f"{s}: frame, instances" for s in args.frame_sizes)
    print(f"ms to draw one overlay (median of {args.calls}); {machine_line()}\n\n"
          f"| checkout | commit | {columns} |\n|---|---|{'---|' * len(frame_sizes)}")
  elif args.video:
    video = resized_video(args.video, size, folder)
    print(f"{args.workdir}: {video} {' '.join(args.predict_flags)}; {machine_line()}\n\n"
          "| checkout | commit | frames/s |\n|---|---|---|")
  else:
    paths = write_pictures(folder, args.frames, args.project, size, args.suffix)
    print(f"{args.workdir}: {len(paths)} {args.suffix} pictures "
          f"{args.size or '(their own size)'}; {machine_line()}\n")
    if args.encodings:
      print(overlay_encodings(paths[0]) + "\n")
    print(f"| checkout | commit | wall s | images/s | peak GB | wall s, first {args.first} "
          f"| images/s past the first {args.first} |\n|---|---|---|---|---|---|---|")
  for checkout in args.checkouts:
    commit = subprocess.run(["git", "-C", checkout, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    out = os.path.join(folder, f"out_{commit}")
    if args.drawing:
      printed = subprocess.run(
          [sys.executable, os.path.abspath(__file__), "--drawing_child", checkout,
           "--calls", str(args.calls), "--frame_sizes", *args.frame_sizes],
          capture_output=True, text=True, check=True).stdout
      cells = [f"{a:.2f}, {b:.2f}" for a, b in json.loads(printed.splitlines()[-1]).values()]
      print(f"| {checkout} | {commit} | {' | '.join(cells)} |", flush=True)
    elif args.video:
      rate = video_frames_per_second(checkout, args.workdir, video, out, args.predict_flags)
      print(f"| {checkout} | {commit} | {rate:.1f} |", flush=True)
    else:
      seconds, peak_gb = timed(checkout, args.workdir, paths, out)
      first, _ = timed(checkout, args.workdir, paths[:args.first], out + "_first")
      print(f"| {checkout} | {commit} | {seconds:.1f} | {len(paths) / seconds:.1f} "
            f"| {peak_gb:.2f} | {first:.1f} | "
            f"{(len(paths) - args.first) / (seconds - first):.1f} |", flush=True)


if __name__ == "__main__":
  main()
