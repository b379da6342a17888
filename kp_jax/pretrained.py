"""Starting a run from pretrained weights (`config.model.init_from`), offline:

- a kp-jax workdir of another run: its best checkpoint (else the latest), the parameters that
  run evaluated with (the EMA where it kept one) and its BatchNorm statistics;
- a torchvision ResNet `state_dict` saved with `torch.save` (a `.pth` file, for example the
  ImageNet weights `resnet50-0676ba61.pth` copied from a machine with internet), converted to
  kp-jax's ResNet (`config.model.backbone`: name "resnet", `resnet_shape(depth)`, width 64);
- an MMPose SimpleBaseline checkpoint (`td-hm_res50_8xb64-210e_coco-256x192-*.pth`: ResNet
  backbone + heatmap head), converted key by key to the ResNet with the heatmap head
  (`configs/coco_person.py`'s model), an MMPose HRNet one (`td-hm_hrnet-w32_...pth`) to
  kp_jax.models.HRNet with the heatmap head (`configs/coco_hrnet_w32.py`), or an MMPose
  ViTPose one (`td-hm_ViTPose-base_...pth`, 1.x or 0.x) to kp_jax.models.ViT with the heatmap
  head (`configs/coco_vitpose_b.py`).

Every array of the new model whose name and shape match the source's is taken; the rest keep
their fresh initialisation (a head for other keypoints, say) and the log lists them. A first
convolution for another number of input channels is converted: RGB -> gray sums the kernel
over its colours (the same response to a gray image), gray -> RGB spreads it evenly.
"""

import re

import jax
import numpy as np
from absl import logging
from etils import epath
from flax import traverse_util

from kp_jax import checkpoint
from kp_jax.data import pixels


# ---------------------------------------------------------------------------------------------
# torchvision ResNets.


def _torch_state_dict(path: str) -> dict:
  try:
    import torch  # noqa: PLC0415 -- only this path needs torch
  except ImportError:
    raise ImportError(f"config.model.init_from={path!r} is a PyTorch file: install torch "
                      "(pip install torch==2.13.0) to read it.") from None
  try:
    with epath.Path(path).open("rb") as f:
      loaded = torch.load(f, map_location="cpu", weights_only=True)
  except Exception as e:  # noqa: BLE001 -- any unpickling failure: name the file
    raise ValueError(f"config.model.init_from={path!r}: cannot read it with torch.load: "
                     f"{e}") from None
  if isinstance(loaded, dict):
    loaded = loaded.get("state_dict", loaded.get("model", loaded))
  if not isinstance(loaded, dict):
    raise ValueError(f"config.model.init_from={path!r} holds a {type(loaded).__name__}, not a "
                     "state_dict: save model.state_dict().")
  return {k.removeprefix("module."): v.detach().numpy() for k, v in loaded.items()
          if hasattr(v, "detach")}


def _conv(weight):  # torch OIHW -> Flax HWIO
  return np.transpose(weight, (2, 3, 1, 0))


def _batch_norm(state: dict, prefix: str, params: dict, stats: dict, name: tuple):
  params[name + ("scale",)] = state[f"{prefix}.weight"]
  params[name + ("bias",)] = state[f"{prefix}.bias"]
  stats[name + ("mean",)] = state[f"{prefix}.running_mean"]
  stats[name + ("var",)] = state[f"{prefix}.running_var"]


class _Read(dict):
  """A state_dict that records which keys were read, so a conversion can name the ones it
  left out."""

  def __init__(self, *args):
    super().__init__(*args)
    self.read = set()

  def __getitem__(self, key):
    self.read.add(key)
    return super().__getitem__(key)

  def check_all_read(self, path: str, allowed=lambda key: False):
    _refuse_unplaced(path, sorted(k for k in self if k not in self.read and not allowed(k)
                                 and not k.endswith("num_batches_tracked")))


def _refuse_unplaced(path: str, keys: list[str]):
  """A conversion leaves no array of the file behind: name the ones it could not place."""
  if keys:
    raise ValueError(f"{path}: {len(keys)} arrays have no place in kp-jax's model: "
                     f"{keys[:8]}{' ...' if len(keys) > 8 else ''}.")


