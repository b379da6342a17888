"""Examples/s of the training input pipeline alone (no model), for a config.

  python benchmarks/input_pipeline.py [configs/default.py] [--batches 200] [--uncached]
  python benchmarks/input_pipeline.py --coco_like 300   # accelerator-scale capacity check
  python benchmarks/input_pipeline.py --coco_like 300 --decodings "once per photo" --rounds 3
  python benchmarks/input_pipeline.py --ops             # its pieces, one core, ms a call
  python benchmarks/input_pipeline.py --stages          # CPU ms a crop, stage by stage

Compare with the model's images/s (benchmarks/models.py): the step waits for input when the
pipeline is slower, and on a 2-core CPU the two share the cores.

--coco_like N writes N COCO-sized RGB JPEGs (640x480, quality 90, 2.6 people each on
average with 17 keypoints) and runs `configs/coco_person.py`'s pipeline on them: each instance
cropped to 256x192 with its full augmentation (rotation, scale, flip, half-body), its pixels
from each of the decodings (DECODINGS). It prints crops/s, crops/s per host core (tf.data
uses every core) and crops per CPU-second the process spent, the figures to hold against an
accelerator's appetite (an H200 training SimpleBaseline-R50 in bf16 took 5,441 crops/s: 340
from each core of a 16-core host).
"""

import argparse
import dataclasses
import json
import os
import shutil
import time

import cv2
import numpy as np
import tensorflow as tf
from PIL import Image

from config_shapes import load_config
from machine import machine_line, scratch_folder
from kp_jax.data import files, pipeline, pixels, transforms
from kp_jax.data.keypoints import COCO_PERSON


def write_coco_like(folder: str, num_images: int, seed: int = 0) -> str:
  """A COCO person keypoint JSON over `num_images` JPEGs in `folder`; returns its path."""
  rng = np.random.default_rng(seed)
  images, annotations = [], []
  width, height = 640, 480  # COCO's most common size
  for image_id in range(1, num_images + 1):
    # Smooth shapes plus noise: JPEG sizes and decode costs like a photo's, not like noise's.
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([np.sin(xx / rng.uniform(10, 60) + c) * np.cos(yy / rng.uniform(10, 60))
                     for c in range(3)], -1)
    pixels = np.clip(127 + 90 * base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    name = f"{image_id:06d}.jpg"
    Image.fromarray(pixels).save(os.path.join(folder, name), quality=90)
    images.append({"id": image_id, "file_name": name, "width": width, "height": height})
    for _ in range(1 + int(rng.poisson(1.6))):  # 2.6 people a photo, as in COCO's train2017
      w, h = rng.uniform(60, width / 2), rng.uniform(100, height * 0.9)
      x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
      points = np.stack([rng.uniform(x, x + w, 17), rng.uniform(y, y + h, 17)], 1)
      flags = rng.choice([0, 2], 17, p=[0.2, 0.8])
      values = np.concatenate([points * (flags[:, None] > 0), flags[:, None]], 1)
      annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                          "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0,
                          "keypoints": values.ravel().tolist(),
                          "num_keypoints": int((flags > 0).sum())})
  path = os.path.join(folder, "person_keypoints.json")
  with open(path, "w") as f:
    json.dump({"images": images, "annotations": annotations, "categories": [
        {"id": 1, "name": "person", "keypoints": list(COCO_PERSON.names)}]}, f)
  return path


def coco_like_config(num_images: int):
  """configs/coco_person.py reading `num_images` fresh --coco_like JPEGs."""
  config = load_config("configs/coco_person.py")
  path = write_coco_like(scratch_folder("kp_jax_coco_like_"), num_images)
  config.data.files, config.data.image_dirs = {"train": path, "validation": path}, {}
  return config


# --coco_like's decodings: how each crop gets its pixels.
DECODINGS = {
    "whole image": "each instance's JPEG decoded whole, as before window decoding",
    "crop's window": "each instance's JPEG decoded in its crop's window (the path of images "
                     "that hold one instance each)",
    "once per photo": "each JPEG decoded whole once for all its instances, augmented together "
                      "(coco_person's path)",
    "decoded copies": "each JPEG decoded whole once into `data.decoded_copies` (raw pixels on "
                      "local disk) and read back every epoch, augmented as once per photo",
    "in memory": "decoded once, kept in memory (`data.cache`, for sets that fit in RAM)",
}


