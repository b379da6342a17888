"""Accuracy on a real DeepLabCut project: train, evaluate on the held-out frames in original
pixels against the mean-shape baseline, then predict a video made of the project's frames.

  python benchmarks/deeplabcut_project.py PROJECT [--workdir W] [--video] \
      [-- --config.num_train_steps=1500 --config.model.init_from=...]

Trains `configs/deeplabcut.py` (or `--config`) with `data.project=PROJECT` into --workdir
(resuming if it holds a run), prints the run's wall time, the test error per body part in the
frames' own pixels next to the baseline's, and with --video writes `PROJECT`-frame video
predictions (CSV, JSON, overlay MP4) and their frames/s. Everything after `--` goes to
train.py. The numbers of docs/deeplabcut.md's worked example come from this script.
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


def video_from_frames(project: str, path: str, fps: float = 5.0) -> int:
  """An MP4 of the project's labelled frames of its most common size, sorted by path."""
  from kp_jax import predict  # noqa: PLC0415

  frames = sorted(glob.glob(os.path.join(project, "labeled-data", "*", "*.png")))
  sizes = [Image.open(f).size for f in frames]
  common = max(set(sizes), key=sizes.count)
  writer = predict.VideoWriter(path, fps)
  count = 0
  for frame, size in zip(frames, sizes):
    if size == common:
      writer.write(np.asarray(Image.open(frame).convert("RGB")))
      count += 1
  writer.close()
  return count


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("project")
  parser.add_argument("--config", default=os.path.join(ROOT, "configs", "deeplabcut.py"))
  parser.add_argument("--workdir", default="workdirs/deeplabcut_project")
  parser.add_argument("--video", action="store_true")
  args, extra = parser.parse_known_args()
  extra = [a for a in extra if a != "--"]
  wall = train(args.config, args.project, args.workdir, extra)

  from kp_jax import evaluation, predict  # noqa: PLC0415 (after training: one TF start-up)
  result = evaluation.evaluate_run(args.workdir, "test")
  with open(os.path.join(args.workdir, "summary.json")) as f:
    summary = json.load(f)
  print(f"\n{args.workdir}: {summary['steps']} steps of {summary['batch_size']}, train.py wall "
        f"{wall:.0f} s (run's own wall_seconds {summary['wall_seconds']:.0f}), "
        f"{summary['train_images_per_sec']} img/s")
  print(f"test frames: {result['num_examples']}; mean error {result['error_image_px']:.2f} px "
        f"(baseline {result['error_image_px_baseline']:.2f}), RMSE {result['rmse_image_px']:.2f}"
        " px, in the frames' own pixels")
  print("| body part | error px | baseline px | PCK@0.1 |")
  print("| --- | --- | --- | --- |")
  for name, m in result["per_keypoint"].items():
    print(f"| {name} | {m['error_image_px']:.2f} | {m['baseline_error_image_px']:.2f} | "
          f"{m['pck@0.1']:.3f} |")
  if args.video:
    out = os.path.join(args.workdir, "video")
    os.makedirs(out, exist_ok=True)
    video = os.path.join(out, "frames.mp4")
    frames = video_from_frames(args.project, video)
    got = predict.predict_video(predict.Predictor(args.workdir), video, out)
    print(f"video of {frames} frames: {got['frames_per_second']:.1f} frames/s -> {got['csv']}, "
          f"{got['video']}")


if __name__ == "__main__":
  main()
