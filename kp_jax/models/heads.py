"""Heads: a Flax module on the backbone's features, plus the loss and the decoder that go with it.

Every head turns its outputs into keypoints [B, K, 2] in input-image pixels (`decode`, and
`soft_decode`: keypoints that carry gradients, for losses on them), a likelihood per keypoint
in [0, 1] (`likelihood`), and has a loss of the outputs and a batch (`compute_loss`). Pure JAX:
no TensorFlow here.

  regression  global features -> dense layers -> 2K sigmoid coordinates (the seed CNN's head)
  heatmap     upsampling to a map per keypoint at `stride`; MSE or BCE to Gaussian targets;
              decoded by argmax with quarter-offset or DARK sub-pixel refinement
  integral    the same maps, read by soft-argmax and trained on coordinates (DSNT-style)
  centre      instance centres and sizes (CenterNet), the first stage of find-then-refine
"""

import dataclasses
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from kp_jax import heatmaps, losses
from kp_jax.models import backbones, kernels


UPSAMPLING = ("deconv", "resize", "bilinear")


class RegressionLayers(nn.Module):
  num_keypoints: int
  hidden: Sequence[int] = (64,)
  pool: str = "flatten"  # "flatten" (the seed CNN) or "avg" (global average pooling)
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, features, image_hw, train: bool = False):
    x = (features.reshape(features.shape[0], -1) if self.pool == "flatten"
         else features.mean(axis=(1, 2)))
    for width in self.hidden:
      x = nn.relu(nn.Dense(width, dtype=self.dtype)(x))
    x = nn.Dense(2 * self.num_keypoints, dtype=self.dtype)(x)
    return {"coords": nn.sigmoid(x.astype(jnp.float32)).reshape(-1, self.num_keypoints, 2)}


class Deconv2x(nn.ConvTranspose):
  """nn.ConvTranspose(features, (4, 4), strides=(2, 2), 'SAME', no bias): the same parameters,
  initialisers and values, computed by kernels.conv_transpose_4x4_stride_2 (faster on CPU)."""

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", self.kernel_init, (4, 4, x.shape[-1], self.features),
                        self.param_dtype)
    x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
    return kernels.conv_transpose_4x4_stride_2(x, kernel)


class MapLayers(nn.Module):
  """SimpleBaseline's head: [upsample x2 -> BN -> ReLU] until the maps reach `stride`, then
  `convs` [3x3 conv -> BN -> ReLU] and a 1x1 conv to one map per keypoint.

  Upsampling is a 4x4 transposed conv ("deconv", as SimpleBaseline), or nearest-neighbour
  resizing followed by a 3x3 conv ("resize"), which XLA runs faster on CPU: it has no
  inserted zeros to multiply. "bilinear" is ViTPose's simple decoder: ReLU, one bilinear
  resize to the maps' size (torch's align_corners=False), no layers, then the final conv of
  `final_kernel` (3 there).
  """
  num_keypoints: int
  stride: int = 4
  features: int = 128
  convs: int = 0
  upsample: str = "deconv"
  dtype: jnp.dtype = jnp.float32
  axis_name: str | None = None
  cpu_kernels: bool = True  # Deconv2x; False: nn.ConvTranspose (the same parameters)
  final_kernel: int = 1

  @nn.compact
  def __call__(self, x, image_hw, train: bool = False):
    num_up = math.log2(image_hw[0] / x.shape[1] / self.stride)
    if num_up < 0 or num_up != int(num_up) or image_hw[0] % self.stride:
      raise ValueError(f"Maps of stride {self.stride} cannot be reached from features "
                       f"{x.shape[1:3]} of images {image_hw}: set the backbone's output "
                       "stride to the head's stride times a power of two.")
    norm = backbones.batch_norm(train, self.dtype, self.axis_name)
    if self.upsample == "bilinear":
      b, h, w, c = x.shape
      factor = 2 ** int(num_up)
      x = jax.image.resize(nn.relu(x), (b, h * factor, w * factor, c), "bilinear")
    for i in range(0 if self.upsample == "bilinear" else int(num_up)):
      if self.upsample == "deconv":
        deconv = Deconv2x if self.cpu_kernels else nn.ConvTranspose
        x = deconv(self.features, (4, 4), strides=(2, 2), use_bias=False, dtype=self.dtype,
                   name=f"ConvTranspose_{i}")(x)
      else:
        b, h, w, c = x.shape
        x = jax.image.resize(x, (b, 2 * h, 2 * w, c), "nearest")
        x = nn.Conv(self.features, (3, 3), use_bias=False, dtype=self.dtype)(x)
      x = nn.relu(norm()(x))
    for _ in range(self.convs):
      x = nn.relu(norm()(nn.Conv(self.features, (3, 3), use_bias=False, dtype=self.dtype)(x)))
    maps = nn.Conv(self.num_keypoints, (self.final_kernel,) * 2, dtype=self.dtype)(x)
    return {"maps": maps.astype(jnp.float32)}


