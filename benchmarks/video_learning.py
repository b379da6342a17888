"""Learning from a project's unlabelled video: the supervised model against each unsupervised
loss alone and all of them, at equal training wall time, on the held-out labelled frames and
on the video's smoothness.

  python benchmarks/video_learning.py PROJECT [--config configs/lightning_pose.py:video]
      [--minutes 15 | --steps N] [--variants supervised temporal pca multiview consistency all]
      [--seeds 0] [--root workdirs/video_learning] [-- --config.field=value ...]

A project without videos/ (DeepLabCut's Reaching demo) gets one made of its training frames
(`--frames_as_video`): the losses that need no neighbouring frames (the EMA teacher's
consistency) then learn from the labelled frames' images alone, and there is no jump figure.

For each variant (the config with the other losses' weights at 0; `supervised` with no
unlabelled stream at all) and seed: a 120-step probe measures its steps/s, then train.py runs
for `--minutes` of training at that rate (so every variant gets the same wall time, not the
same steps), then the run is evaluated on the project's held-out frames (error per keypoint in
the frames' own pixels) and predicts the project's videos/ (every keypoint kept, whatever its
likelihood), counting the share of frames where a keypoint moves more than 20 px from the frame
before (kp_jax.smoothing.jumps). `--steps N` gives every variant N steps instead (no probe): a
loss's effect apart from its cost in steps/s. Prints one table (with each run's training
seconds: its steps at its steady rate, which equal time should make alike), then per-keypoint
tables; writes
ROOT/results.json. Runs already in ROOT are reused. Everything after `--` goes to train.py.
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import time

import numpy as np

from machine import machine_line

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

LOSSES = ("temporal", "pca", "multiview", "consistency")
JUMP_PX = 20.0


def variant_flags(variant: str) -> list[str]:
  """train.py flags turning `variant`'s losses on and the others off."""
  if variant == "supervised":
    return ["--config.data.unlabelled_batch_size=0"] + [
        f"--config.unsupervised.{n}.weight=0.0" for n in LOSSES]
  if variant == "all":
    return []
  if variant not in LOSSES:
    raise ValueError(f"Variant {variant!r}: choose from supervised, all, {LOSSES}.")
  return [f"--config.unsupervised.{n}.weight=0.0" for n in LOSSES if n != variant]


def train(args, workdir: str, flags: list[str]) -> float:
  start = time.time()
  run = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), f"--config={args.config}",
                        f"--workdir={workdir}",
                        f"--config.data.project={os.path.abspath(args.project)}", *flags],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  if run.returncode:
    raise RuntimeError(f"train.py failed in {workdir}:\n{run.stderr[-3000:]}")
  return time.time() - start


def steps_per_second(args, workdir: str, flags: list[str]) -> float:
  """Training steps/s of a 120-step probe, compilation and the input's start left out (its
  first 20 steps)."""
  if not os.path.exists(os.path.join(workdir, "summary.json")):
    train(args, workdir, flags + ["--config.num_train_steps=120", "--config.log_every_steps=20",
                                  "--config.eval_every_steps=120",
                                  "--config.optimizer.warmup_steps=1",
                                  "--config.checkpoint_every_steps=120"])
  with open(os.path.join(workdir, "summary.json")) as f:
    summary = json.load(f)
  return summary["train_images_per_sec"] / summary["batch_size"]


def measure(args, workdir: str) -> dict:
  from kp_jax import evaluation, predict  # noqa: PLC0415 (after training: one TF start-up)

  result = evaluation.evaluate_run(workdir, "test")
  predictor = predict.open_predictor(workdir, likelihood_cutoff=0.0)  # every keypoint kept
  jumps = {}
  for path in sorted(glob.glob(os.path.join(args.project, "videos", "*"))):
    out = predict.predict_video(predictor, path, os.path.join(workdir, "video"),
                                jump_px=JUMP_PX, smooth="kalman")
    jumps[os.path.basename(path)] = {"raw": out["jumps"], "kalman": out["smoothed_jumps"]}
  return {"error_px": result["error_image_px"],
          "per_keypoint_px": {k: m["error_image_px"] for k, m in result["per_keypoint"].items()},
          "jumps": jumps}


def training_frames_video(args, path: str) -> str:
  """An MP4 of the project's training frames (the held-out ones left out), in split order."""
  if os.path.exists(path):
    return path
  from kp_jax.data import pipeline  # noqa: PLC0415
  from kp_jax.exported import VideoWriter  # noqa: PLC0415
  from configs import deeplabcut  # noqa: PLC0415
  config = deeplabcut.get_config()
  config.data.project = os.path.abspath(args.project)
  source = pipeline.get_source(config.data)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  writer = VideoWriter(path, 5.0)
  for example in source.load("train", 0, 1).as_numpy_iterator():
    image = example["image"]
    writer.write(np.repeat(image, 3, -1) if image.shape[-1] == 1 else image)
  writer.close()
  return path


