"""Pictures of predictions: one colour per keypoint with a legend, the skeleton, likelihoods
shown by opacity (points under the cutoff hidden), and optionally the true keypoints."""

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from etils import epath  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402


def denormalize(image, data_config):
  return np.clip(image * data_config.image_std + data_config.image_mean, 0.0, 1.0)


def keypoint_colors(num_keypoints: int) -> np.ndarray:
  """[K, 4] RGBA, evenly spaced on a qualitative-looking wheel so neighbours differ."""
  cmap = plt.get_cmap("tab10" if num_keypoints <= 10 else "hsv")
  return np.array([cmap(i if num_keypoints <= 10 else i / num_keypoints)
                   for i in range(num_keypoints)])


def shown(likelihood, cutoff: float) -> np.ndarray:
  """Which keypoints to draw: likelihood at or above the cutoff."""
  return np.asarray(likelihood) >= cutoff


def draw(ax, image, pred, likelihood=None, names=(), skeleton=(), cutoff: float = 0.0,
         true=None, visible=None, legend: bool = False):
  """One image with predicted keypoints (circles, a colour each, opacity = likelihood; hidden
  under `cutoff`), the skeleton between shown points, and true keypoints as crosses joined to
  their predictions. `skeleton` holds index pairs."""
  ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
  k = len(pred)
  likelihood = np.ones(k) if likelihood is None else np.asarray(likelihood, np.float64)
  colors, keep = keypoint_colors(k), shown(likelihood, cutoff)
  alpha = 0.35 + 0.65 * np.clip(likelihood, 0, 1)  # faint but visible at low likelihood
  for i, j in skeleton:
    if keep[i] and keep[j]:
      ax.plot(*pred[[i, j]].T, color="white", linewidth=1.0, alpha=0.7)
  if true is not None:
    for i in np.flatnonzero(visible > 0):
      ax.plot(*np.stack([true[i], pred[i]]).T, color=colors[i], linewidth=0.8, alpha=0.8)
      ax.scatter(*true[i], s=28, color=colors[i], marker="x", linewidths=1.2)
  for i in range(k):
    label = names[i] if i < len(names) else str(i)
    if keep[i]:
      ax.scatter(*pred[i], s=30, color=colors[i][:3], alpha=alpha[i], edgecolors="white",
                 linewidths=0.6, label=f"{label} {likelihood[i]:.2f}")
    else:
      ax.scatter([], [], s=30, color=colors[i][:3], alpha=0.3, label=f"{label} (hidden)")
  ax.set_xlim(-0.5, image.shape[1] - 0.5)
  ax.set_ylim(image.shape[0] - 0.5, -0.5)
  ax.axis("off")
  if legend:
    ax.legend(loc="upper right", fontsize=6, framealpha=0.6, markerscale=0.8)


def save_grid(path, images, pred, likelihood, true, visible, spec, config, columns=6,
              count=24):
  """Validation images: predictions (circles) and true keypoints (crosses), a colour each;
  the legend on the first image names them."""
  count = min(count, len(images))
  columns = min(columns, count)
  rows = -(-count // columns)
  height, width = images.shape[1:3]
  size = 2.5 * max(1.0, width / height)
  fig, axes = plt.subplots(rows, columns, figsize=(size * columns, size * rows * height / width),
                           squeeze=False)
  for i, ax in enumerate(axes.flat):
    if i < count:
      draw(ax, denormalize(images[i], config.data), pred[i], likelihood[i], spec.names,
           spec.skeleton_indices(), config.likelihood_cutoff, true[i], visible[i],
           legend=i == 0)
    else:
      ax.axis("off")
  fig.suptitle("validation: predicted (circles, opacity = likelihood), true (crosses)",
               fontsize=10)
  fig.tight_layout()
  with epath.Path(path).open("wb") as f:  # any file system, as the rest of the workdir
    fig.savefig(f, dpi=80, format="png")
  plt.close(fig)


def draw_frame(image, points, likelihood, names, skeleton, cutoff: float = 0.0) -> np.ndarray:
  """An RGB uint8 frame [h, w, 3] with its predicted keypoints drawn (fast enough for video):
  a filled circle per keypoint in its colour, opacity = likelihood, hidden under `cutoff`;
  the skeleton (index pairs) between shown points; the names in a legend at the top left."""
  height, width = image.shape[:2]
  radius = max(3, round(min(height, width) / 100))
  canvas = Image.fromarray(image).convert("RGBA")
  layer = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
  pen = ImageDraw.Draw(layer)
  colors = (keypoint_colors(len(points))[:, :3] * 255).astype(int)
  keep = shown(likelihood, cutoff)
  for i, j in skeleton:
    if keep[i] and keep[j]:
      pen.line([tuple(points[i]), tuple(points[j])], fill=(255, 255, 255, 170),
               width=max(1, radius // 2))
  for i, ((x, y), p) in enumerate(zip(points, likelihood)):
    if keep[i]:
      alpha = int(255 * (0.35 + 0.65 * float(np.clip(p, 0, 1))))
      pen.ellipse([x - radius, y - radius, x + radius, y + radius],
                  fill=(*colors[i], alpha), outline=(255, 255, 255, alpha))
  font = ImageFont.load_default(size=max(10, 2 * radius + 4))
  line = font.size + 4
  for i, name in enumerate(names):
    text = f"{name} {likelihood[i]:.2f}" if keep[i] else f"{name} (hidden)"
    pen.rectangle([4, 4 + i * line, 4 + line - 6, 4 + i * line + line - 6],
                  fill=(*colors[i], 255 if keep[i] else 90))
    pen.text((4 + line, 4 + i * line), text, font=font,
             fill=(255, 255, 255, 255 if keep[i] else 140))
  return np.asarray(Image.alpha_composite(canvas, layer).convert("RGB"))
