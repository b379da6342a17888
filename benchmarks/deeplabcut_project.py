"""Accuracy on a real DeepLabCut (or Lightning Pose) project: train, evaluate on the held-out
frames in original pixels against the mean-shape baseline, then predict a video made of the
project's frames.

  python benchmarks/deeplabcut_project.py PROJECT [--workdir W] [--video [--video_size WxH]] \
      [--compare OTHER_WORKDIR] [-- --config.num_train_steps=1500 --config.model.init_from=...]

Trains `configs/deeplabcut.py` (or `--config`) with `data.project=PROJECT` into --workdir
(resuming if it holds a run), prints the run's wall time and the test error per body part in
the frames' own pixels next to the baseline's; for a two-stage run (find, then refine) also
stage 1's centre error and instances found, and the keypoint model on crops placed by the true
labels. `--compare` evaluates another workdir of the same project beside it (one row per body
part each). With --video it writes video predictions (CSV, JSON, overlay MP4) of the project's
frames (resized to --video_size if given) and prints the frames/s of a second, compiled pass,
for --compare's workdir too, in the same process. Everything after `--` goes to train.py. The
numbers of docs/deeplabcut.md come from this script.
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import time

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def train(config: str, project: str, workdir: str, extra: list[str]) -> float:
  start = time.time()
  subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), f"--config={config}",
                  f"--workdir={workdir}", f"--config.data.project={os.path.abspath(project)}",
                  *extra], check=True)
  return time.time() - start


def video_from_frames(project: str, path: str, fps: float = 5.0, size=None) -> int:
  """An MP4 of the project's labelled frames of its most common size, sorted by path, resized
  to `size` (width, height) if given."""
  from kp_jax import predict  # noqa: PLC0415

  frames = sorted(glob.glob(os.path.join(project, "labeled-data", "**", "*.png"),
                            recursive=True))
  sizes = [Image.open(f).size for f in frames]
  common = max(set(sizes), key=sizes.count)
  writer = predict.VideoWriter(path, fps)
  count = 0
  for frame, frame_size in zip(frames, sizes):
    if frame_size == common:
      image = Image.open(frame).convert("RGB")
      writer.write(np.asarray(image.resize(size, Image.BILINEAR) if size else image))
      count += 1
  writer.close()
  return count


def report(workdir: str) -> None:
  """Prints `workdir`'s test error per body part (both stages' view for a two-stage run)."""
  from kp_jax import evaluation, two_stage  # noqa: PLC0415 (one TF start-up)

  if two_stage.is_find_refine(workdir):
    print(two_stage.format_table(two_stage.evaluate(workdir, "test")))
    return
  result = evaluation.evaluate_run(workdir, "test")
  print(f"test frames: {result['num_examples']}; mean error {result['error_image_px']:.2f} px "
        f"(baseline {result['error_image_px_baseline']:.2f}), RMSE {result['rmse_image_px']:.2f}"
        " px, in the frames' own pixels")
  print("| body part | error px | baseline px | PCK@0.1 |")
  print("| --- | --- | --- | --- |")
  for name, m in result["per_keypoint"].items():
    print(f"| {name} | {m['error_image_px']:.2f} | {m['baseline_error_image_px']:.2f} | "
          f"{m['pck@0.1']:.3f} |")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("project")
  parser.add_argument("--config", default=os.path.join(ROOT, "configs", "deeplabcut.py"))
  parser.add_argument("--workdir", default="workdirs/deeplabcut_project")
  parser.add_argument("--compare", help="another trained workdir of the same project")
  parser.add_argument("--video", action="store_true")
  parser.add_argument("--video_size", help="WxH, e.g. 640x480; default: the frames' own")
  args, extra = parser.parse_known_args()
  extra = [a for a in extra if a != "--"]
  wall = train(args.config, args.project, args.workdir, extra)

  from kp_jax import predict  # noqa: PLC0415 (after training: one TF start-up)
  with open(os.path.join(args.workdir, "summary.json")) as f:
    summary = json.load(f)
  print(f"\n{args.workdir}: train.py wall {wall:.0f} s (run's own wall_seconds "
        f"{summary['wall_seconds']:.0f})")
  workdirs = [args.workdir] + ([args.compare] if args.compare else [])
  for workdir in workdirs:
    print(f"\n## {workdir}")
    report(workdir)
  if args.video:
    size = tuple(int(v) for v in args.video_size.split("x")) if args.video_size else None
    video = os.path.join(args.workdir, "video", "frames.mp4")
    os.makedirs(os.path.dirname(video), exist_ok=True)
    frames = video_from_frames(args.project, video, size=size)
    for workdir in workdirs:
      out = os.path.join(workdir, "video")
      os.makedirs(out, exist_ok=True)
      predictor = predict.open_predictor(workdir)
      predict.predict_video(predictor, video, out)  # compiles (every batch size)
      got = predict.predict_video(predictor, video, out)
      print(f"{workdir}: video of {frames} frames {args.video_size or ''}: "
            f"{got['frames_per_second']:.1f} frames/s -> {got['csv']}, {got['video']}")


if __name__ == "__main__":
  main()
