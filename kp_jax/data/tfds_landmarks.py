"""Face landmark datasets of tensorflow-datasets, adapted to the common example.

  celeb_a      5 landmarks (eyes, nose, mouth corners) on 218x178 aligned faces; NME by the
               inter-ocular (eye centre) distance. Its "lefteye" is on the image's left.
  aflw2k3d     68 landmarks (2D projection of the 3D fit) on 450x450 images, one split
               ("train", 2000 images: the usual test set); NME by the landmark box size.
  the300w_lp   68 landmarks (the 3D fit's 2D projection, `landmarks_3d`, as the AFLW2000-3D
               protocol uses) on 450x450 images, 61k faces in "train"; NME by the landmark box size.

`config.data.tfds_splits` maps the pipeline's splits to TFDS split strings, so a dataset with
one split can be sliced ("train[:90%]"). Landmarks outside the image are marked invisible.
"""

import dataclasses
from typing import Callable

import tensorflow as tf
import tensorflow_datasets as tfds

from kp_jax.data import keypoints as kp, transforms
from kp_jax.data.source import Source, tfds_shard, tfds_split_size

CELEB_A_LANDMARKS = ("lefteye", "righteye", "nose", "leftmouth", "rightmouth")
CELEB_A = kp.KeypointSpec(
    names=CELEB_A_LANDMARKS, flip_pairs=kp.flip_pairs_from_names(CELEB_A_LANDMARKS),
    skeleton=(("lefteye", "righteye"), ("leftmouth", "rightmouth")),
    normaliser="inter-ocular distance (eye centres)")


def _inside(keypoints, image):
  size = tf.cast(tf.shape(image)[1::-1], tf.float32)  # (width, height)
  return tf.cast(tf.reduce_all((keypoints >= -0.5) & (keypoints <= size - 0.5), -1), tf.float32)


def _landmark_box(keypoints, visible):
  """The box (x, y, w, h) around the visible landmarks' pixels."""
  points = tf.boolean_mask(keypoints, visible > 0)
  low, high = tf.reduce_min(points, 0), tf.reduce_max(points, 0)
  return tf.concat([low + 0.5, high - low + 1], 0)


def _box_size(box):
  return tf.sqrt(box[2] * box[3])


def celeb_a(ex):
  landmarks = ex["landmarks"]
  keypoints = tf.cast(tf.stack([tf.stack([landmarks[f"{n}_x"], landmarks[f"{n}_y"]])
                                for n in CELEB_A_LANDMARKS]), tf.float32)
  shape = tf.cast(tf.shape(ex["image"]), tf.float32)
  return {"image": ex["image"], "keypoints": keypoints, "visible": _inside(keypoints, ex["image"]),
          "norm": tf.norm(keypoints[0] - keypoints[1]),
          "box": tf.stack([0.0, 0.0, shape[1], shape[0]])}


def _face68(keypoints_normalized):
  def adapt(ex):
    size = tf.cast(tf.shape(ex["image"])[1::-1], tf.float32)
    keypoints = ex[keypoints_normalized] * size  # TFDS stores landmarks / 450
    visible = _inside(keypoints, ex["image"])
    box = _landmark_box(keypoints, visible)
    return {"image": ex["image"], "keypoints": keypoints, "visible": visible,
            "norm": _box_size(box), "box": box}
  return adapt


@dataclasses.dataclass(frozen=True)
class Adapter:
  spec: kp.KeypointSpec
  to_example: Callable  # TFDS features -> raw common example (without image_id)


ADAPTERS = {
    "celeb_a": Adapter(CELEB_A, celeb_a),
    "aflw2k3d": Adapter(kp.FACE68, _face68("landmarks_68_3d_xy_normalized")),
    "the300w_lp": Adapter(kp.FACE68, _face68("landmarks_3d")),
}


def source(data_config) -> Source:
  """The TFDS dataset `data_config.tfds_name`, prepared in `data_config.data_dir`."""
  name = data_config.tfds_name
  if name not in ADAPTERS:
    raise ValueError(f"config.data.tfds_name={name!r} has no adapter; choose one of "
                     f"{sorted(ADAPTERS)}.")
  adapter = ADAPTERS[name]
  builder = tfds.builder(name, data_dir=data_config.data_dir)
  builder.download_and_prepare()  # docs/data.md says where the manual downloads go
  splits = dict(data_config.tfds_splits)

  def load(split, process_index, process_count):
    if split not in splits:
      raise ValueError(f"config.data.tfds_splits has no {split!r} entry: {splits}.")
    # The sets keep their JPEG files' bytes: decoded as image files are (transforms.decode_image).
    encoded = tfds_shard(builder, splits[split], process_index, process_count,
                         decoders={"image": tfds.decode.SkipDecoding()})
    return encoded.map(lambda index, ex: {
        **adapter.to_example({**ex, "image": transforms.decode_image(ex["image"], 3)}),
        "image_id": index}, num_parallel_calls=tf.data.AUTOTUNE)

  sizes = {split: tfds_split_size(builder, tfds_split) for split, tfds_split in splits.items()}
  return Source(name=f"{name}/{builder.info.version}", spec=adapter.spec, split_sizes=sizes,
                channels=3, image_hw=None, load=load)