def torchvision_resnet_variables(state: dict, path: str = "state_dict") -> dict:
  """{"params", "batch_stats"} of kp-jax's ResNet backbone (under "backbone") from a
  torchvision ResNet state_dict (the classifier `fc` is dropped; any other array left over is
  an error)."""
  state = _Read(state)
  if "conv1.weight" not in state or "layer1.0.conv1.weight" not in state:
    raise ValueError(f"{path} is not a torchvision ResNet state_dict (no conv1 / layer1 "
                     f"weights; keys start {sorted(state)[:4]}).")
  bottleneck = "layer1.0.conv3.weight" in state
  block_name = "Bottleneck" if bottleneck else "BasicBlock"
  convs = 3 if bottleneck else 2
  params, stats = {}, {}
  root = ("backbone",)
  params[root + ("Conv_0", "kernel")] = _conv(state["conv1.weight"])
  _batch_norm(state, "bn1", params, stats, root + ("BatchNorm_0",))
  index = 0
  for layer in range(1, 5):
    j = 0
    while f"layer{layer}.{j}.conv1.weight" in state:
      block = root + (f"{block_name}_{index}",)
      prefix = f"layer{layer}.{j}"
      for c in range(convs):
        params[block + (f"Conv_{c}", "kernel")] = _conv(state[f"{prefix}.conv{c + 1}.weight"])
        _batch_norm(state, f"{prefix}.bn{c + 1}", params, stats, block + (f"BatchNorm_{c}",))
      if f"{prefix}.downsample.0.weight" in state:  # the projection shortcut
        params[block + (f"Conv_{convs}", "kernel")] = _conv(state[f"{prefix}.downsample.0.weight"])
        _batch_norm(state, f"{prefix}.downsample.1", params, stats,
                    block + (f"BatchNorm_{convs}",))
      index, j = index + 1, j + 1
  state.check_all_read(path, allowed=lambda key: key.startswith("fc."))
  return {"params": params, "batch_stats": stats}


# ---------------------------------------------------------------------------------------------
# MMPose checkpoints.

MMPOSE_HEADS = ("head.", "keypoint_head.")  # MMPose 1.x, 0.x


def _deconv(weight):  # torch ConvTranspose2d [in, out, h, w] -> Flax ConvTranspose HWIO
  # torch's transposed convolution correlates with the flipped kernel; Flax's does not.
  return np.transpose(weight[:, :, ::-1, ::-1], (2, 3, 0, 1))


# MMPose's HRNet keys (after "backbone.") -> kp_jax.models.hrnet's module path, and whether the
# key's module is the conv ("conv") or its BatchNorm ("bn"). Longer patterns first.
_HRNET_KEYS = (
    (r"conv([12])", lambda m: (f"stem{int(m[1]) - 1}",), "conv"),
    (r"bn([12])", lambda m: (f"stem{int(m[1]) - 1}",), "bn"),
    (r"layer1\.(\d+)\.downsample\.([01])", lambda m: (f"stage1_block{m[1]}",), "proj"),
    (r"layer1\.(\d+)\.(conv|bn)([123])", lambda m: (f"stage1_block{m[1]}",), "block"),
    (r"transition(\d)\.(\d+)\.(?:0\.)?([01])",
     lambda m: (f"transition{int(m[1]) + 1}", f"branch{m[2]}"), "seq"),
    (r"stage(\d)\.(\d+)\.branches\.(\d+)\.(\d+)\.(conv|bn)([12])",
     lambda m: (f"stage{m[1]}_module{m[2]}", f"branch{m[3]}_block{m[4]}"), "block"),
    (r"stage(\d)\.(\d+)\.fuse_layers\.(\d+)\.(\d+)\.(\d+)\.([01])",
     lambda m: (f"stage{m[1]}_module{m[2]}", f"fuse{m[3]}_from{m[4]}_down{m[5]}"), "seq"),
    (r"stage(\d)\.(\d+)\.fuse_layers\.(\d+)\.(\d+)\.([01])",
     lambda m: (f"stage{m[1]}_module{m[2]}", f"fuse{m[3]}_from{m[4]}"), "seq"),
)


def _hrnet_layer(key: str):
  """(module path, "Conv_n" or "BatchNorm_n") of an MMPose HRNet key's module, or None."""
  for pattern, path, kind in _HRNET_KEYS:
    m = re.fullmatch(pattern, key)
    if m is None:
      continue
    if kind in ("conv", "bn"):  # the stem: one conv and one BatchNorm each
      return path(m), "Conv_0" if kind == "conv" else "BatchNorm_0"
    if kind == "proj":  # a Bottleneck's projection: its fourth conv and norm
      return path(m), ("Conv_3", "BatchNorm_3")[int(m[2])]
    if kind == "block":  # convN / bnN of a residual block
      index = int(m.groups()[-1]) - 1
      return path(m), f"Conv_{index}" if m.groups()[-2] == "conv" else f"BatchNorm_{index}"
    return path(m), ("Conv_0", "BatchNorm_0")[int(m.groups()[-1])]  # Sequential(conv, bn)
  return None


