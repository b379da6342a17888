"""Every instance, on the built-in scenes of 1 to 4 faces: train `configs/scenes.py` (or resume
its workdir), evaluate it on the test scenes, and time prediction.

  python benchmarks/scenes.py [--workdir workdirs/scenes] [--images 64] \
      [-- --config.two_stage.centre.num_train_steps=...]

Prints the evaluation (COCO AP of every instance found end to end, beside the keypoint model
on crops about the labelled centres; instances found, missed, duplicated at the score
threshold; per-keypoint error of the found ones), then images/s of the jitted two-stage
composition (centres, crops, keypoints, then score and OKS-NMS selection; batches of 8 frames)
with 1, 3 and 10 instance slots per frame, and of `predict` on image files (decoding, both
stages, selection, JSON and overlays), each timed on a second, compiled pass in this one
process. The README's "Every instance" numbers come from this script.
"""

import argparse
import dataclasses
import functools
import os
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from kp_jax import find_refine, predict, runs, two_stage  # noqa: E402
from kp_jax.data import pipeline  # noqa: E402


def test_scenes(workdir: str, count: int) -> np.ndarray:
  """The first `count` test scenes, uint8 [N, H, W, 1]."""
  config = runs.load_config(workdir)
  source = pipeline.get_source(two_stage._plain(config).data)  # noqa: SLF001
  scenes = source.images.load("test", 0, 1).take(count).as_numpy_iterator()
  return np.stack([scene["image"] for scene in scenes])


def composition_rate(predictor, frames: np.ndarray, slots: int, batch: int = 8) -> float:
  """Images/s of the composition with `slots` instances per frame, plus selection."""
  stages = dataclasses.replace(predictor.stages, max_instances=slots)
  run = jax.jit(functools.partial(find_refine.predict_frames, stages))
  images = frames.astype(np.float32) / 255.0

  def one_pass():
    for start in range(0, len(images) - batch + 1, batch):
      predictor.instances(jax.device_get(run(*predictor.variables, images[start:start + batch])))
  one_pass()  # compiles
  start = time.perf_counter()
  one_pass()
  return (len(images) // batch * batch) / (time.perf_counter() - start)


def predict_rate(predictor, frames: np.ndarray) -> float:
  """Images/s of `predict` on PNG files of `frames`, one at a time (the command's loop:
  decoding, both stages, selection, overlay, JSON), after a first call that compiles."""
  with tempfile.TemporaryDirectory() as folder:
    paths = []
    for i, frame in enumerate(frames):
      paths.append(os.path.join(folder, f"scene{i:03d}.png"))
      Image.fromarray(frame[..., 0]).save(paths[-1])
    out = os.path.join(folder, "out")
    predict.predict_images(predictor, paths[:1], out)  # compiles
    start = time.perf_counter()
    predict.predict_images(predictor, paths, out)
    return len(paths) / (time.perf_counter() - start)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default=os.path.join(ROOT, "workdirs", "scenes"))
  parser.add_argument("--images", type=int, default=64, help="test scenes timed")
  args, extra = parser.parse_known_args()
  extra = [a for a in extra if a != "--"]
  start = time.time()
  subprocess.run([sys.executable, os.path.join(ROOT, "train.py"),
                  f"--config={os.path.join(ROOT, 'configs', 'scenes.py')}",
                  f"--workdir={args.workdir}", *extra], check=True)
  print(f"train (or resume): {time.time() - start:.0f} s")
  print(two_stage.format_table(two_stage.evaluate(args.workdir, "test")))
  predictor = predict.open_predictor(args.workdir)
  frames = test_scenes(args.workdir, args.images)
  for slots in (1, 3, 10):
    print(f"composition + selection, {slots:2d} instance slots a frame: "
          f"{composition_rate(predictor, frames, slots):.1f} images/s")
  print(f"predict on {len(frames)} PNG files ({predictor.max_instances} slots): "
        f"{predict_rate(predictor, frames):.1f} images/s")


if __name__ == "__main__":
  main()