class _Validated:
  """Each head mixin checks its own fields in __post_init__, then defers to the next."""

  def __post_init__(self):
    pass

  def soft_decode(self, outputs):
    """Keypoints [B, K, 2] with gradients, for losses on decoded keypoints (learning from
    video): `decode` itself where it is differentiable."""
    return self.decode(outputs)

  def match_labels(self, pred, likelihood, keypoints):
    """The predictions [B, K, 2] (and likelihoods [B, K]) in the order of the labelled
    `keypoints` [B, K, 2], for the metrics: the k-th output is the k-th keypoint."""
    del keypoints
    return pred, likelihood


@dataclasses.dataclass(frozen=True, kw_only=True)
class _CoordinateLoss(_Validated):
  loss: str = "l2"  # a key of kp_jax.losses.COORDINATE_LOSSES, on errors in pixels
  smooth_l1_beta: float = 1.0  # pixels
  wing_width: float = 10.0  # pixels
  wing_curvature: float = 2.0  # pixels

  def __post_init__(self):
    if self.loss not in losses.COORDINATE_LOSSES:
      raise ValueError(f"loss={self.loss!r}: choose one of {sorted(losses.COORDINATE_LOSSES)}.")
    super().__post_init__()

  def compute_loss(self, outputs, batch):
    options = {"smooth_l1": {"beta": self.smooth_l1_beta},
               "wing": {"width": self.wing_width, "curvature": self.wing_curvature}}
    error = self.decode(outputs) - batch["keypoints"]
    return losses.COORDINATE_LOSSES[self.loss](error, batch["visible"],
                                               **options.get(self.loss, {}))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Regression(_CoordinateLoss):
  num_keypoints: int
  image_hw: tuple
  hidden: Sequence[int] = (64,)
  pool: str = "flatten"

  def module(self, dtype, axis_name, cpu_kernels: bool = True):
    del axis_name, cpu_kernels  # dense layers only
    return RegressionLayers(self.num_keypoints, tuple(self.hidden), self.pool, dtype)

  def decode(self, outputs):
    """Normalised (x + 0.5) / W, (y + 0.5) / H -> pixels."""
    size = jnp.array(self.image_hw[::-1], jnp.float32)
    return outputs["coords"] * size - 0.5

  def likelihood(self, outputs):
    """Regression has no confidence: 1 for every keypoint (as MMPose's regression heads)."""
    return jnp.ones(outputs["coords"].shape[:2], jnp.float32)


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Maps(_Validated):
  num_keypoints: int
  image_hw: tuple
  stride: int = 4
  features: int = 128
  convs: int = 0
  upsample: str = "deconv"  # "deconv", "resize" or "bilinear"
  final_kernel: int = 1  # of the conv to one map per keypoint

  def __post_init__(self):
    if self.upsample not in UPSAMPLING:
      raise ValueError(f"upsample={self.upsample!r}: choose one of {UPSAMPLING}.")
    super().__post_init__()

  def module(self, dtype, axis_name, cpu_kernels: bool = True):
    return MapLayers(self.num_keypoints, self.stride, self.features, self.convs,
                     self.upsample, dtype, axis_name, cpu_kernels, self.final_kernel)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Heatmap(_Maps):
  sigma: float = 2.0  # of the Gaussian targets, in map pixels
  decoder: str = "dark"  # a key of kp_jax.heatmaps.DECODERS
  blur_sigma: float = 0.0  # DARK's modulation blur before decoding, in map pixels; 0: none
  # UDP's codec (MMPose's UDPHeatmap, heatmaps.udp_to_map): map and input aligned at their
  # first and last pixel centres, targets cut at 3 sigma; with config.data.udp's crop.
  udp: bool = False
  # False: an unlabelled keypoint's map is left out of the loss (COCO: v = 0 means "not
  # labelled", it may be there). True: it is trained towards an empty map, as DeepLabCut does
  # (its annotators leave out body parts that are not visible), so the map's peak - the
  # likelihood - learns to say when a body part is absent.
  unlabelled_as_absent: bool = False
  # "mse": the maps regress the targets (MMPose, SLEAP). "bce": the maps are logits, their
  # sigmoid trained by binary cross-entropy towards the targets (DeepLabCut 3). It scores the
  # maps on a log scale, so a roughly placed keypoint already pays; from scratch on a few dozen
  # frames, MSE's maps can stay empty for thousands of steps (docs/deeplabcut.md).
  loss: str = "mse"  # a key of kp_jax.losses.HEATMAP_LOSSES
  # soft_decode: the centroid of each map's probabilities raised to this power, within this
  # many map pixels of its maximum. A Gaussian peak stays a Gaussian about the same centre
  # (sigma / sqrt(power)), so it is found without bias, and the window keeps the losses on
  # these keypoints from moving them by raising a second peak elsewhere.
  soft_decode_power: float = 4.0
  soft_decode_radius: int = 3

  def __post_init__(self):
    if self.decoder not in heatmaps.DECODERS:
      raise ValueError(f"decoder={self.decoder!r}: choose one of {sorted(heatmaps.DECODERS)}.")
    if self.loss not in losses.HEATMAP_LOSSES:
      raise ValueError(f"loss={self.loss!r}: choose one of {sorted(losses.HEATMAP_LOSSES)}.")
    super().__post_init__()

  def _map_loss(self, maps, target, weight):
    return losses.HEATMAP_LOSSES[self.loss](maps, target, weight)

  def _probabilities(self, maps):
    """The maps as the targets are drawn: peaks near 1 at keypoints, 0 elsewhere."""
    return jax.nn.sigmoid(maps) if self.loss == "bce" else maps

  def _log_probabilities(self, maps):
    """log(_probabilities(maps)), computed stably from BCE's logits."""
    if self.loss == "bce":
      return jax.nn.log_sigmoid(maps)
    return jnp.log(jnp.clip(maps, 1e-6, None))  # MSE's maps can dip below 0

  def compute_loss(self, outputs, batch):
    maps = outputs["maps"]
    if self.udp:
      target = heatmaps.udp_gaussian_maps(batch["keypoints"], self.image_hw, maps.shape[1:3],
                                          self.sigma)
    else:
      target = heatmaps.gaussian_maps(batch["keypoints"], maps.shape[1:3], self.stride,
                                      self.sigma)
    visible = batch["visible"][:, None, None, :]
    if self.unlabelled_as_absent:
      return self._map_loss(maps, target * visible, 1.0)
    return self._map_loss(maps, target, visible)

  def likelihood(self, outputs):
    """Each map's peak, clipped to [0, 1]: the targets peak at 1 on a labelled keypoint and
    are 0 elsewhere, so the peak reads as DeepLabCut's likelihood does."""
    return jnp.clip(jnp.max(self._probabilities(outputs["maps"]), axis=(1, 2)), 0.0, 1.0)

  def decode(self, outputs):
    maps = self._probabilities(outputs["maps"])
    if self.decoder == "dark":
      return self._in_image(heatmaps.decode_dark(maps, self._stride, self.blur_sigma), maps)
    return self._in_image(heatmaps.DECODERS[self.decoder](maps, self._stride), maps)

  def soft_decode(self, outputs):
    """The expected position under each map's probabilities ** soft_decode_power (normalised)
    near its maximum: differentiable, where the argmax that decode starts from is not."""
    maps = outputs["maps"]
    points = heatmaps.local_soft_argmax(self.soft_decode_power * self._log_probabilities(maps),
                                        self._stride, self.soft_decode_radius)
    return self._in_image(points, maps)

  @property
  def _stride(self):
    return 1 if self.udp else self.stride  # UDP: decoded in its map coordinates

  def _in_image(self, points, maps):
    return heatmaps.udp_from_map(points, self.image_hw, maps.shape[1:3]) if self.udp else points


