"""Keypoint metadata: names, left/right flip pairs, skeleton, OKS sigmas, the NME normaliser.

Coordinates everywhere in kp-jax are (x, y) in pixels of the image they belong to, with pixel
centres at integer coordinates: the top-left pixel's centre is (0, 0), so an image of width W
spans x in [-0.5, W - 0.5] and a horizontal flip maps x to W - 1 - x.
"""

import dataclasses
import re
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
    sigmas: per-keypoint OKS constants for COCO keypoint AP (how precisely each keypoint can be
      placed, relative to the object's size); () for DEFAULT_OKS_SIGMA everywhere.
  """
  names: tuple[str, ...]
  flip_pairs: tuple[tuple[str, str], ...] = ()
  skeleton: tuple[tuple[str, str], ...] = ()
  normaliser: str = "inter-ocular distance"
  sigmas: tuple[float, ...] = ()

  def __post_init__(self):
    if len(set(self.names)) != len(self.names):
      raise ValueError(f"KeypointSpec has duplicate names: {self.names}")
    if self.sigmas and len(self.sigmas) != len(self.names):
      raise ValueError(f"KeypointSpec has {len(self.sigmas)} OKS sigmas for "
                       f"{len(self.names)} keypoints.")
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

  def skeleton_indices(self) -> tuple[tuple[int, int], ...]:
    """The skeleton as keypoint index pairs."""
    return tuple((self.index(a), self.index(b)) for a, b in self.skeleton)

  def flip_permutation(self) -> np.ndarray:
    """Index array `p` such that `keypoints[p]` relabels a mirrored image's keypoints."""
    perm = np.arange(self.num_keypoints)
    for a, b in self.flip_pairs:
      i, j = self.index(a), self.index(b)
      perm[i], perm[j] = j, i
    return perm

  def oks_sigmas(self) -> np.ndarray:
    return np.array(self.sigmas or [DEFAULT_OKS_SIGMA] * self.num_keypoints, np.float64)

  def subset(self, names: Sequence[str]) -> "KeypointSpec":
    """The spec restricted to `names` (in that order); pairs that lose a member are dropped."""
    unknown = [n for n in names if n not in self.names]
    if unknown:
      raise ValueError(f"Unknown keypoint names {unknown}; known: {self.names}")
    keep = lambda pairs: tuple((a, b) for a, b in pairs if a in names and b in names)
    sigmas = tuple(self.sigmas[self.index(n)] for n in names) if self.sigmas else ()
    return KeypointSpec(tuple(names), keep(self.flip_pairs), keep(self.skeleton), self.normaliser,
                        sigmas)


# COCO's sigmas span 0.025 (eyes) to 0.107 (hips); without per-keypoint values, a middling one.
DEFAULT_OKS_SIGMA = 0.05


_SIDE_WORD = re.compile("left|right", re.IGNORECASE)
_SEPARATORS = "_- ."


def _swap_word(match: re.Match) -> str:
  word = match.group()
  other = "right" if word.lower() == "left" else "left"
  return other.upper() if word.isupper() else other.title() if word[0].isupper() else other


def _is_side_letter(name: str, i: int) -> bool:
  """Whether name[i] (an l, L, r or R) is a side marker standing as its own token: after the
  start, a separator or (upper case only) any character; before the end, a separator, a
  digit or an upper-case letter (L_Eye, eye_l, eyeL, forelegL1, lEye, HL)."""
  letter, before, after = name[i], name[i - 1] if i else "", name[i + 1:i + 2]
  starts = not before or before in _SEPARATORS or letter.isupper()
  ends = not after or after in _SEPARATORS or after.isdigit() or after.isupper()
  return starts and ends


def mirror_names(name: str) -> list[str]:
  """The names `name` becomes with one side marker swapped: "left" <-> "right" (any case),
  or a lone l/L <-> r/R (see `_is_side_letter`)."""
  candidates = [_SIDE_WORD.sub(_swap_word, name)]
  swap = str.maketrans("lLrR", "rRlL")
  candidates += [name[:i] + name[i].translate(swap) + name[i + 1:]
                 for i in range(len(name)) if name[i] in "lLrR" and _is_side_letter(name, i)]
  return [c for c in candidates if c != name]


def flip_pairs_from_names(names: Sequence[str]) -> tuple[tuple[str, str], ...]:
  """Pairs of names that are each other's mirror (`mirror_names`): left_eye / right_eye,
  LeftPaw / RightPaw, L_Eye / R_Eye, eyeL / eyeR, forelegL1 / forelegR1, ear-l / ear-r. Each
  name joins at most one pair, the first partner found in `names`' order."""
  known, paired, pairs = set(names), set(), []
  for name in names:
    if name in paired:
      continue
    partner = next((c for c in mirror_names(name) if c in known and c not in paired), None)
    if partner is not None:
      pairs.append((name, partner))
      paired.update((name, partner))
  return tuple(pairs)


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

# COCO person keypoints, with the OKS sigmas of the COCO keypoint evaluation.
COCO_PERSON = KeypointSpec(
    names=("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
           "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
           "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"),
    flip_pairs=(("left_eye", "right_eye"), ("left_ear", "right_ear"),
                ("left_shoulder", "right_shoulder"), ("left_elbow", "right_elbow"),
                ("left_wrist", "right_wrist"), ("left_hip", "right_hip"),
                ("left_knee", "right_knee"), ("left_ankle", "right_ankle")),
    normaliser="box size sqrt(w * h)",
    sigmas=(0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062,
            0.107, 0.107, 0.087, 0.087, 0.089, 0.089),
)

# The 68 iBUG / 300W landmarks (0-based): jaw 0-16, eyebrows 17-26, nose 27-35, eyes 36-47,
# mouth 48-67. Indices follow the annotation scheme, so the names are plain numbers; the flip
# pairs are the scheme's mirror pairs (as in MMPose's 300W metadata).
_FACE68_MIRROR = (
    [(i, 16 - i) for i in range(8)] + [(17 + i, 26 - i) for i in range(5)]
    + [(31, 35), (32, 34), (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67)])
_FACE68_OUTLINES = ((0, 16), (17, 21), (22, 26), (27, 30), (31, 35), (36, 41), (42, 47),
                    (48, 59), (60, 67))
FACE68 = KeypointSpec(
    names=tuple(f"point_{i:02d}" for i in range(68)),
    flip_pairs=tuple((f"point_{a:02d}", f"point_{b:02d}") for a, b in _FACE68_MIRROR),
    skeleton=tuple((f"point_{i:02d}", f"point_{i + 1:02d}")
                   for first, last in _FACE68_OUTLINES for i in range(first, last)),
    normaliser="landmark box size sqrt(w * h)",
)