def examples_per_second(config, batches: int, decoding: str = "") -> tuple[float, float]:
  """(examples/s, examples per CPU-second of this process: what each core busy with the
  pipeline delivers, whether or not tf.data keeps every core busy); `decoding`: a DECODINGS
  key, or "" for the config as it is."""
  source = pipeline.get_source(config.data)
  if decoding == "whole image":  # as a source that reads no encoded files
    source = dataclasses.replace(source, load_encoded=None)
  if decoding:
    config.data.cache = decoding == "in memory"
    config.data.decode_once_per_photo = decoding in ("once per photo", "decoded copies")
    config.data.decoded_copies = copies_folder(config) if decoding == "decoded copies" else ""
  stream = pipeline.train_iterator(config, source, start_step=0, local_devices=1)
  for _ in range(20):  # fills the cache and the prefetch buffer
    next(stream)
  start, cpu_start = time.perf_counter(), time.process_time()
  for _ in range(batches):
    next(stream)
  examples = batches * config.batch_size
  return (examples / (time.perf_counter() - start),
          examples / (time.process_time() - cpu_start))


def copies_folder(config) -> str:
  """Where the "decoded copies" rows keep them: beside the JPEGs."""
  return os.path.join(os.path.dirname(config.data.files["train"]), "decoded")


def time_decoded_copies(config) -> str:
  """Writes the decoded copies the "decoded copies" rows read (`files.decoded_copies`); says
  how long that took and how much disk they take."""
  folder = os.path.dirname(config.data.files["train"])
  paths = sorted(os.path.join(folder, name) for name in os.listdir(folder)
                 if name.endswith(".jpg"))
  copies = copies_folder(config)
  start = time.perf_counter()
  files.decoded_copies(dict.fromkeys(paths, 1), 3, copies)  # the generated JPEGs: upright
  seconds = time.perf_counter() - start
  size = sum(entry.stat().st_size for entry in os.scandir(copies))
  return (f"Decoded copies of the {len(paths)} JPEGs written in {seconds:.1f} s (the first "
          f"epoch's price): {size / 1e6:.0f} MB, {size / len(paths) / 1e6:.2f} MB a photo.")


def time_ops(calls: int = 300):
  """Milliseconds a call on one core of the pieces a crop costs, on one of --coco_like's JPEGs,
  with the alternatives kp-jax had before; each row includes the call's own overhead, the
  first row's."""
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  folder = scratch_folder("kp_jax_coco_like_")
  write_coco_like(folder, 1)
  encoded = tf.io.read_file(os.path.join(folder, "000001.jpg"))
  image = transforms.decode_image(encoded, 3)
  window = image[100:350, 200:500]  # 250x300: a person's crop window
  matrix = tf.constant([[0.8, 0.1, -20.0], [-0.1, 0.8, 10.0], [0.0, 0.0, 1.0]])
  crop = tf.cast(tf.random.uniform((256, 192, 3), maxval=256, dtype=tf.int32), tf.uint8)
  data = load_config("configs/coco_person.py").data
  # The host's normalisation as it was, with mean and std laid out over the whole crop.
  mean, std = (tf.constant(np.broadcast_to(value, crop.shape))
               for value in pixels.normalisation(data, 3))
  # ImageProjectiveTransformV3 takes the output -> source map, flattened to 8 numbers.
  inverse = tf.reshape(tf.linalg.inv(matrix), [-1])[:8]
  opencv_decode = lambda data: cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
  ops = {
      "a call doing nothing (every row's overhead)": lambda: crop,
      "decode the 640x480 JPEG whole, TensorFlow's default (fast) IDCT":
          lambda: tf.io.decode_jpeg(encoded, channels=3),
      "decode the 640x480 JPEG whole, the accurate IDCT (`transforms.decode_image`)":
          lambda: transforms.decode_image(encoded, 3),
      "decode the 640x480 JPEG whole, OpenCV's `imdecode` (the accurate IDCT) in NumPy":
          lambda: tf.numpy_function(opencv_decode, [encoded], tf.uint8, stateful=False),
      "decode a 250x300 window of it": lambda: tf.image.decode_and_crop_jpeg(
          encoded, [100, 200, 250, 300], channels=3, dct_method=transforms.JPEG_IDCT),
      "warp the window to 256x192, TensorFlow (first)":
          lambda: tf.raw_ops.ImageProjectiveTransformV3(
              images=tf.cast(window, tf.float32)[None] / 255, transforms=inverse[None],
              output_shape=[256, 192], fill_value=0.0, interpolation="BILINEAR"),
      "warp the window to 256x192, OpenCV": lambda: transforms.resample(
          window, matrix, (256, 192)),
      "a crop to float32 and normalised (now in the compiled step)":
          lambda: (tf.cast(crop, tf.float32) / 255 - mean) / std,
  }
  print("| op, one core | ms a call |\n|---|---|")
  for name, op in ops.items():
    op = tf.function(op)
    op()
    start = time.perf_counter()
    for _ in range(calls):
      op()
    print(f"| {name} | {(time.perf_counter() - start) / calls * 1e3:.2f} |", flush=True)
  window, matrix = window.numpy(), matrix.numpy()
  start = time.perf_counter()
  for _ in range(calls):
    transforms._bilinear_warp(window, matrix, (256, 192))  # noqa: SLF001
  print(f"| warp the window to 256x192, OpenCV called directly (no TensorFlow, no call "
        f"overhead) | {(time.perf_counter() - start) / calls * 1e3:.2f} |")
  time_opencv_threads(folder)


