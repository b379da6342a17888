"""Do the frames `kp-jax pick-frames` picks show the run's mistakes? A check without labels on
a video seen twice: in Lightning Pose's mirror mouse (`../shared/data/lp_mirror_mouse`) the
side view and the mirror's view from below see each paw at the same x (on the 90 labelled
frames the two views' x differ by 20 px at most, 8-11 px at the 90th percentile), so a
frame where the run's two x for a paw differ by more than --disagree_px has that paw wrong
in at least one view.

  python benchmarks/pick_frames.py --workdir RUN --video VIDEO [--count 20] \
      [--same_x paw1LH_top:paw1LH_bot ...]

The run predicts every frame (likelihood cutoff 0: every keypoint placed), then
pick_frames.pick_frames picks --count frames each way: evenly spaced in time, diverse
(k-means, no predictions), and by each criterion (jump, fitting at 20 px, uncertain under the
run's likelihood cutoff), each judged on every keypoint and on the paws alone (`--keypoints`).
Prints, for all frames and each way's picks, the share of frames with a paw's views
disagreeing, per paw and any, and the mean disagreement.
"""

import argparse
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

MIRROR_MOUSE_PAWS = [f"{paw}_top:{paw}_bot" for paw in
                     ("paw1LH", "paw2LF", "paw3RF", "paw4RH")]


def disagreement(trajectory: np.ndarray, names, pairs) -> np.ndarray:
  """[F, pairs]: |x| difference of each pair's two keypoints in each frame (px)."""
  index = {n: i for i, n in enumerate(names)}
  return np.stack([np.abs(trajectory[:, index[a], 0] - trajectory[:, index[b], 0])
                   for a, b in pairs], 1)


def row(label: str, frames, apart: np.ndarray, threshold: float) -> str:
  if not len(frames):
    return f"| {label} | 0 |" + " - |" * (apart.shape[1] + 2)
  off = apart[frames] > threshold
  cells = [f"{100 * v:.0f}%" for v in off.mean(0)]
  return (f"| {label} | {len(frames)} | " + " | ".join(cells)
          + f" | {100 * off.any(1).mean():.0f}% | {apart[frames].mean():.1f} |")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--video", required=True)
  parser.add_argument("--count", type=int, default=20)
  parser.add_argument("--same_x", nargs="+", default=MIRROR_MOUSE_PAWS,
                      help="keypoint pairs seen at the same x, as A:B")
  parser.add_argument("--disagree_px", type=float, default=25.0)
  args = parser.parse_args()
  from kp_jax import pick_frames, predict, runs  # noqa: PLC0415

  pairs = [tuple(p.split(":")) for p in args.same_x]
  predictor = predict.open_predictor(args.workdir, likelihood_cutoff=0.0)
  cutoff = float(runs.load_config(args.workdir).get("likelihood_cutoff", 0.0))
  with tempfile.TemporaryDirectory() as scratch:
    out = predict.predict_video(predictor, args.video, scratch)
    predicted = pick_frames.read_predictions(out["json"])
    names, trajectory = predicted["names"], predicted["trajectory"]
    apart = disagreement(trajectory, names, pairs)
    ways = {"evenly spaced in time": dict(method="uniform"), "diverse (k-means)": {}}
    paws = sorted({name for pair in pairs for name in pair})
    for judged, keypoints in (("all keypoints", None), ("the paws", paws)):
      ways.update({f"{by}, judged on {judged}": dict(predictions=out["json"], by=by,
                                                    p_bound=cutoff, keypoints=keypoints)
                   for by in pick_frames.CRITERIA})
    print(f"{args.video}: {len(trajectory)} frames; a paw's views disagree when their x "
          f"differ by more than {args.disagree_px:g} px; {args.count} frames picked each way; "
          f"uncertain: likelihood under {cutoff:g}\n")
    print("| frames | count | " + " | ".join(a.split("_")[0] for a, _ in pairs)
          + " | any paw | mean px |")
    print("|---" * (len(pairs) + 4) + "|")
    print(row("all", np.arange(len(trajectory)), apart, args.disagree_px))
    for way, (label, kwargs) in enumerate(ways.items()):
      project = os.path.join(scratch, f"project{way}")  # each way picks from every frame
      result = pick_frames.pick_frames(project, args.video, args.count, **kwargs)
      frames = np.array([int(name[3:-4]) for name in result["frames"]], int)
      candidates = f" ({result['candidates']} candidates)" if "by" in result else ""
      print(row(label + candidates, frames, apart, args.disagree_px), flush=True)


if __name__ == "__main__":
  main()
