"""Latency and throughput of a trained model in every export format, beside kp_jax.predict's
jitted function, in one run on one machine.

  python benchmarks/export.py --workdir workdirs/default
  python benchmarks/export.py --config configs/default.py   # a 2-step run: timing only
  python train.py --config configs/lightning_pose.py:whole_frame --workdir /tmp/lp_whole \
      --config.data.project=../shared/data/lp_mirror_mouse --config.num_train_steps=2 \
      --config.eval_every_steps=2 --config.checkpoint_every_steps=2 \
      --config.optimizer.warmup_steps=1    # a 2-step run of the mirror mouse: timing only
  python benchmarks/export.py --workdir /tmp/lp_whole \
      --video ../shared/data/lp_mirror_mouse/videos/test_vid.mp4 [--overlay]

Prints a Markdown table: per format, its runtime, milliseconds per call at batch 1 (median of
--calls calls after a warm-up call), images/s at batch 32 (median call), and the largest
keypoint difference from the jitted function on the same inputs (input pixels), and with
--video the frames/s of a whole video, decoding included: `kp_jax.exported.on_video` for each
format (the runner's fixed-batch models one frame a call, the others 8), `kp_jax.predict`'s
video path for the jitted function (it also draws and encodes the overlay video and writes
the CSV; with --overlay the runner draws and encodes its overlay too, like for like). Fixed-batch formats (onnx, tflite) are exported once per batch size; the others
once, batch dynamic.
Needs requirements-export.txt (and jax2onnx, see there) for onnx and tflite.
"""

import argparse
import importlib.util
import os
import sys
import time

import numpy as np

from machine import machine_line, scratch_folder

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root
from kp_jax import export, exported, predict, train  # noqa: E402
from kp_jax.data import pixels  # noqa: E402

RUNTIMES = {"stablehlo": "jax (deserialized)", "savedmodel": "TensorFlow", "onnx": "onnxruntime",
            "tflite": "LiteRT interpreter"}


def median_seconds(call, pixels, calls: int) -> float:
  call(pixels)  # warm-up: compilation, allocation
  times = []
  for _ in range(calls):
    start = time.perf_counter()
    call(pixels)
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def video_frames_per_second(model, path: str, overlay: str | None) -> float:
  start = time.perf_counter()
  frames = len(exported.on_video(model, path, overlay=overlay)["frames"])
  return frames / (time.perf_counter() - start)


def short_run(config_path: str, workdir: str) -> str:
  spec = importlib.util.spec_from_file_location("config", config_path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.num_train_steps = config.eval_every_steps = config.checkpoint_every_steps = 2
  config.optimizer.warmup_steps = 1
  config.batch_size = config.eval_batch_size = 8
  train.train_and_evaluate(config, workdir)
  return workdir


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", help="a training run")
  parser.add_argument("--config", help="without --workdir: train this config 2 steps first")
  parser.add_argument("--calls", type=int, default=20)
  parser.add_argument("--formats", default=",".join(export.FORMATS))
  parser.add_argument("--video", help="also time every frame of this video")
  parser.add_argument("--overlay", action="store_true", help="with --video: the runner also "
                      "draws and encodes the overlay video, as predict does")
  args = parser.parse_args()
  scratch = scratch_folder("kp_jax_export_bench_")
  workdir = args.workdir or short_run(args.config or "configs/default.py",
                                      os.path.join(scratch, "run"))
  predictor = predict.Predictor(workdir)
  mean, std = pixels.normalisation(predictor.config.data, predictor.image_shape[2])
  rng = np.random.default_rng(0)
  inputs = {n: rng.uniform(0, 255, (n, *predictor.image_shape)).astype(np.float32)
            for n in (1, 32)}
  jitted = lambda x: predictor.on_inputs((x / 255.0 - mean) / std)
  reference = jitted(inputs[32])[0]
  video_rate = args.video and predict.predict_video(
      predictor, args.video, os.path.join(scratch, "video"))["frames_per_second"]
  rows = [("kp_jax.predict (jit)", "jax", median_seconds(jitted, inputs[1], args.calls),
           median_seconds(jitted, inputs[32], max(3, args.calls // 4)), 0.0, video_rate)]
  for fmt in args.formats.split(","):
    models = {}
    for n in (1, 32):
      batch = n if fmt in export.FIXED_BATCH_ONLY else None
      if batch is None and models:
        models[n] = models[1]
        continue
      path = os.path.join(scratch, f"model_{n}{export.FORMATS[fmt]}")
      models[n] = exported.ExportedModel(export.export(workdir, fmt, batch, path))
    difference = float(np.abs(models[32].on_inputs(inputs[32])[0] - reference).max())
    rows.append((fmt, RUNTIMES[fmt], median_seconds(models[1].on_inputs, inputs[1], args.calls),
                 median_seconds(models[32].on_inputs, inputs[32], max(3, args.calls // 4)),
                 difference, args.video and video_frames_per_second(
                     models[1], args.video,
                     args.overlay and os.path.join(scratch, f"{fmt}_labeled.mp4"))))
  print(f"\n{workdir} (step {predictor.step}), input {predictor.image_shape}; "
        f"{machine_line()}\n")
  video = (f" {os.path.basename(args.video)}: frames/s"
           f"{' with overlay' if args.overlay else ''} |") if args.video else ""
  print("| format | runtime | batch 1: ms | batch 32: images/s | max difference (px) |" + video)
  print("| --- | --- | --- | --- | --- |" + " --- |" * bool(video))
  for name, runtime, one, many, difference, video_rate in rows:
    print(f"| {name} | {runtime} | {one * 1e3:.2f} | {32 / many:.0f} | {difference:.1e} |"
          + (f" {video_rate:.1f} |" if video else ""))


if __name__ == "__main__":
  main()
