"""A two-stage run on pictures unlike its training frames: its held-out frames as they are,
pairs of them side by side (two arenas under one camera), and each enlarged to twice its
size. Instances found and keypoint error against the labels (in the original frames' pixels),
with the centre model seeing every picture squeezed into its training input (as kp-jax did
before 2026-12-04) and at the scale it was trained at (now; the enlarged pictures with
`--scale 2`, as a user whose camera zooms in twice as far would run it), in one run.

  python benchmarks/any_picture.py WORKDIR [--split test] [--found_px 50]
      [--score_threshold S] [--leave_out NAME ...]

The run needs two instance slots to find two animals (a single-animal DeepLabCut project:
`--config.data.instances.max_instances=2` when training). An animal counts as found when an
instance's keypoints lie within --found_px (mean over its labelled keypoints, original
pixels) of its labels, each instance matched to at most one animal, nearest first.
`--leave_out` keypoints count in neither (Reaching's rarely labelled tongue, which lies outside
the keypoint model's crop); `--score_threshold` replaces the run's own.
"""

import argparse
import os
import sys

import numpy as np
from PIL import Image

from machine import machine_line

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from kp_jax import runs, two_stage  # noqa: E402
from kp_jax.data import pipeline  # noqa: E402


def labelled_frames(workdir: str, split: str):
  """[(uint8 frame [H, W, C], keypoints [N, K, 2], visible [N, K])] of the run's split: each
  frame with every labelled instance (the image-level view of multi-instance sources)."""
  config = runs.load_config(workdir)
  source = pipeline.get_source(two_stage._plain(config).data)  # noqa: SLF001
  if source.images is not None:
    data = source.images.load(split, 0, 1)
    return [(ex["image"], ex["keypoints"], ex["visible"]) for ex in data.as_numpy_iterator()]
  return [(ex["image"], ex["keypoints"][None], ex["visible"][None])
          for ex in source.load(split, 0, 1).as_numpy_iterator()]


def animals(keypoints, visible, shift=(0.0, 0.0), scale: float = 1.0):
  """[(keypoints in the picture's pixels, visible, picture -> frame pixel factor)] of a
  frame's labelled instances, moved by `shift` and enlarged by 1 / `scale`."""
  shift = np.asarray(shift)
  return [((k + 0.5) / scale - 0.5 + shift, v, scale)
          for k, v in zip(keypoints, visible) if v.any()]


def pictures(frames):
  """{kind: [(picture, animals)]}: the frames, pairs side by side, and each enlarged 2x."""
  single = [(f, animals(k, v)) for f, k, v in frames]
  pairs = []
  for (a, ka, va), (b, kb, vb) in zip(frames[0::2], frames[1::2]):
    height = max(len(a), len(b))
    pad = lambda x: np.pad(x, ((0, height - len(x)), (0, 0), (0, 0)))
    pairs.append((np.concatenate([pad(a), pad(b)], axis=1),
                  animals(ka, va) + animals(kb, vb, shift=(a.shape[1], 0.0))))
  enlarged = []
  for f, k, v in frames:
    image = Image.fromarray(f.squeeze(-1) if f.shape[-1] == 1 else f)
    big = np.asarray(image.resize((2 * f.shape[1], 2 * f.shape[0]), Image.BILINEAR))
    enlarged.append((big.reshape(*big.shape[:2], f.shape[-1]), animals(k, v, scale=0.5)))
  return {"single frames": single, "two side by side": pairs, "enlarged 2x": enlarged}


def score(predictor, picture, animals, found_px: float, counted):
  """(animals found, their mean keypoint errors in the frames' pixels, instances returned);
  only the `counted` keypoints (a boolean per keypoint) count."""
  result = predictor.on_frames(picture[None])
  instances = predictor.instances(result)[0]
  distances = np.array([[np.mean(np.linalg.norm(x["keypoints"][m] - k[m], axis=-1)) * s
                         for x in instances]
                        for k, v, s in animals for m in [(v > 0) & counted]]
                       ).reshape(len(animals), -1)
  found, errors, used = 0, [], set()
  for a in np.argsort(distances.min(1) if distances.size else np.zeros(len(animals))):
    for i in np.argsort(distances[a]):
      if i not in used and distances[a, i] < found_px:
        used.add(i)
        found += 1
        errors.append(distances[a, i])
        break
  return found, errors, len(instances)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("workdir")
  parser.add_argument("--split", default="test")
  parser.add_argument("--found_px", type=float, default=50.0,
                      help="the frames' pixels; an animal nearer than this is found")
  parser.add_argument("--score_threshold", type=float)
  parser.add_argument("--leave_out", nargs="*", default=[])
  args = parser.parse_args()
  open_run = lambda scale: two_stage.FindRefinePredictor(
      args.workdir, likelihood_cutoff=0.0, score_threshold=args.score_threshold, scale=scale)
  after = open_run(1.0)
  unknown = set(args.leave_out) - set(after.names)
  if unknown:
    raise ValueError(f"--leave_out {sorted(unknown)}: the run's keypoints are {after.names}.")
  counted = np.array([n not in args.leave_out for n in after.names])
  if after.stages.centre_scale is None:
    raise ValueError(f"{args.workdir}: trained before the centre scale was recorded.")
  if not after.multi_instance:
    raise ValueError(f"{args.workdir}: one instance slot; train with "
                     "--config.data.instances.max_instances=2.")
  before = after.with_stages(centre_scale=None)
  print(f"{args.workdir}, {args.split} split, score threshold "
        f"{after.selection.score_threshold}, keypoints left out: {args.leave_out or 'none'}; "
        f"{machine_line()}\n")
  print("| pictures | animals | found, squeezed (before) | found, at training scale (after) "
        "| error px, before | error px, after | instances returned, before / after |\n"
        "|---|---|---|---|---|---|---|")
  for kind, items in pictures(labelled_frames(args.workdir, args.split)).items():
    animals = sum(len(a) for _, a in items)
    row = {}
    # The enlarged animals look twice their labelled size: now `predict --scale 2` says so;
    # before, there was no such option.
    zoomed = open_run(2.0) if kind == "enlarged 2x" else after
    for name, predictor in (("before", before), ("after", zoomed)):
      found, errors, returned = 0, [], 0
      for picture, truth in items:
        n, e, r = score(predictor, picture, truth, args.found_px, counted)
        found, errors, returned = found + n, errors + e, returned + r
      row[name] = (found, np.mean(errors) if errors else float("nan"), returned)
    print(f"| {kind} | {animals} | {row['before'][0]} | {row['after'][0]} "
          f"| {row['before'][1]:.1f} | {row['after'][1]:.1f} "
          f"| {row['before'][2]} / {row['after'][2]} |", flush=True)


if __name__ == "__main__":
  main()