def run_variant(args, variant: str, seed: int, extra: list[str]) -> dict:
  name = f"{variant}_seed{seed}"
  workdir = os.path.join(args.root, name)
  flags = extra + variant_flags(variant) + [f"--config.seed={seed}"]  # the variant's last
  if args.steps:
    rate, num_steps = None, args.steps
  else:
    rate = steps_per_second(args, os.path.join(args.root, "probes", name), flags)
    num_steps = int(args.minutes * 60 * rate)
  wall = None
  if not os.path.exists(os.path.join(workdir, "summary.json")):
    wall = train(args, workdir, flags + [f"--config.num_train_steps={num_steps}",
                                         f"--config.eval_every_steps={num_steps}",
                                         f"--config.checkpoint_every_steps={num_steps}"])
  with open(os.path.join(workdir, "summary.json")) as f:
    summary = json.load(f)
  return {"variant": variant, "seed": seed, "steps": summary["steps"], "steps_per_sec": rate,
          "train_py_wall_s": wall, "run_wall_s": summary["wall_seconds"],
          "train_s": summary["steps"] * summary["batch_size"] / summary["train_images_per_sec"],
          **measure(args, workdir)}


def mean_jumps(row: dict, kind: str) -> float:
  values = [v for video in row["jumps"].values() for v in video[kind].values()
            if v is not None and np.isfinite(v)]
  return float(np.mean(values)) if values else float("nan")


def print_tables(rows: list[dict]):
  print("\n| variant | seed | steps | training s | wall s | test error px | frames jumping > "
        "20 px | after the Kalman smoother |\n|---|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['variant']} | {r['seed']} | {r['steps']} | {r['train_s']:.0f} "
          f"| {r['run_wall_s']:.0f} "
          f"| {r['error_px']:.2f} | {100 * mean_jumps(r, 'raw'):.2f}% "
          f"| {100 * mean_jumps(r, 'kalman'):.2f}% |")
  names = list(rows[0]["per_keypoint_px"])
  label = lambda r: f"{r['variant']} s{r['seed']}"
  print("\nTest error per keypoint, px\n\n| keypoint | " + " | ".join(map(label, rows)) + " |")
  print("|---" * (len(rows) + 1) + "|")
  for n in names:
    print(f"| {n} | " + " | ".join(f"{r['per_keypoint_px'][n]:.2f}" for r in rows) + " |")
  if rows[0]["jumps"]:
    print("\nShare of video frames where the keypoint moves > 20 px, raw\n\n| keypoint | "
          + " | ".join(map(label, rows)) + " |")
    print("|---" * (len(rows) + 1) + "|")
    for n in names:
      cells = []
      for r in rows:
        values = [video["raw"][n] for video in r["jumps"].values()]
        cells.append(f"{100 * np.nanmean(values):.2f}%")
      print(f"| {n} | " + " | ".join(cells) + " |")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("project")
  parser.add_argument("--config", default=os.path.join(ROOT, "configs",
                                                       "lightning_pose.py:video"))
  parser.add_argument("--minutes", type=float, default=15.0)
  parser.add_argument("--steps", type=int, help="the same steps for every variant, not minutes")
  parser.add_argument("--variants", nargs="+",
                      default=["supervised", *LOSSES, "all"])
  parser.add_argument("--seeds", nargs="+", type=int, default=[0])
  parser.add_argument("--root", default="workdirs/video_learning")
  parser.add_argument("--frames_as_video", action="store_true",
                      help="a project without videos: learn from its training frames as one")
  args, extra = parser.parse_known_args()
  extra = [a for a in extra if a != "--"]
  if args.frames_as_video:
    video = training_frames_video(args, os.path.join(args.root, "training_frames.mp4"))
    extra += [f"--config.data.unlabelled_videos=('{os.path.abspath(video)}',)",
              "--config.data.clip_length=1"]
  print(f"{machine_line()}; {args.config}", flush=True)
  rows = []
  for seed in args.seeds:
    for variant in args.variants:
      rows.append(run_variant(args, variant, seed, extra))
      print(json.dumps({k: rows[-1][k] for k in ("variant", "seed", "steps", "error_px")}),
            flush=True)
  os.makedirs(args.root, exist_ok=True)
  with open(os.path.join(args.root, "results.json"), "w") as f:
    json.dump(rows, f, indent=1)
  print_tables(rows)


if __name__ == "__main__":
  main()
