"""Pictures of predictions, drawn with Pillow: one colour per keypoint, the skeleton,
likelihoods shown by opacity (points under the cutoff hidden), optionally the true keypoints;
one drawer for the training run's validation grid, prediction overlays and video frames."""

import colorsys
import functools

import numpy as np
from PIL import Image, ImageDraw, ImageFont


# matplotlib's "tab10": distinct colours for up to 10 keypoints.
TAB10 = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
         (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
GRID_TILE = 192  # the grid's images are scaled up (by a whole factor) to about this size
WHITE = (255, 255, 255)


def keypoint_colors(num_keypoints: int) -> np.ndarray:
  """[K, 3] RGB in 0..255: tab10 up to 10 keypoints, else evenly spaced hues."""
  if num_keypoints <= len(TAB10):
    return np.array(TAB10[:num_keypoints], int).reshape(-1, 3)
  return np.array([[round(255 * c) for c in colorsys.hsv_to_rgb(i / num_keypoints, 1, 1)]
                   for i in range(num_keypoints)])


def shown(likelihood, cutoff: float) -> np.ndarray:
  """Which keypoints to draw: likelihood at or above the cutoff."""
  return np.asarray(likelihood) >= cutoff


@functools.lru_cache(maxsize=4096)
def _text(text: str, size: int, alpha: int) -> tuple[Image.Image, float]:
  """`text` in white at `alpha` in Pillow's default font at `size`, drawn at (0, 0) of a
  transparent RGBA image, and its advance (where text after it starts): rendered once, as a
  video's legend repeats the same names and likelihoods frame after frame (rendering its text
  each frame was most of drawing one)."""
  font = ImageFont.load_default(size=size)
  _, _, right, bottom = font.getbbox(text)
  image = Image.new("RGBA", (max(1, right), max(1, bottom)), (0, 0, 0, 0))
  ImageDraw.Draw(image).text((0, 0), text, font=font, fill=(*WHITE, alpha))
  return image, font.getlength(text)


def _legend(labels, colors, opaque, size: int) -> Image.Image:
  """A transparent RGBA image of a colour square and a label per keypoint, one line each; a
  label is (name, its value or ""), the value after the name."""
  line = size + 4
  rows = [[_text(text, size, 255 if bright else 140)
           for text in ((f"{name} ", value) if value else (name,))]
          for (name, value), bright in zip(labels, opaque)]
  width = line + max(round(sum(advance for _, advance in row[:-1])) + row[-1][0].width
                     for row in rows)
  legend = Image.new("RGBA", (width, len(rows) * line), (0, 0, 0, 0))
  pen = ImageDraw.Draw(legend)
  for i, row in enumerate(rows):
    top, left = i * line, line
    pen.rectangle([0, top, line - 6, top + line - 6], fill=(*colors[i], 255 if opaque[i] else 90))
    for sprite, advance in row:
      legend.alpha_composite(sprite, (round(left), top))
      left += advance
  return legend


def _blended(image, layers) -> np.ndarray:
  """A uint8 frame [h, w, 3 or 1] in RGB [h, w, 3] with each (RGBA layer (Pillow), its
  corner's (x, y) on the frame) blended over it as Pillow's alpha_composite blends, at the
  layer's drawn pixels only: the rest of the frame is copied as it is (blending whole frames
  was most of drawing a large one)."""
  out = np.repeat(image, 3, -1) if image.shape[-1] == 1 else image.copy()
  height, width = out.shape[:2]
  for layer, (x, y) in layers:
    box = layer.getbbox()
    if box is None:
      continue
    x0, y0, x1, y1 = box[0], box[1], min(box[2], width - x), min(box[3], height - y)
    if x1 <= x0 or y1 <= y0:
      continue
    top = np.asarray(layer.crop((x0, y0, x1, y1)))
    drawn = top[..., 3] > 0
    region = out[y + y0:y + y1, x + x0:x + x1]
    colour = top[drawn].astype(np.uint16)  # [n, 4]; 255 * 255 + 127 fits
    alpha = colour[:, 3:]
    region[drawn] = (colour[:, :3] * alpha + region[drawn] * (255 - alpha) + 127) // 255
  return out


def _layer(points, margin: float, height: int, width: int):
  """A transparent RGBA layer over the frame's pixels within `margin` of `points` [N, 2]
  (finite ones), clipped to the frame [height, width]; its corner (x, y) on the frame."""
  points = np.asarray(points, np.float64).reshape(-1, 2)
  points = points[np.isfinite(points).all(1)]
  if not len(points):
    return Image.new("RGBA", (1, 1), (0, 0, 0, 0)), (0, 0)
  low = np.clip(np.floor(points.min(0) - margin), 0, [width - 1, height - 1]).astype(int)
  high = np.clip(np.ceil(points.max(0) + margin) + 1, low + 1, [width, height]).astype(int)
  return Image.new("RGBA", tuple(int(v) for v in high - low), (0, 0, 0, 0)), tuple(low)


def draw_frame(image, points, likelihood, names, skeleton, cutoff: float = 0.0, true=None,
               visible=None, legend: bool = True) -> np.ndarray:
  """A uint8 frame [h, w, 3 or 1], in RGB [h, w, 3] with its predicted keypoints drawn (fast
  enough for video): a filled circle per keypoint in its colour, opacity = likelihood, hidden
  under `cutoff`; the skeleton (index pairs) between shown points; the true keypoints (where
  `visible`) as crosses of the same colour joined to their prediction; the names in a legend
  at the top left."""
  height, width = image.shape[:2]
  radius = max(3, round(min(height, width) / 100))
  marked = np.flatnonzero(np.asarray(visible) > 0) if true is not None else np.zeros(0, int)
  points = np.asarray(points, np.float64).reshape(-1, 2)
  true = np.asarray(true, np.float64)[marked] if len(marked) else np.zeros((0, 2))
  layer, corner = _layer(np.concatenate([points, true]), radius + 2, height, width)
  points, true = points - corner, true - corner  # in the layer's pixels
  pen = ImageDraw.Draw(layer)
  colors = keypoint_colors(len(points))
  likelihood = np.asarray(likelihood, np.float64)
  keep = shown(likelihood, cutoff)
  for i, j in skeleton:
    if keep[i] and keep[j]:
      pen.line([tuple(points[i]), tuple(points[j])], fill=(*WHITE, 170),
               width=max(1, radius // 2))
  for i, (x, y) in zip(marked, true):
    colour = (*colors[i], 230)
    pen.line([(x, y), tuple(points[i])], fill=colour, width=1)
    pen.line([(x - radius, y - radius), (x + radius, y + radius)], fill=colour, width=2)
    pen.line([(x - radius, y + radius), (x + radius, y - radius)], fill=colour, width=2)
  for i, ((x, y), p) in enumerate(zip(points, likelihood)):
    if keep[i]:
      alpha = int(255 * (0.35 + 0.65 * float(np.clip(p, 0, 1))))
      pen.ellipse([x - radius, y - radius, x + radius, y + radius],
                  fill=(*colors[i], alpha), outline=(*WHITE, alpha))
  layers = [(layer, corner)]
  if legend:
    layers.append((_legend([(name, f"{likelihood[i]:.2f}" if keep[i] else "(hidden)")
                            for i, name in enumerate(names)],
                           colors, keep, max(10, 2 * radius + 4)), (4, 4)))
  return _blended(image, layers)


GRID_COUNT = 24  # validation images that predictions.png shows


def save_grid(path, images, pred, likelihood, true, visible, spec, config, columns=6,
              count=GRID_COUNT):
  """Validation images (uint8 pixels [N, H, W, C], keypoints in their pixels): predictions
  (circles) and true keypoints (crosses), a colour each, named in a legend beside the grid."""
  count = min(count, len(images))
  columns = min(columns, count)
  rows = -(-count // columns)
  height, width = images.shape[1:3]
  scale = max(1, round(GRID_TILE / max(height, width)))
  gap, title = 4, 24
  step_x, step_y = width * scale + gap, height * scale + gap  # a tile and its gap
  font = ImageFont.load_default(size=12)
  legend_width = 40 + max(len(name) for name in spec.names) * 8
  grid_height = title + max(rows * step_y, len(spec.names) * (font.size + 4))
  grid = Image.new("RGBA", (columns * step_x + legend_width, grid_height), (32, 32, 32, 255))
  to_tile = lambda p: (np.asarray(p, np.float64) + 0.5) * scale - 0.5  # pixel centres
  for i in range(count):
    image = np.repeat(np.repeat(images[i], scale, 0), scale, 1)
    tile = draw_frame(image, to_tile(pred[i]), likelihood[i], spec.names,
                      spec.skeleton_indices(), config.likelihood_cutoff, to_tile(true[i]),
                      visible[i], legend=False)
    row, column = divmod(i, columns)
    grid.paste(Image.fromarray(tile), (column * step_x, title + row * step_y))
  pen = ImageDraw.Draw(grid)
  pen.text((4, 4), "validation: predicted (circles, opacity = likelihood), true (crosses)",
           font=font, fill=WHITE)
  grid.alpha_composite(_legend([(name, "") for name in spec.names],
                               keypoint_colors(len(spec.names)), [True] * len(spec.names),
                               font.size), (columns * step_x + 4, title))
  from etils import epath  # noqa: PLC0415 -- the exported runner draws without it
  with epath.Path(path).open("wb") as f:  # any file system, as the rest of the workdir
    grid.convert("RGB").save(f, format="png")


def draw_instances(image, instances, skeleton, cutoff: float = 0.0) -> np.ndarray:
  """A uint8 frame [h, w, 3 or 1], in RGB [h, w, 3] with several instances drawn, each in its
  own colour (by its id, so a track keeps its colour) with its id beside it: `instances` are
  (id, keypoints [K, 2], likelihoods [K]); keypoints under `cutoff` are hidden."""
  height, width = image.shape[:2]
  radius = max(3, round(min(height, width) / 100))
  layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))  # ids beside the keypoints
  pen = ImageDraw.Draw(layer)
  font = ImageFont.load_default(size=max(10, 3 * radius))
  for instance_id, points, likelihood in instances:
    colour = tuple(int(c) for c in TAB10[(int(instance_id) - 1) % len(TAB10)])
    keep = shown(np.asarray(likelihood, np.float64), cutoff)
    for i, j in skeleton:
      if keep[i] and keep[j]:
        pen.line([tuple(points[i]), tuple(points[j])], fill=(*colour, 200),
                 width=max(1, radius // 2))
    for (x, y) in np.asarray(points)[keep]:
      pen.ellipse([x - radius, y - radius, x + radius, y + radius], fill=(*colour, 230),
                  outline=(*WHITE, 230))
    if keep.any():
      x, y = np.asarray(points)[keep].min(0)
      pen.text((x - 2 * radius, y - 4 * radius), str(instance_id), fill=(*colour, 255),
               font=font, stroke_width=1, stroke_fill=(0, 0, 0, 255))
  return _blended(image, [(layer, (0, 0))])