def time_opencv_threads(folder: str, photos: int = 50, calls: int = 2000):
  """CPU ms of OpenCV's warp of a 256x192 crop out of one of `photos` JPEGs at a random
  rotation (+-40 degrees) and scale (0.4-1.2), with OpenCV's own threads (its default, one a
  core) and with one (kp-jax's setting: tf.data runs a warp on every core)."""
  write_coco_like(folder, photos)
  images = [np.asarray(Image.open(os.path.join(folder, f"{i:06d}.jpg")))
            for i in range(1, photos + 1)]
  rng = np.random.default_rng(0)
  angles, scales = rng.uniform(-0.7, 0.7, calls), rng.uniform(0.4, 1.2, calls)
  matrices = [np.array([[s * np.cos(a), -s * np.sin(a), x], [s * np.sin(a), s * np.cos(a), y],
                        [0.0, 0.0, 1.0]])
              for a, s, x, y in zip(angles, scales, *rng.uniform(-100, 50, (2, calls)))]
  for threads in (cv2.getNumberOfCPUs(), 1):
    cv2.setNumThreads(threads)
    start = time.process_time()
    for i, matrix in enumerate(matrices):
      transforms._bilinear_warp(images[i % photos], matrix, (256, 192))  # noqa: SLF001
    print(f"| warp 256x192 crops of {photos} photos at random angles and scales, OpenCV "
          f"with {threads} thread(s), CPU ms | {(time.process_time() - start) / calls * 1e3:.2f} |")


