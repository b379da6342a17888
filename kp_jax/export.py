"""Exports a training run's model for use outside the training stack.

  python -m kp_jax.export --workdir workdirs/default --format onnx [--batch 1] [--out PATH]

Formats (docs/usage.md, "Deploying a model"):
  stablehlo   `jax.export`'s serialized artifact (.stablehlo); runs with jax alone, on any
              platform (PLATFORMS: lowered for each, whichever machine exports)
  savedmodel  a TensorFlow SavedModel (a folder) via jax2tf, signature "serving_default"
  onnx        an ONNX model (.onnx) via jax2onnx; runs with onnxruntime
  tflite      a LiteRT / TFLite flatbuffer (.tflite), converted from the SavedModel
`kp_jax.exported` runs any of them with only that format's runtime installed.

The exported function takes float32 images [N, H, W, C] at the model's input size with pixel
values in [0, 255] (crop or fit the image first, as `kp_jax.exported` does) and returns
(keypoints [N, K, 2] in input pixels, likelihoods [N, K]). It holds the run's input
normalisation ((x / 255 - image_mean) / image_std), the model with its evaluation parameters
(the EMA where the run keeps one), the head's decoder and, when the run uses it, test-time flip.
The CPU kernels of kp_jax/models/kernels.py export as they are (their custom gradients play no
part in inference). The batch is any size (`--batch dynamic`, the default for stablehlo and
savedmodel) or fixed; onnx and tflite need a fixed one (default 1): jax2onnx 0.17 cannot index
with a symbolic batch and TFLite's converter rejects gathers of dynamic shape.
A two-stage workdir (kp_jax.two_stage) exports both stages as one program: it takes whole
frames of one size (`--frame_size HxW`) and returns the best instance's keypoints in the
frames' pixels, so the runner's fit is the identity on frames of that size.
Beside the model, `<model>.json` holds what a runner needs: keypoint names, skeleton, input
shape, batch, likelihood cutoff and how an image or a box is cropped (box padding, UDP).
"""

import dataclasses
import json
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf
from absl import app, flags, logging
from etils import epath

from kp_jax import find_refine, runs, startup, steps
from kp_jax.data.pixels import model_input, normalisation
from kp_jax.two_stage import FindRefinePredictor, is_find_refine

FORMATS = {"stablehlo": ".stablehlo", "savedmodel": "", "onnx": ".onnx", "tflite": ".tflite"}
FIXED_BATCH_ONLY = ("onnx", "tflite")
OUTPUT_NAMES = ("keypoints", "likelihood", "scores", "boxes")  # the serving function's order
# What StableHLO and SavedModel artifacts are lowered for (jax.export's default is only the
# exporting machine's: a model exported on a GPU cluster would refuse a CPU).
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")


def serving_function(run):
  """float32 pixels [N, H, W, C] in [0, 255] -> (keypoints [N, K, 2], likelihoods [N, K])."""
  variables = jax.tree.map(np.asarray, steps.eval_variables(run.state))
  mean, std = normalisation(run.config.data, run.image_shape[2])

  def serve(pixels):
    return steps.predict(run.model.apply, variables, model_input(pixels / 255.0, mean, std),
                         head=run.head, flip_permutation=run.flip_permutation)
  return serve


def find_refine_serving_function(predictor: FindRefinePredictor):
  """float32 frames [N, H, W, C] in [0, 255] -> both stages, crops and all, as one program:
  (keypoints [N, K, 2] in the frames' pixels, likelihoods [N, K]) of the best instance, or
  where the run finds several, every instance slot's (keypoints [N, M, K, 2], likelihoods
  [N, M, K], detection scores [N, M] and boxes [N, M, 4], x0, y0, x1, y1), which the runner
  (kp_jax.exported) selects from, and follows through a video, as predict does."""
  variables = jax.tree.map(np.asarray, predictor.variables)

  def serve(pixels):
    result = find_refine.predict_frames(predictor.stages, *variables, pixels / 255.0)
    if predictor.multi_instance:
      return result["keypoints"], result["likelihood"], result["scores"], result["boxes"]
    return result["keypoints"][:, 0], result["likelihood"][:, 0]
  return serve


def _stablehlo(serve, shape, out):
  batch = shape[0] if shape[0] else jax.export.symbolic_shape("n")[0]
  exported = jax.export.export(jax.jit(serve), platforms=PLATFORMS)(
      jax.ShapeDtypeStruct((batch, *shape[1:]), jnp.float32))
  epath.Path(out).write_bytes(exported.serialize())


def _savedmodel(serve, shape, out):
  from jax.experimental import jax2tf
  height, width, channels = shape[1:]
  converted = jax2tf.convert(
      serve, with_gradient=False, native_serialization_platforms=PLATFORMS,
      polymorphic_shapes=None if shape[0] else [f"(n, {height}, {width}, {channels})"])
  module = tf.Module()
  module.serve = tf.function(
      lambda pixels: dict(zip(OUTPUT_NAMES, converted(pixels))),
      autograph=False, input_signature=[tf.TensorSpec(shape, tf.float32, name="pixels")])
  tf.saved_model.save(module, out, signatures={"serving_default": module.serve})