@dataclasses.dataclass(frozen=True, kw_only=True)
class Integral(_Maps, _CoordinateLoss):
  def decode(self, outputs):
    return heatmaps.soft_argmax(outputs["maps"], self.stride)

  def likelihood(self, outputs):
    """The softmax mass in the 3x3 map pixels around each map's maximum: near 1 for a sharp,
    single peak, low for a spread-out or ambiguous map."""
    return heatmaps.peak_mass(outputs["maps"])


@dataclasses.dataclass(frozen=True, kw_only=True)
class Centre(Heatmap):
  """Instance centres, as CenterNet's "objects as points": one heatmap of every instance's
  centre, plus each instance's (width, height) regressed at its centre's map pixel as
  log(size / stride), trained by L1 on the log of the example's `size` (scale-free: a 10% error
  costs the same on a mouse and on a horse). The centre model's examples carry up to
  `num_keypoints` instance centres as their keypoints (interchangeable slots, the unused ones
  invisible); the map's target is the maximum of their Gaussians, empty where there is no
  instance, so a peak's height is its instance's score. Slots marked `ignore` are regions
  (centre, size) left out of the loss: COCO's crowds, people without labelled keypoints.

  `decode` and `likelihood` give the `num_keypoints` best peaks (`detect`); the evaluation
  pairs each labelled centre with its nearest peak (`match_labels`).
  """
  # The heatmap MSE averages over every map pixel (~1e-2 at the start), the log-size L1 over
  # instances (~1): this weight keeps the size from drowning the centres.
  size_weight: float = 1e-3

  def module(self, dtype, axis_name, cpu_kernels: bool = True):
    return MapLayers(1 + 2, self.stride, self.features, self.convs, self.upsample, dtype,
                     axis_name, cpu_kernels)

  def sizes_at(self, outputs, points):
    """The (width, height) [B, N, 2] in input pixels regressed at the map pixels nearest to
    `points` [B, N, 2] (input pixels)."""
    return jnp.exp(self._log_sizes_at(outputs, points)) * self.stride

  def _log_sizes_at(self, outputs, points):
    maps = outputs["maps"]
    h, w = maps.shape[1:3]
    xy = jnp.clip(jnp.round(heatmaps.to_map(points, self.stride)).astype(jnp.int32), 0,
                  jnp.array([w - 1, h - 1]))
    rows = jnp.arange(maps.shape[0])[:, None]
    return maps[rows, xy[..., 1], xy[..., 0], 1:]

  def compute_loss(self, outputs, batch):
    maps, visible = outputs["maps"][..., :1], batch["visible"]
    targets = heatmaps.gaussian_maps(batch["keypoints"], maps.shape[1:3], self.stride,
                                     self.sigma)
    target = jnp.max(targets * visible[:, None, None, :], -1, keepdims=True)
    weight = 1.0
    if "ignore" in batch:
      weight = 1.0 - self._inside(batch["keypoints"], batch["size"], batch["ignore"],
                                  maps.shape[1:3])
    centre_loss = self._map_loss(maps, target, weight)
    error = (self._log_sizes_at(outputs, batch["keypoints"])
             - jnp.log(jnp.maximum(batch["size"], 1.0) / self.stride))
    size_loss = jnp.mean(jnp.sum(jnp.abs(error).sum(-1) * visible, -1))
    return centre_loss + self.size_weight * size_loss

  def _inside(self, centres, sizes, regions, map_hw):
    """[B, h, w, 1]: 1 at the map pixels inside any marked region (a box of `sizes` [B, M, 2]
    about `centres` [B, M, 2], input pixels, where `regions` [B, M] is 1)."""
    ys = heatmaps.from_map(jnp.arange(map_hw[0], dtype=jnp.float32), self.stride)
    xs = heatmaps.from_map(jnp.arange(map_hw[1], dtype=jnp.float32), self.stride)
    half = sizes / 2
    inside_x = jnp.abs(xs[None, None, :, None] - centres[:, None, None, :, 0]) <= half[
        :, None, None, :, 0]
    inside_y = jnp.abs(ys[None, :, None, None] - centres[:, None, None, :, 1]) <= half[
        :, None, None, :, 1]
    marked = (inside_x & inside_y & (regions[:, None, None, :] > 0)).astype(jnp.float32)
    return jnp.max(marked, -1, keepdims=True)

  def likelihood(self, outputs):
    return self.detect(outputs, self.num_keypoints)[2]

  def decode(self, outputs):
    return self.detect(outputs, self.num_keypoints)[0]

  def match_labels(self, pred, likelihood, keypoints):
    """Each labelled centre's nearest predicted one (and its score): the slots are
    interchangeable, so the error of a centre is that of the closest detection."""
    distance = jnp.linalg.norm(keypoints[:, :, None] - pred[:, None], axis=-1)  # [B, M, M]
    nearest = jnp.argmin(distance, -1)
    take = lambda x: jnp.take_along_axis(x, nearest.reshape(*nearest.shape, *[1] * (x.ndim - 2)),
                                         1)
    return take(pred), take(likelihood)

  def detect(self, outputs, max_instances: int):
    """Up to `max_instances` instances per image, best first: (centres [B, M, 2] and sizes
    [B, M, 2] in input pixels, scores [B, M] in [0, 1]). Fixed shapes, so it compiles into the
    step; the first instance is the map's maximum."""
    maps = self._probabilities(outputs["maps"][..., :1])
    peaks, scores = heatmaps.top_peaks(maps, max_instances)
    tiled = jnp.broadcast_to(maps, (*maps.shape[:3], max_instances))  # one map per peak
    centres = heatmaps.decode_dark(tiled, self.stride, self.blur_sigma, peak=peaks)
    return centres, self.sizes_at(outputs, centres), jnp.clip(scores, 0.0, 1.0)  # no peak: 0


HEADS = {"regression": Regression, "heatmap": Heatmap, "integral": Integral, "centre": Centre}
