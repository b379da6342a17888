"""Does labelling the frames `kp-jax pick-frames` picks teach a run more than other frames? A
labelling round simulated on a labelled project: some training frames' labels are hidden, a
run trains on the others, the hidden frames, made into a video, are picked from each way, their
labels shown again, and a run trains on the first frames and the picked ones. The held-out
frames (every 5th sorted by path) are the same in every run.

  python benchmarks/labelling_round.py PROJECT --workdir W [--start 18] [--add 12] \
      [--config configs/lightning_pose.py:whole_frame] [--ways uniform kmeans uncertain] \
      [-- train.py flags]

The first round's frames are --start of the training frames, evenly spaced; the rest are the
pool, in the video in their path order (so `jump` and `fitting`, which need a video's
neighbouring frames, do not apply). Ways: `uniform` (evenly spaced, no run), `kmeans`
(diverse, no run) and the criteria of pick-frames that the first run's predictions of the
pool feed (`uncertain`, ...). Prints one table: each run's test error per keypoint, the first
round's too. A second call with the same W reports the same runs without training again.
"""

import argparse
import csv
import os
import subprocess
import sys

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def labelled_frames(project: str, path: str) -> dict:
  """{frame path: its line numbers} of one of the project's label CSVs, as training reads it."""
  from kp_jax.data import deeplabcut  # noqa: PLC0415

  lines = {}
  bodyparts = deeplabcut.read_project_config(project)["bodyparts"]
  for frame, _, _, _, line in deeplabcut.read_labels(path, bodyparts):
    lines.setdefault(frame, set()).add(line)
  return lines


def sub_project(project: str, frames: set, dest: str) -> str:
  """A copy of `project` labelling only `frames` (its label files filtered, the frames' images
  linked, config.yaml copied)."""
  from kp_jax.data import deeplabcut  # noqa: PLC0415

  os.makedirs(dest, exist_ok=True)
  if os.path.exists(os.path.join(project, "config.yaml")):
    with open(os.path.join(project, "config.yaml")) as f, \
        open(os.path.join(dest, "config.yaml"), "w") as g:
      g.write(f.read())
  for path in deeplabcut.label_files(project):
    dropped = set().union(*(lines for frame, lines in labelled_frames(project, path).items()
                            if frame not in frames))
    target = os.path.join(dest, os.path.relpath(path, project))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(path, newline="") as f, open(target, "w", newline="") as g:
      csv.writer(g).writerows(row for line, row in enumerate(csv.reader(f), start=1)
                              if line not in dropped)
  for frame in frames:
    link = os.path.join(dest, frame)
    os.makedirs(os.path.dirname(link), exist_ok=True)
    if not os.path.exists(link):
      os.symlink(os.path.abspath(os.path.join(project, frame)), link)
  return dest


def train(config: str, project: str, workdir: str, test_frames, extra) -> None:
  if os.path.exists(os.path.join(workdir, "summary.json")):
    return
  subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), f"--config={config}",
                  f"--workdir={workdir}", f"--config.data.project={os.path.abspath(project)}",
                  f"--config.data.test_frames={tuple(test_frames)!r}", *extra], check=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("project")
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--config", default=os.path.join(ROOT, "configs",
                                                       "lightning_pose.py:whole_frame"))
  parser.add_argument("--start", type=int, default=18)
  parser.add_argument("--add", type=int, default=12)
  parser.add_argument("--ways", nargs="+", default=["uniform", "kmeans", "uncertain"])
  args, extra = parser.parse_known_args()
  extra = [a for a in extra if a != "--"]
  from kp_jax import evaluation, pick_frames, predict  # noqa: PLC0415
  from kp_jax.data import deeplabcut  # noqa: PLC0415

  frames = sorted({frame for path in deeplabcut.label_files(args.project)
                   for frame in labelled_frames(args.project, path)})
  held_out = deeplabcut.held_out(len(frames), 0.8)
  test = [f for f, h in zip(frames, held_out) if h]
  train_frames = [f for f, h in zip(frames, held_out) if not h]
  start_index = np.linspace(0, len(train_frames) - 1, args.start).round().astype(int)
  first = [train_frames[i] for i in start_index]
  pool = [f for f in train_frames if f not in first]
  print(f"{args.project}: {len(test)} held-out frames, {len(first)} in the first round, a pool "
        f"of {len(pool)}; {args.add} picked from it each way")

  workdir = os.path.abspath(args.workdir)
  first_run = os.path.join(workdir, "first")
  train(args.config, sub_project(args.project, set(first + test),
                                 os.path.join(workdir, "first_project")),
        first_run, test, extra)
  video = os.path.join(workdir, "pool.mp4")
  if not os.path.exists(video):
    writer = predict.VideoWriter(video, 5.0)
    for frame in pool:
      writer.write(np.asarray(Image.open(os.path.join(args.project, frame)).convert("RGB")))
    writer.close()
  predictions = os.path.join(workdir, "pool_predictions")
  if not os.path.exists(os.path.join(predictions, "pool_keypoints.json")):
    predict.predict_video(predict.open_predictor(first_run), video, predictions)

  runs = {"first round": first_run}
  for way in args.ways:
    picker = os.path.join(workdir, f"{way}_picks")
    picked_folder = os.path.join(picker, "labeled-data", "pool")
    kwargs = ({"method": way} if way in ("uniform", "kmeans") else
              {"predictions": os.path.join(predictions, "pool_keypoints.json"), "by": way})
    if os.path.isdir(picked_folder):  # picked by an earlier call: the same frames again
      picked = sorted(f for f in os.listdir(picked_folder) if f.endswith(".png"))
    else:
      picked = pick_frames.pick_frames(picker, video, args.add, **kwargs)["frames"]
    added = [pool[int(name[3:-4])] for name in picked]
    print(f"{way}: {len(added)} frames: {', '.join(os.path.basename(f) for f in added)}")
    runs[way] = os.path.join(workdir, way)
    train(args.config, sub_project(args.project, set(first + added + test),
                                   os.path.join(workdir, f"{way}_project")),
          runs[way], test, extra)
  results = {label: evaluation.evaluate_run(run, "test") for label, run in runs.items()}
  print(f"\nTest error (px, the frames' own pixels) of {len(test)} held-out frames:\n")
  print("| keypoint | " + " | ".join(results) + " |")
  print("|---" * (len(results) + 1) + "|")
  names = list(next(iter(results.values()))["per_keypoint"])
  for name in names:
    print(f"| {name} | " + " | ".join(f"{r['per_keypoint'][name]['error_image_px']:.2f}"
                                     for r in results.values()) + " |")
  print("| **mean** | " + " | ".join(f"**{r['error_image_px']:.2f}**"
                                     for r in results.values()) + " |")


if __name__ == "__main__":
  main()
