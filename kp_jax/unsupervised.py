"""Learning from unlabelled video: losses on a model's predictions for clips of consecutive
frames (kp_jax/data/video.py), computed inside the one jitted training step beside the
labelled loss. Lightning Pose's (Biderman, Whiteway et al., Nature Methods 2024) three, and a
mean teacher's:

  temporal     a keypoint moving more than `threshold_px` (the video's pixels) between
               neighbouring frames costs the excess, weighted by both frames' likelihoods
  pca          a pose far from the subspace of the labelled poses (the PCA keeping `explained`
               of their variance, over `keypoints`) costs each keypoint's distance from it
               beyond the largest a labelled pose shows
  multiview    keypoints declared one point seen twice (`data.same_point` pairs, e.g. a body
               part and its mirror image) must fit the 3-dimensional subspace of the labelled
               pairs' (x1, y1, x2, y2) (two affine views of a 3-D point): the same loss on
               those 4-vectors
  consistency  the EMA teacher (`optimizer.ema_decay`) predicts on a second, differently
               augmented view of the frames; its keypoints where its likelihood reaches
               `threshold`, taken into the student's view, are the student's pseudo-labels,
               under the head's own loss

Each loss has a `weight` (0: off) and `ramp_steps` (the weight rises linearly from 0 over the
first steps, while the predictions are still noise). The subspaces are fitted once, in float64,
from the training split's labels (`fit`), and travel into the step as constants.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

LOSSES = ("temporal", "pca", "multiview", "consistency")
POINT_LOSSES = ("temporal", "pca", "multiview")  # on keypoints with gradients (soft_decode)


@dataclasses.dataclass(frozen=True)
class Subspace:
  """An affine subspace fitted to labelled vectors: `mean` [D], orthonormal `basis` [D, r],
  and `epsilon`, the largest distance of a labelled point (2-D block of the vector) from it."""
  mean: np.ndarray
  basis: np.ndarray
  epsilon: float


def point_residuals(vectors, mean, basis):
  """Distances [..., D / 2] of each (x, y) block of `vectors` [..., D] from its projection on
  the subspace."""
  centred = vectors - mean
  residual = centred - (centred @ basis) @ basis.T
  # optax.safe_norm: jnp.linalg.norm's gradient at a zero residual is NaN, and the loss's
  # relu does not stop a NaN (0 * NaN).
  return optax.safe_norm(residual.reshape(*residual.shape[:-1], -1, 2), 0.0, axis=-1)


def fit_subspace(vectors: np.ndarray, *, explained: float | None = None,
                 rank: int | None = None) -> Subspace:
  """The PCA of `vectors` [N, D] keeping `rank` components, or the fewest that explain
  `explained` of the variance."""
  vectors = np.asarray(vectors, np.float64)
  mean = vectors.mean(0)
  _, singular, vt = np.linalg.svd(vectors - mean, full_matrices=False)
  if rank is None:
    share = np.cumsum(singular ** 2) / np.sum(singular ** 2)
    rank = int(np.searchsorted(share, explained) + 1)
  basis = vt[:rank].T
  epsilon = float(np.max(point_residuals(vectors, mean, basis)))
  return Subspace(mean, basis, epsilon)


def subspace_loss(vectors, subspace: Subspace):
  """Mean over points of each (x, y) block's distance from `subspace` beyond its epsilon."""
  distance = point_residuals(vectors, jnp.asarray(subspace.mean, jnp.float32),
                             jnp.asarray(subspace.basis, jnp.float32))
  return jnp.mean(jax.nn.relu(distance - subspace.epsilon))


def temporal_loss(points, likelihood, threshold_px: float):
  """points [U, T, K, 2] (video pixels), likelihood [U, T, K]: the moves between neighbouring
  frames beyond `threshold_px`, averaged with weights min(likelihood of both frames)."""
  move = optax.safe_norm(points[:, 1:] - points[:, :-1], 0.0, axis=-1)  # a still keypoint: 0
  weight = jax.lax.stop_gradient(jnp.minimum(likelihood[:, 1:], likelihood[:, :-1]))
  return jnp.sum(weight * jax.nn.relu(move - threshold_px)) / jnp.maximum(jnp.sum(weight), 1e-6)


def to_source(points, matrix):
  """Input pixels [N, K, 2] -> the video's pixels, through the inverse of each frame's
  source -> input `matrix` [N, 3, 3]."""
  inverse = jnp.linalg.inv(matrix)
  return jnp.einsum("nij,nkj->nki", inverse[:, :2, :2], points) + inverse[:, None, :2, 2]


def between_views(points, from_matrix, to_matrix):
  """Keypoints [N, K, 2] in one view's input pixels moved into another's (both [N, 3, 3]
  source -> input)."""
  moved = to_matrix @ jnp.linalg.inv(from_matrix)
  return jnp.einsum("nij,nkj->nki", moved[:, :2, :2], points) + moved[:, None, :2, 2]


def ramp(step, ramp_steps: int):
  return jnp.clip(step / ramp_steps, 0.0, 1.0) if ramp_steps else 1.0