def time_stages(num_images: int = 100, batches: int = 40, rounds: int = 2):
  """CPU milliseconds a crop of configs/coco_person.py's training map, in tf.data as it runs
  (parallel, batched), built up stage by stage on --coco_like images decoded in memory: what
  each stage adds to a crop's cost; last, the whole augmentation of each photo's people
  together, as the decode-once path runs it."""
  config = coco_like_config(num_images)
  source = pipeline.get_source(config.data)
  examples = source.load("train", 0, 1).map(pipeline._select()).cache()  # noqa: SLF001
  photos = source.images.files("train", 0, 1).map(
      lambda photo: pipeline._decoded_photo(  # noqa: SLF001
          photo, lambda photo: files.decode_file(photo["path"], source.channels))).cache()
  for dataset in (examples, photos):  # decoded once, before timing
    for _ in dataset:
      pass
  input_hwc = pipeline.input_shape(config.data, source)
  crop = transforms.crop_to_box(input_hwc[:2], config.data.box_padding)
  warp = transforms.warp_to_input(input_hwc[:2])
  augment = pipeline._geometric_op(config.data, source.spec, input_hwc)  # noqa: SLF001

  def augmented(i, example):  # one instance, or a photo's together
    return {k: v for k, v in augment(example, transforms.example_seed(0, i)).items()
            if k in pipeline.TRAIN_KEYS}
  stages = {
      "batching one small label per example": lambda i, ex: {"box": ex["box"]},
      "batching a uint8 crop per example, nothing computed": lambda i, ex: {
          "image": tf.fill(input_hwc, tf.cast(i % 2, tf.uint8))},
      "batching a float32 crop per example (as before 2026-12-06), nothing computed":
          lambda i, ex: {"image": tf.fill(input_hwc, tf.cast(i % 2, tf.float32))},
      "crop matrix and warp (OpenCV through tf.numpy_function), keypoints moved": lambda i, ex:
          {k: v for k, v in warp(crop(ex)).items() if k in pipeline.TRAIN_KEYS},
      "the whole augmentation (coco_person's: + rotation, scale, flip, half-body)": augmented,
  }
  together = ("the whole augmentation of each photo's people together (one call each), as "
              "decoding once per photo runs it")
  print("| stage, in tf.data | CPU ms a crop |\n|---|---|")
  for _ in range(rounds):
    for name, op in [*stages.items(), (together, augmented)]:
      stream = (photos if name == together else examples).repeat().enumerate()
      stream = stream.map(op, num_parallel_calls=tf.data.AUTOTUNE)
      # A photo's crops go into the batch together, as in the pipeline.
      stream = stream.rebatch(config.batch_size) if name == together else stream.batch(
          config.batch_size)
      stream = stream.prefetch(4).as_numpy_iterator()
      for _ in range(10):
        next(stream)
      cpu_start = time.process_time()
      for _ in range(batches):
        next(stream)
      crops = batches * config.batch_size
      print(f"| {name} | {(time.process_time() - cpu_start) / crops * 1e3:.2f} |", flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("config", nargs="?", default="configs/default.py")
  parser.add_argument("--batches", type=int, default=200)
  parser.add_argument("--coco_like", type=int, default=0,
                      help="images of a COCO-like set to run configs/coco_person.py's pipeline on")
  parser.add_argument("--rounds", type=int, default=1,
                      help="--coco_like: rounds of the decodings (DECODINGS)")
  parser.add_argument("--decodings", nargs="+", choices=list(DECODINGS), default=list(DECODINGS),
                      help="--coco_like: which decodings to run")
  parser.add_argument("--uncached", action="store_true",
                      help="the config with data.cache = False: images read from their files")
  parser.add_argument("--ops", action="store_true", help="time the pipeline's pieces instead")
  parser.add_argument("--stages", action="store_true",
                      help="CPU ms a crop of the training map, stage by stage, instead")
  args = parser.parse_args()
  cores = os.cpu_count()
  print(f"{machine_line()}\n")
  if args.ops:
    return time_ops()
  if args.stages:
    return time_stages()
  if args.coco_like:
    print("".join(f"- {decoding}: {meaning}\n" for decoding, meaning in DECODINGS.items()))
    config = coco_like_config(args.coco_like)
    if "decoded copies" in args.decodings:
      print(f"{time_decoded_copies(config)}\n")
  print("| config | decoding | batch | examples/s (pipeline alone) | per core | per CPU-second |\n"
        "|---|---|---|---|---|---|")
  if not args.coco_like:
    config = load_config(args.config)
    config.data.cache = config.data.cache and not args.uncached
    rate, per_cpu_second = examples_per_second(config, args.batches)
    decoding = "in memory" if config.data.cache else "from files"
    print(f"| `{args.config}` | {decoding} | {config.batch_size} | {rate:.0f} | "
          f"{rate / cores:.0f} | {per_cpu_second:.0f} |")
    return
  name = f"`configs/coco_person.py` on {args.coco_like} COCO-sized JPEGs"
  for _ in range(args.rounds):  # alternating, so all see the machine alike
    for decoding in args.decodings:
      rate, per_cpu_second = examples_per_second(config, args.batches, decoding)
      print(f"| {name} | {decoding} | {config.batch_size} | {rate:.0f} | {rate / cores:.0f} | "
            f"{per_cpu_second:.0f} |", flush=True)
  shutil.rmtree(copies_folder(config), ignore_errors=True)  # ~0.9 MB a photo

if __name__ == "__main__":
  main()