def mmpose_hrnet_variables(state: dict, path: str = "state_dict") -> dict:
  """{"params", "batch_stats"} of kp_jax.models.HRNet with the heatmap head (stride 4: one 1x1
  conv) from an MMPose HRNet checkpoint (`td-hm_hrnet-w32_8xb64-210e_coco-256x192-*.pth`),
  key by key through `_HRNET_KEYS`; an array with no place is an error naming it."""
  prefix = next(p for p in MMPOSE_HEADS if any(k.startswith(p) for k in state))
  params, stats, unplaced = {}, {}, []
  for key, value in state.items():
    if key.endswith("num_batches_tracked"):
      continue
    if key in (f"{prefix}final_layer.weight", f"{prefix}final_layer.bias"):
      leaf = "kernel" if key.endswith("weight") else "bias"
      params[("head", "Conv_0", leaf)] = _conv(value) if leaf == "kernel" else value
      continue
    module, _, leaf = key.removeprefix("backbone.").rpartition(".")
    found = _hrnet_layer(module) if key.startswith("backbone.") else None
    if found is None:
      unplaced.append(key)
      continue
    name = ("backbone", *found[0], found[1])
    if found[1].startswith("Conv"):
      params[name + ("kernel",)] = _conv(value)
    elif leaf in ("weight", "bias"):
      params[name + ({"weight": "scale", "bias": "bias"}[leaf],)] = value
    else:
      stats[name + ({"running_mean": "mean", "running_var": "var"}[leaf],)] = value
  _refuse_unplaced(path, unplaced)
  return {"params": params, "batch_stats": stats}


def is_mmpose(state: dict) -> bool:
  return any(k.startswith("backbone.") for k in state) and any(
      k.startswith(MMPOSE_HEADS) for k in state)


def mmpose_simplebaseline_variables(state: dict, path: str = "state_dict") -> dict:
  """{"params", "batch_stats"} of kp-jax's ResNet with the heatmap head from an MMPose
  SimpleBaseline checkpoint (`TopdownPoseEstimator`: a ResNet backbone and a `HeatmapHead` of
  4x4 stride-2 deconvolutions, each with BatchNorm and ReLU, then a 1x1 conv), key by key:

    backbone.<torchvision key>              backbone/... (`torchvision_resnet_variables`)
    head.deconv_layers.{3i}.weight          head/ConvTranspose_i/kernel (kernel flipped)
    head.deconv_layers.{3i+1}.<BatchNorm>   head/BatchNorm_i
    head.final_layer.weight / bias          head/Conv_0/kernel / bias

  (`keypoint_head.` for MMPose 0.x). An array with no place in the model is an error."""
  prefix = next(p for p in MMPOSE_HEADS if any(k.startswith(p) for k in state))
  _refuse_unplaced(path, sorted(k for k in state if not k.startswith(("backbone.", prefix))))
  variables = torchvision_resnet_variables(
      {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")},
      path)
  _heatmap_head(state, prefix, variables["params"], variables["batch_stats"], path)
  return variables


def _heatmap_head(state: dict, prefix: str, params: dict, stats: dict, path: str):
  """MMPose's `HeatmapHead` (the arrays under `prefix`) into kp-jax's heatmap head: deconv
  layers {3i} / {3i+1} -> ConvTranspose_i / BatchNorm_i, final_layer -> Conv_0."""
  head = _Read({k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)})
  i = 0
  while f"deconv_layers.{3 * i}.weight" in head:
    params[("head", f"ConvTranspose_{i}", "kernel")] = _deconv(
        head[f"deconv_layers.{3 * i}.weight"])
    _batch_norm(head, f"deconv_layers.{3 * i + 1}", params, stats, ("head", f"BatchNorm_{i}"))
    i += 1
  params[("head", "Conv_0", "kernel")] = _conv(head["final_layer.weight"])
  params[("head", "Conv_0", "bias")] = head["final_layer.bias"]
  head.check_all_read(path)