@dataclasses.dataclass(frozen=True, eq=False)
class Unsupervised:
  """The unsupervised losses of a run: their config (`config.unsupervised`) and the
  subspaces fitted to its labels."""
  config: dict  # loss name -> its fields (weight, ramp_steps, ...), as plain values
  pose: Subspace | None = None
  pose_indices: tuple = ()
  views: Subspace | None = None
  view_pairs: tuple = ()  # (keypoint index, keypoint index) pairs

  def weight(self, name: str) -> float:
    return self.config[name]["weight"]

  def losses(self, head, outputs, batch, teacher_outputs):
    """{name: unweighted loss} of the active losses on the clips' outputs ([U * T, ...])."""
    clips = batch["unlabelled"]
    u, t = clips.shape[:2]
    matrix = jnp.repeat(batch["unlabelled_matrix"], t, axis=0)
    result = {}
    if any(self.weight(n) for n in POINT_LOSSES):
      points = to_source(head.soft_decode(outputs), matrix)  # [U * T, K, 2], the video's pixels
      if self.weight("temporal"):
        likelihood = head.likelihood(outputs).reshape(u, t, -1)
        result["temporal"] = temporal_loss(points.reshape(u, t, *points.shape[1:]), likelihood,
                                           self.config["temporal"]["threshold_px"])
      if self.weight("pca"):
        poses = points[:, np.array(self.pose_indices)].reshape(u * t, -1)
        result["pca"] = subspace_loss(poses, self.pose)
      if self.weight("multiview"):
        pairs = np.array(self.view_pairs)
        both = jnp.concatenate([points[:, pairs[:, 0]], points[:, pairs[:, 1]]], -1)
        result["multiview"] = subspace_loss(both, self.views)
    if self.weight("consistency"):
      teacher_matrix = jnp.repeat(batch["teacher_matrix"], t, axis=0)
      targets = between_views(head.decode(teacher_outputs), teacher_matrix, matrix)
      confident = head.likelihood(teacher_outputs) >= self.config["consistency"]["threshold"]
      if getattr(head, "unlabelled_as_absent", False):  # a doubtful keypoint is no label,
        head = dataclasses.replace(head, unlabelled_as_absent=False)  # not an absent one
      result["consistency"] = head.compute_loss(outputs, {
          "keypoints": jax.lax.stop_gradient(targets),
          "visible": jax.lax.stop_gradient(confident.astype(jnp.float32))})
    return result

  def total(self, terms: dict, step):
    return sum(self.weight(n) * ramp(step, self.config[n]["ramp_steps"]) * v
               for n, v in terms.items())


def active(config) -> bool:
  """Whether `config` (a run's) has an unsupervised loss on."""
  section = config.get("unsupervised")
  return bool(section) and any(section[n].weight for n in LOSSES)


def labelled_points(source) -> tuple[np.ndarray, np.ndarray]:
  """(keypoints [N, K, 2], visible [N, K]) of the training split, in its images' pixels."""
  keypoints, visible = [], []
  data = (source.annotations("train") if source.annotations else source.load("train", 0, 1))
  for example in data.as_numpy_iterator():
    keypoints.append(example["keypoints"])
    visible.append(example["visible"])
  return np.stack(keypoints), np.stack(visible)


def fit(config, source) -> Unsupervised | None:
  """The run's unsupervised losses with their subspaces fitted to the training labels; None
  when none is on. Errors name the config field to set."""
  if not active(config):
    return None
  section = config.unsupervised
  names = list(source.spec.names)
  settings = {n: dict(section[n]) for n in LOSSES}
  if settings["consistency"]["weight"] and not config.optimizer.ema_decay:
    raise ValueError("config.unsupervised.consistency needs a teacher: set "
                     "config.optimizer.ema_decay (e.g. 0.99).")
  if not config.data.unlabelled_batch_size:
    raise ValueError("config.unsupervised has losses on: set config.data.unlabelled_batch_size "
                     "(clips per batch).")
  keypoints, visible = labelled_points(source)
  found = {}
  if settings["pca"]["weight"]:
    chosen = list(section.pca.keypoints) or names
    unknown = sorted(set(chosen) - set(names))
    if unknown:
      raise ValueError(f"config.unsupervised.pca.keypoints: {unknown} are not keypoints of "
                       f"{source.name} ({names}).")
    indices = [names.index(n) for n in chosen]
    complete = visible[:, indices].all(1)
    if complete.sum() <= 2 * len(indices):
      raise ValueError(f"config.unsupervised.pca: {complete.sum()} training frames have all of "
                       f"{chosen} labelled, too few for a PCA of {2 * len(indices)} coordinates; "
                       "name fewer keypoints in config.unsupervised.pca.keypoints.")
    poses = keypoints[complete][:, indices].reshape(int(complete.sum()), -1)
    found.update(pose=fit_subspace(poses, explained=section.pca.explained),
                 pose_indices=tuple(indices))
  if settings["multiview"]["weight"]:
    pairs = [tuple(p) for p in config.data.same_point]
    unknown = sorted({n for p in pairs for n in p} - set(names))
    if not pairs or unknown:
      raise ValueError("config.unsupervised.multiview needs config.data.same_point: pairs of "
                       f"keypoint names of one point in two views (unknown: {unknown}).")
    index = np.array([[names.index(a), names.index(b)] for a, b in pairs])
    both = visible[:, index[:, 0]] * visible[:, index[:, 1]] > 0
    vectors = np.concatenate([keypoints[:, index[:, 0]], keypoints[:, index[:, 1]]], -1)[both]
    if len(vectors) < 8:
      raise ValueError(f"config.data.same_point: only {len(vectors)} labelled pairs with both "
                       "points visible; the multi-view loss needs at least 8.")
    found.update(views=fit_subspace(vectors, rank=3), view_pairs=tuple(map(tuple, index)))
  return Unsupervised(settings, **found)
