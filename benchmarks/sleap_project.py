"""A real DeepLabCut project read as SLEAP users hold it: sleap-io (SLEAP's own I/O library)
converts its labels into a SLEAP labels package, frames embedded, and kp-jax reads both, the
project with its DeepLabCut reader and the package with its SLEAP one (`data.source="sleap"`).
Prints, per split, the examples read, the largest keypoint and pixel differences, and how long
each reading took (the package's first reading writes its frames into the user cache; the
second reads them back).

  python benchmarks/sleap_project.py ../shared/data/dlc_reaching
  python benchmarks/sleap_project.py ../shared/data/lp_mirror_mouse   # Lightning Pose's layout

Needs sleap-io (tests/requirements.txt).
"""

import argparse
import os
import sys
import time

import numpy as np
import sleap_io

from machine import machine_line, scratch_folder

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root
from configs import deeplabcut as deeplabcut_config  # noqa: E402
from kp_jax.data import deeplabcut, pipeline  # noqa: E402


def timed_source(data_config):
  start = time.perf_counter()
  source = pipeline.get_source(data_config)
  return source, time.perf_counter() - start


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("project", help="a DeepLabCut project folder (config.yaml, labeled-data/), "
                      "or a Lightning Pose one (CollectedData.csv, labeled-data/)")
  args = parser.parse_args()
  scratch = scratch_folder("kp_jax_sleap_")
  os.environ["XDG_CACHE_HOME"] = os.path.join(scratch, "cache")  # a cold frame cache
  labels = sleap_io.load_dlc(deeplabcut.label_files(args.project)[0])
  package = os.path.join(scratch, "project.pkg.slp")
  sleap_io.save_slp(labels, package, embed="user")

  data = deeplabcut_config.get_config().data
  data.project = args.project
  dlc, dlc_seconds = timed_source(data)
  data.source, data.project = "sleap", package
  sleap, first_seconds = timed_source(data)
  _, second_seconds = timed_source(data)

  print(f"\n{args.project} as DeepLabCut labels and as a SLEAP package sleap-io "
        f"{sleap_io.__version__} wrote; {machine_line()}\n")
  print(f"keypoints: {dlc.spec.names} (DeepLabCut), {sleap.spec.names} (SLEAP); skeleton "
        f"{sleap.spec.skeleton}; splits {dlc.split_sizes} and {sleap.split_sizes}")
  print(f"reading: DeepLabCut {dlc_seconds:.1f} s; SLEAP {first_seconds:.1f} s the first "
        f"time (frames to the cache), {second_seconds:.1f} s the second\n")
  order = [sleap.spec.names.index(n) for n in dlc.spec.names]
  print("| split | examples | largest keypoint difference (px) | same visibility | "
        "largest pixel difference |")
  print("| --- | --- | --- | --- | --- |")
  for split in ("train", "test"):
    pairs = list(zip(dlc.load(split, 0, 1).as_numpy_iterator(),
                     sleap.load(split, 0, 1).as_numpy_iterator(), strict=True))
    points = max(np.abs(a["keypoints"] - b["keypoints"][order]).max() for a, b in pairs)
    visible = all((a["visible"] == b["visible"][order]).all() for a, b in pairs)
    pixels = max(np.abs(a["image"].astype(int) - b["image"]).max() for a, b in pairs)
    print(f"| {split} | {len(pairs)} | {points:g} | {visible} | {pixels} |")


if __name__ == "__main__":
  main()