def _tflite(serve, shape, out):
  with tempfile.TemporaryDirectory() as saved:
    _savedmodel(serve, shape, saved)
    flatbuffer = tf.lite.TFLiteConverter.from_saved_model(saved).convert()
  epath.Path(out).write_bytes(flatbuffer)


def _onnx(serve, shape, out):
  from jax2onnx import to_onnx
  epath.Path(out).write_bytes(
      to_onnx(serve, inputs=[shape], model_name="kp_jax").SerializeToString())


WRITERS = {"stablehlo": _stablehlo, "savedmodel": _savedmodel, "onnx": _onnx, "tflite": _tflite}


def export(workdir: str, fmt: str, batch: int | None = None, out: str | None = None,
           step: int | None = None, frame_hw=None) -> str:
  """Writes `workdir`'s model (default: the best checkpoint) in `fmt`; returns its path. A
  two-stage workdir exports both stages as one program of whole frames of `frame_hw`."""
  if fmt not in FORMATS:
    raise ValueError(f"--format={fmt!r}: choose one of {sorted(FORMATS)}.")
  if batch is None and fmt in FIXED_BATCH_ONLY:
    batch = 1
  if batch is not None and batch < 1:
    raise ValueError(f"--batch={batch}: a positive size, or 'dynamic'.")
  out = str(out or epath.Path(workdir) / "export" / ("model" + FORMATS[fmt]))
  epath.Path(out).parent.mkdir(parents=True, exist_ok=True)
  two_stage = is_find_refine(workdir)
  if two_stage:
    if step is not None or not frame_hw:
      raise ValueError("A two-stage workdir exports each stage's best checkpoint, as one "
                       "program of whole frames of one size: leave --step out and set "
                       "--frame_size=HxW (your video's frame size).")
    run = FindRefinePredictor(workdir, portable=True)
    serve, input_shape = find_refine_serving_function(run), (*frame_hw, run.image_shape[-1])
    geometry = (1.0, False)  # whole frames, fitted as they are
    outputs = "keypoints [N, K, 2] in the frames' pixels, likelihoods [N, K]"
    names, selection = run.names, None
    if run.multi_instance:
      outputs = ("every instance slot's keypoints [N, M, K, 2] in the frames' pixels, "
                 "likelihoods [N, M, K], detection scores [N, M] and boxes [N, M, 4]")
      selection = dataclasses.asdict(run.selection)
  else:
    run, selection = runs.load_run(workdir, step, portable=True), None
    serve, input_shape, outputs = serving_function(run), run.image_shape, \
        "keypoints [N, K, 2] in input pixels, likelihoods [N, K]"
    names, geometry = run.keypoint_names, runs.crop_geometry(run.config.data)
  WRITERS[fmt](serve, (batch, *input_shape), out)
  meta = {"format": fmt, "workdir": workdir, "step": run.step, "batch": batch,
          "input_shape": list(input_shape), "keypoint_names": list(names),
          "skeleton": [list(pair) for pair in run.skeleton],
          "likelihood_cutoff": run.config.get("likelihood_cutoff", 0.0),
          "box_padding": geometry[0], "udp": geometry[1],  # how predict crops an image or box
          "two_stage": two_stage,  # finds its instances in whole frames
          "upright": bool(run.config.data.get("upright", True)),
          "input": "float32 [N, H, W, C] pixel values in [0, 255]", "outputs": outputs,
          "output_names": list(OUTPUT_NAMES[:4 if selection else 2])}
  if selection:  # how the runner turns slots into instances and tracks, as predict does
    meta["instances"] = {**selection, "sigmas": list(selection["sigmas"])}
    meta["tracking"] = run.tracking  # {"min_iou", "max_age"}: kp_jax.poses.track's
  epath.Path(out.rstrip("/") + ".json").write_text(json.dumps(meta, indent=2))
  logging.info("Wrote %s (%s, batch %s) and its .json", out, fmt, batch or "dynamic")
  return out


def main(argv):
  del argv
  args = flags.FLAGS
  startup.for_run(args.workdir)
  batch = None if args.batch in ("", "dynamic") else int(args.batch)
  frame_hw = tuple(int(v) for v in args.frame_size.split("x")) if args.frame_size else None
  print(export(args.workdir, args.format, batch, args.out, args.step, frame_hw))


if __name__ == "__main__":  # flags only for the command, so the module imports anywhere
  flags.DEFINE_string("workdir", None, "A training run's workdir.", required=True)
  flags.DEFINE_enum("format", None, list(FORMATS), "The export format.", required=True)
  flags.DEFINE_string("batch", "", "A fixed batch size, or 'dynamic' (default for stablehlo "
                      "and savedmodel; onnx and tflite default to 1).")
  flags.DEFINE_string("out", None, "Default: WORKDIR/export/model.<format's extension>.")
  flags.DEFINE_integer("step", None, "Checkpoint step; default: the best.")
  flags.DEFINE_string("frame_size", None, "HxW of the frames a two-stage (find, then refine) "
                      "model is exported for.")
  app.run(main)
