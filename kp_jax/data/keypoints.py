"""Keypoint metadata: names, left/right flip pairs, skeleton, and the NME normaliser.

Coordinates everywhere in kp-jax are (x, y) in pixels of the image they belong to, with pixel
centres at integer coordinates: the top-left pixel's centre is (0, 0), so an image of width W
spans x in [-0.5, W - 0.5] and a horizontal flip maps x to W - 1 - x.
"""

import dataclasses
from typing import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class KeypointSpec:
  """What a dataset's keypoints are.

  Attributes:
    names: one name per keypoint, in the order of the `keypoints` array.
    flip_pairs: pairs of names that swap under a horizontal flip (left_eye <-> right_eye).
    skeleton: pairs of names joined by a line when drawing.
    normaliser: what the per-example `norm` (the NME denominator) measures.
  """
  names: tuple[str, ...]
  flip_pairs: tuple[tuple[str, str], ...] = ()
  skeleton: tuple[tuple[str, str], ...] = ()
  normaliser: str = "inter-ocular distance"

  def __post_init__(self):
    if len(set(self.names)) != len(self.names):
      raise ValueError(f"KeypointSpec has duplicate names: {self.names}")
    for a, b in self.flip_pairs + self.skeleton:
      for name in (a, b):
        if name not in self.names:
          raise ValueError(f"KeypointSpec pair ({a!r}, {b!r}) names unknown keypoint {name!r}; "
                           f"known: {self.names}")

  @property
  def num_keypoints(self) -> int:
    return len(self.names)

  def index(self, name: str) -> int:
    return self.names.index(name)

  def flip_permutation(self) -> np.ndarray:
    """Index array `p` such that `keypoints[p]` relabels a mirrored image's keypoints."""
    perm = np.arange(self.num_keypoints)
    for a, b in self.flip_pairs:
      i, j = self.index(a), self.index(b)
      perm[i], perm[j] = j, i
    return perm

  def subset(self, names: Sequence[str]) -> "KeypointSpec":
    """The spec restricted to `names` (in that order); pairs that lose a member are dropped."""
    unknown = [n for n in names if n not in self.names]
    if unknown:
      raise ValueError(f"Unknown keypoint names {unknown}; known: {self.names}")
    keep = lambda pairs: tuple((a, b) for a, b in pairs if a in names and b in names)
    return KeypointSpec(tuple(names), keep(self.flip_pairs), keep(self.skeleton), self.normaliser)


# The 15 keypoints of the Kaggle Facial Keypoints Detection layout. "left" is the subject's left,
# which appears on the right of the image (larger x), as in the Kaggle data.
FACE15 = KeypointSpec(
    names=(
        "left_eye_center", "right_eye_center",
        "left_eye_inner_corner", "left_eye_outer_corner",
        "right_eye_inner_corner", "right_eye_outer_corner",
        "left_eyebrow_inner_end", "left_eyebrow_outer_end",
        "right_eyebrow_inner_end", "right_eyebrow_outer_end",
        "nose_tip",
        "mouth_left_corner", "mouth_right_corner",
        "mouth_center_top_lip", "mouth_center_bottom_lip",
    ),
    flip_pairs=(
        ("left_eye_center", "right_eye_center"),
        ("left_eye_inner_corner", "right_eye_inner_corner"),
        ("left_eye_outer_corner", "right_eye_outer_corner"),
        ("left_eyebrow_inner_end", "right_eyebrow_inner_end"),
        ("left_eyebrow_outer_end", "right_eyebrow_outer_end"),
        ("mouth_left_corner", "mouth_right_corner"),
    ),
    skeleton=(
        ("left_eye_inner_corner", "left_eye_outer_corner"),
        ("right_eye_inner_corner", "right_eye_outer_corner"),
        ("left_eyebrow_inner_end", "left_eyebrow_outer_end"),
        ("right_eyebrow_inner_end", "right_eyebrow_outer_end"),
        ("mouth_left_corner", "mouth_center_top_lip"),
        ("mouth_center_top_lip", "mouth_right_corner"),
        ("mouth_right_corner", "mouth_center_bottom_lip"),
        ("mouth_center_bottom_lip", "mouth_left_corner"),
    ),
)

# The five landmarks of the seed article (and of CelebA): eyes, nose tip, mouth corners.
FACE5_NAMES = ("left_eye_center", "right_eye_center", "nose_tip",
               "mouth_left_corner", "mouth_right_corner")
