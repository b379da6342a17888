"""The synthetic faces (`faces.py`) as a tensorflow-datasets builder.

Each example is drawn from its own random stream, seeded by (dataset seed, split, index), so a
split is the same on every machine and in any generation order. Two variants: one face per
image (the default), or scenes of 1 to `scene_faces` faces each (`data.scene_faces`), the
offline benchmark of finding every instance.
"""

import dataclasses
import functools

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from kp_jax.data import keypoints as kp
from kp_jax.data.faces import render_example, render_scene
from kp_jax.data.source import Images, Source, tfds_shard, whole_image_box

SPEC = kp.FACE15
SPLITS = ("train", "validation", "test")


# ---------------------------------------------------------------------------------------------
# The TFDS builder.


@dataclasses.dataclass
class SyntheticFacesConfig(tfds.core.BuilderConfig):
  image_size: int = 96
  num_train: int = 20_000
  num_validation: int = 1_000
  num_test: int = 1_000
  seed: int = 0
  scene_faces: int = 0  # 0: one face per image; n: scenes of 1 to n faces


def make_config(image_size, num_train, num_validation, num_test, seed,
                scene_faces=0) -> SyntheticFacesConfig:
  """A builder config whose name encodes every field, so each variant is prepared once."""
  name = f"{image_size}px_{num_train}_{num_validation}_{num_test}_seed{seed}"
  if scene_faces:
    name += f"_scenes{scene_faces}"
  return SyntheticFacesConfig(name=name, image_size=image_size, num_train=num_train,
                              num_validation=num_validation, num_test=num_test, seed=seed,
                              scene_faces=scene_faces)


class SyntheticFaces(tfds.core.GeneratorBasedBuilder):
  """Face-like grayscale images with the 15 Kaggle Facial Keypoints, generated offline."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [make_config(96, 20_000, 1_000, 1_000, 0), make_config(28, 20_000, 1_000, 1_000, 0)]

  def _info(self):
    size, k = self.builder_config.image_size, SPEC.num_keypoints
    instances = (None,) if self.builder_config.scene_faces else ()  # a scene: N faces
    tensor = lambda *shape: tfds.features.Tensor(shape=(*instances, *shape), dtype=np.float32)
    features = {"image": tfds.features.Image(shape=(size, size, 1)), "keypoints": tensor(k, 2),
                "visible": tensor(k), "norm": tensor()}
    if instances:
      features["boxes"] = tensor(4)
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(features),
        description=__doc__,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    return {split: self._generate_examples(split) for split in SPLITS}

  def _generate_examples(self, split):
    config = self.builder_config
    count = getattr(config, f"num_{split}")
    tenth = max(1, count // 10)
    for index in range(count):
      if index % tenth == 0:  # first use only: TFDS itself says "Unknown size", then nothing
        logging.info("Generating the synthetic faces (once, into %s): %s %d / %d.",
                     self.data_dir, split, index, count)
      rng = np.random.default_rng([config.seed, SPLITS.index(split), index])
      yield index, (render_scene(rng, config.image_size, config.scene_faces)
                    if config.scene_faces else render_example(rng, config.image_size))


def builder(data_dir=None, **config_fields) -> SyntheticFaces:
  """The builder for one variant (see `make_config`), prepared into `data_dir` on first use."""
  config = make_config(**config_fields)
  if config.name in SyntheticFaces.builder_configs:  # TFDS wants registered ones by name
    config = config.name
  faces = SyntheticFaces(config=config, data_dir=data_dir)
  tfds.disable_progress_bar()
  faces.download_and_prepare()
  return faces


def source(data_config) -> Source:
  """The synthetic faces as a `Source`; `data_config` is the config's `data` block."""
  faces = builder(data_dir=data_config.data_dir, image_size=data_config.image_size,
                  num_train=data_config.num_train, num_validation=data_config.num_validation,
                  num_test=data_config.num_test, seed=data_config.generator_seed,
                  scene_faces=data_config.get("scene_faces", 0))
  sizes = {split: faces.info.splits[split].num_examples for split in SPLITS}
  size = faces.builder_config.image_size
  name = f"synthetic_faces/{faces.builder_config.name}"
  if faces.builder_config.scene_faces:
    return _scene_source(faces, name, sizes, size)

  def load(split, process_index, process_count):
    return tfds_shard(faces, split, process_index, process_count).map(
        lambda index, ex: {**ex, "box": whole_image_box(ex["image"]), "image_id": index})

  return Source(name=name, spec=SPEC, split_sizes=sizes, channels=1, image_hw=(size, size),
                load=load)


def _scene_source(faces, name: str, image_counts: dict, size: int) -> Source:
  """Scenes of several faces: `images` gives each scene with all its faces, `load` one example
  per face with at least one visible keypoint (the scene's image, that face's labels and box)."""
  def load_images(split, process_index, process_count):
    return tfds_shard(faces, split, process_index, process_count).map(
        lambda index, ex: {"image": ex["image"], "keypoints": ex["keypoints"],
                           "visible": ex["visible"], "norm": ex["norm"], "box": ex["boxes"],
                           "image_id": index})

  labelled = lambda face: tf.reduce_any(face["visible"] > 0)

  def faces_of(image):
    count = tf.shape(image["keypoints"])[0]
    return tf.data.Dataset.from_tensor_slices(
        {**{k: image[k] for k in ("keypoints", "visible", "norm", "box")},
         "image": tf.repeat(image["image"][None], count, 0),
         "image_id": tf.repeat(image["image_id"], count)}).filter(labelled)

  def labels(split, process_index=0, process_count=1):  # without decoding a scene
    shard = tfds.even_splits(split, n=process_count, drop_remainder=False)[process_index]
    scenes = faces.as_dataset(split=shard, shuffle_files=False,
                              decoders={"image": tfds.decode.SkipDecoding()})
    return scenes.flat_map(lambda ex: tf.data.Dataset.from_tensor_slices(
        {"keypoints": ex["keypoints"], "visible": ex["visible"], "box": ex["boxes"]})).filter(
            labelled)

  @functools.cache  # one pass over a shard's labels, however often it is loaded
  def count(split, process_index=0, process_count=1):
    return int(labels(split, process_index, process_count).reduce(0, lambda n, _: n + 1))

  def load(split, process_index, process_count):
    size = count(split, process_index, process_count)  # the pipeline needs the count
    return load_images(split, process_index, process_count).flat_map(faces_of).apply(
        tf.data.experimental.assert_cardinality(size))

  instance_counts = {split: count(split) for split in image_counts}
  return Source(name=name, spec=SPEC, split_sizes=instance_counts, channels=1,
                image_hw=(size, size), load=load, annotations=labels,
                images=Images(image_counts, load_images))
