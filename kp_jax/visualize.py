"""Pictures of predictions: images with true (green) and predicted (red) keypoints."""

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def denormalize(image, data_config):
  return np.clip(image * data_config.image_std + data_config.image_mean, 0.0, 1.0)


def draw(ax, image, pred, true=None, visible=None, spec=None):
  """One image with keypoints; a line joins each prediction to its true position."""
  ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
  if spec is not None:
    for a, b in spec.skeleton:
      i, j = spec.index(a), spec.index(b)
      ax.plot(*pred[[i, j]].T, color="red", linewidth=0.6, alpha=0.6)
  if true is not None:
    shown = visible > 0
    ax.plot(np.stack([true[shown, 0], pred[shown, 0]]), np.stack([true[shown, 1], pred[shown, 1]]),
            color="yellow", linewidth=0.8)
    ax.scatter(*true[shown].T, s=10, c="lime", label="true")
  ax.scatter(*pred.T, s=10, c="red", marker="x", label="predicted")
  ax.set_xlim(-0.5, image.shape[1] - 0.5)
  ax.set_ylim(image.shape[0] - 0.5, -0.5)
  ax.axis("off")


def save_grid(path, images, pred, true, visible, spec, data_config, columns=6, count=24):
  count = min(count, len(images))
  rows = -(-count // columns)
  fig, axes = plt.subplots(rows, columns, figsize=(2 * columns, 2 * rows), squeeze=False)
  for i, ax in enumerate(axes.flat):
    if i < count:
      draw(ax, denormalize(images[i], data_config), pred[i], true[i], visible[i], spec)
    else:
      ax.axis("off")
  fig.suptitle("validation: true (green), predicted (red x)", fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)