# MMPose's ViTPose keys (after "backbone.") -> kp_jax.models.vit's module path: MMPose 1.x
# (mmpretrain.VisionTransformer) and 0.x (MMPose's own ViT) names.
_VIT_KEYS = (
    (r"patch_embed\.(?:projection|proj)", lambda m: ("patch_embed",)),
    (r"(?:layers|blocks)\.(\d+)\.(?:ln|norm)([12])", lambda m: (f"layer{m[1]}", f"ln{m[2]}")),
    (r"(?:layers|blocks)\.(\d+)\.attn\.(qkv|proj)", lambda m: (f"layer{m[1]}", "attn", m[2])),
    (r"layers\.(\d+)\.ffn\.layers\.0\.0|blocks\.(\d+)\.mlp\.fc1",
     lambda m: (f"layer{m[1] or m[2]}", "fc1")),
    (r"layers\.(\d+)\.ffn\.layers\.1|blocks\.(\d+)\.mlp\.fc2",
     lambda m: (f"layer{m[1] or m[2]}", "fc2")),
    (r"ln1|last_norm", lambda m: ("ln",)),
)


def _vit_leaf(value: np.ndarray, leaf: str):
  """(Flax leaf name, array) of a torch Conv2d / Linear / LayerNorm weight or bias."""
  if leaf == "bias":
    return "bias", value
  if value.ndim == 4:
    return "kernel", _conv(value)
  return ("kernel", value.T) if value.ndim == 2 else ("scale", value)


def mmpose_vitpose_variables(state: dict, path: str = "state_dict") -> dict:
  """{"params", "batch_stats"} of kp_jax.models.ViT with the heatmap head from an MMPose
  ViTPose checkpoint (`td-hm_ViTPose-base_8xb64-210e_coco-256x192-*.pth`, classic or simple
  decoder), key by key through `_VIT_KEYS`; an array with no place is an error naming it.
  MMPose 0.x's position embedding has a class token's entry, which its ViT adds to every
  patch's: it is folded in here."""
  prefix = next(p for p in MMPOSE_HEADS if any(k.startswith(p) for k in state))
  params, stats, unplaced = {}, {}, []
  for key, value in state.items():
    if key.startswith(prefix):
      continue  # the head's: _heatmap_head
    if key == "backbone.pos_embed":
      if any(k.startswith("backbone.blocks.") for k in state):  # MMPose 0.x: a class token's
        value = value[:, 1:] + value[:, :1]
      params[("backbone", "pos_embed")] = value
      continue
    module, _, leaf = key.removeprefix("backbone.").rpartition(".")
    found = next((to(m) for pattern, to in _VIT_KEYS
                  if (m := re.fullmatch(pattern, module)) is not None), None)
    if found is None or not key.startswith("backbone.") or leaf not in ("weight", "bias"):
      unplaced.append(key)
      continue
    flax_leaf, array = _vit_leaf(value, leaf)
    params[("backbone", *found, flax_leaf)] = array
  _refuse_unplaced(path, unplaced)
  _heatmap_head(state, prefix, params, stats, path)
  return {"params": params, "batch_stats": stats}


# ---------------------------------------------------------------------------------------------
# kp-jax workdirs.


def workdir_variables(workdir: str) -> dict:
  """{"params", "batch_stats"} (flattened) of a kp-jax run's best (else latest) checkpoint."""
  directory = epath.Path(workdir) / "checkpoints"
  if not directory.is_dir():
    raise FileNotFoundError(f"config.model.init_from={workdir!r}: no checkpoints/ folder; give "
                            "a kp-jax workdir or a torchvision .pth file.")
  manager = checkpoint.create_manager(directory, 1, 1)
  step = manager.best_step() or manager.latest_step()
  if step is None:
    raise FileNotFoundError(f"config.model.init_from={workdir!r}: {directory} holds no "
                            "checkpoint.")
  state = checkpoint.restore_raw(manager, step)
  manager.close()
  logging.info("init_from: step %d of %s", step, workdir)
  params = state["ema_params"] if state.get("ema_params") else state["params"]
  return {"params": traverse_util.flatten_dict(params), "batch_stats": traverse_util.flatten_dict(state.get("batch_stats") or {})}


# ---------------------------------------------------------------------------------------------
# Taking what matches.


def _adapt_channels(source: np.ndarray, target_shape) -> np.ndarray | None:
  """A first-layer kernel [h, w, C, F] for another number of input channels, or None."""
  if (source.ndim != 4 or len(target_shape) != 4 or source.shape[:2] != tuple(target_shape[:2])
      or source.shape[3] != target_shape[3]):
    return None
  if target_shape[2] == 1:
    return source.sum(axis=2, keepdims=True)
  if source.shape[2] == 1:
    return np.repeat(source, target_shape[2], axis=2) / target_shape[2]
  return None


