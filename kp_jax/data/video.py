"""Video files: the unlabelled clips that training learns from beside the labelled frames.
PyAV, whose wheels bundle FFmpeg's libraries (no system ffmpeg needed); frames are read as
everywhere in kp-jax (`kp_jax.exported.read_video`; MP4s written by its `VideoWriter`).

Unlabelled clips (`clip_stream`): a lab's videos decoded inside tf.data as clips of
`clip_length` consecutive frames, read sequentially (one decode per frame, no seeking), each
video from a random offset every epoch, the videos interleaved and the clips shuffled. A video
that cannot be opened is left out with a warning naming it; one that breaks off mid-way
(truncated, corrupt packets) gives the clips before the break, with a warning: never a hang or
a crash of the run.
"""

import glob
import os
from typing import Iterator

import numpy as np
from absl import logging

from kp_jax.exported import frame_pixels, is_video, quarter_turns


def find_videos(data_config) -> list[str]:
  """`data.unlabelled_videos` (files or folders), else the project's `videos/` folder; the
  video files in them, sorted."""
  places = list(data_config.get("unlabelled_videos", ()))
  project = data_config.get("project", "")
  if not places and project:
    places = [os.path.join(project, "videos")]
  found = []
  for place in places:
    if os.path.isdir(place):
      found += [p for p in glob.glob(os.path.join(place, "**", "*"), recursive=True)
                if is_video(p)]
    elif os.path.exists(place):
      found.append(place)
    else:
      raise FileNotFoundError(f"config.data.unlabelled_videos: {place} does not exist.")
  return sorted(found)


def frame_size(path: str, upright: bool = True) -> tuple[int, int] | None:
  """(height, width) of a video's frames (its first frame's, with `upright` as players show
  it), or None (with a warning) if it cannot be read."""
  import av  # noqa: PLC0415

  try:
    with av.open(path) as container:
      frame = next(container.decode(video=0))
  except (av.FFmpegError, IndexError, OSError, StopIteration) as e:
    logging.warning("Unlabelled video %s cannot be read and is left out: %s", path,
                    e or "no frame")
    return None
  turned = upright and quarter_turns(frame) % 2
  return (frame.width, frame.height) if turned else (frame.height, frame.width)


def video_clips(path: str, clip_length: int, channels: int, offset: int,
                upright: bool = True) -> Iterator[np.ndarray]:
  """Consecutive, non-overlapping clips uint8 [clip_length, h, w, channels] of one video,
  from frame `offset` on, with `upright` as players show them; where decoding breaks off, the
  clips before it (and a warning)."""
  import av  # noqa: PLC0415

  clip, index = [], 0
  try:
    with av.open(path) as container:
      for frame in container.decode(video=0):
        index += 1
        if index <= offset:
          continue
        pixels = frame_pixels(frame, "gray" if channels == 1 else "rgb24", upright)
        clip.append(pixels.reshape(*pixels.shape[:2], channels))
        if len(clip) == clip_length:
          yield np.stack(clip)
          clip = []
  except (av.FFmpegError, OSError, ValueError) as e:
    logging.warning("Unlabelled video %s: decoding stopped at frame %d (%s); the clips before "
                    "it are used.", path, index, e)


def interleaved_clips(paths, clip_length: int, channels: int, seed: int, epoch: int,
                      upright: bool = True) -> Iterator[np.ndarray]:
  """One epoch of every video's clips, the videos taken in turn, each from a random offset
  within its first clip (so clips start at other frames from epoch to epoch)."""
  rng = np.random.default_rng([seed, epoch])
  streams = [video_clips(p, clip_length, channels, int(rng.integers(clip_length)), upright)
             for p in rng.permutation(paths)]
  count = 0
  while streams:
    for stream in list(streams):
      clip = next(stream, None)
      if clip is None:
        streams.remove(stream)
      else:
        count += 1
        yield clip
  if not count:  # an endless stream of empty epochs would hang the run
    raise ValueError(f"No clip of {clip_length} frames could be decoded from the unlabelled "
                     f"videos {list(paths)}.")


def clip_stream(paths, clip_length: int, channels: int, seed: int, upright: bool = True):
  """An endless tf.data stream of uint8 clips [clip_length, h, w, channels] of `paths`
  (all of one frame size; unreadable ones left out), epoch after epoch, with `upright` as
  players show them (`config.data.upright`)."""
  import tensorflow as tf  # noqa: PLC0415 -- the data pipeline's side

  sizes = {p: frame_size(p, upright) for p in paths}
  readable = [p for p in paths if sizes[p] is not None]
  if not readable:
    raise ValueError(f"None of the unlabelled videos can be read: {list(paths)}.")
  if len({sizes[p] for p in readable}) > 1:
    raise ValueError(f"Unlabelled videos of several frame sizes "
                     f"{ {p: sizes[p] for p in readable} }: give videos of one camera "
                     "(config.data.unlabelled_videos).")
  height, width = sizes[readable[0]]
  spec = tf.TensorSpec([clip_length, height, width, channels], tf.uint8)

  def epoch_clips(epoch):
    return tf.data.Dataset.from_generator(
        lambda e: interleaved_clips(readable, clip_length, channels, seed, int(e), upright),
        output_signature=spec, args=(epoch,))
  return tf.data.Dataset.range(np.iinfo(np.int64).max).flat_map(epoch_clips)