def merge(variables: dict, source: dict, name: str) -> tuple[dict, list[str], list[str]]:
  """`variables` ({"params", "batch_stats"} trees) with every array that `source` (the same,
  flattened by path) holds under the same path and shape; (merged, taken, kept fresh)."""
  merged, taken, fresh = {}, [], []
  for collection in ("params", "batch_stats"):
    flat = traverse_util.flatten_dict(jax.device_get(variables.get(collection, {})))
    for path, value in flat.items():
      found = source.get(collection, {}).get(path)
      label = "/".join((collection,) + path)
      if found is not None and np.shape(found) != np.shape(value):
        found = _adapt_channels(np.asarray(found), np.shape(value))
      if found is None:
        fresh.append(label)
      else:
        flat[path] = np.asarray(found, np.asarray(value).dtype)
        taken.append(label)
    merged[collection] = traverse_util.unflatten_dict(flat)
  if not any(label.startswith("params/backbone/") for label in taken):
    raise ValueError(f"config.model.init_from={name!r}: none of its arrays fit this model's "
                     "backbone; config.model.backbone must be the source's architecture "
                     "(for torchvision ResNets: resnet_shape(depth) with width 64).")
  return merged, taken, fresh


def check_mmpose_normalisation(data_config, path: str):
  """An MMPose network sees its own input statistics: the run must normalise as MMPose did."""
  mean, std = pixels.normalisation(data_config, 3)  # MMPose's networks see RGB
  want_mean, want_std = pixels.MMPOSE_NORMALISATION
  if not (np.allclose(mean, want_mean) and np.allclose(std, want_std)):
    raise ValueError(
        f"config.model.init_from={path!r} is an MMPose checkpoint, trained on inputs "
        f"normalised by MMPose's ImageNet statistics: set config.data.image_mean="
        f"{want_mean} and config.data.image_std={want_std} "
        f"(now {data_config.image_mean} and {data_config.image_std}).")


def file_variables(state: dict, path: str) -> dict:
  """{"params", "batch_stats"} (flattened) of a `.pth` file's state_dict: an MMPose HRNet,
  ViTPose or SimpleBaseline checkpoint, else a torchvision ResNet."""
  if not is_mmpose(state):
    return torchvision_resnet_variables(state, path)
  if any(k.startswith("backbone.transition1.") for k in state):
    return mmpose_hrnet_variables(state, path)
  if any(k.startswith(("backbone.layers.", "backbone.blocks.")) for k in state):
    return mmpose_vitpose_variables(state, path)
  return mmpose_simplebaseline_variables(state, path)


def load(init_from: str, variables: dict, data_config=None) -> dict:
  """`variables` ({"params", "batch_stats"}) initialised from `init_from` (module docstring);
  with the run's `data_config`, an MMPose checkpoint's input normalisation is checked."""
  if epath.Path(init_from).is_dir():
    source = workdir_variables(init_from)
  elif epath.Path(init_from).is_file():
    state = _torch_state_dict(init_from)
    if data_config is not None and is_mmpose(state):
      check_mmpose_normalisation(data_config, init_from)
    source = file_variables(state, init_from)
  else:
    raise FileNotFoundError(f"config.model.init_from={init_from!r} is neither a workdir nor a "
                            "file.")
  merged, taken, fresh = merge(variables, source, init_from)
  unused = sorted(label for label in ("/".join((collection,) + path)
                                      for collection in source for path in source[collection])
                  if label not in taken)
  missing = [label for label in fresh if "/backbone/" in label]
  if (unused or missing) and not epath.Path(init_from).is_dir():
    # A file's arrays and this model's backbone match one to one, or the file is of another
    # architecture (another run's head for other keypoints may be left behind, a file's not).
    raise ValueError(
        f"config.model.init_from={init_from!r} is not this model's architecture: "
        + (f"{len(unused)} of its arrays do not fit ({unused[:5]})" if unused else
           f"it lacks {len(missing)} of the backbone's arrays ({missing[:5]})")
        + "; set config.model to its architecture.")
  logging.info("init_from %s: took %d arrays; %d keep their fresh initialisation%s", init_from,
               len(taken), len(fresh), f": {fresh}" if fresh else "")
  return merged
