"""What each device holds of ViTPose's training state, replicated and with `config.shard_state`.

  XLA_FLAGS=--xla_force_host_platform_device_count=4 \
      .venv/bin/python benchmarks/sharding.py [--sizes small base large huge]

For each ViT size with configs/coco_vitpose_b.py's head and optimiser (AdamW: two moments per
parameter, plus the EMA copy kp-jax keeps), at 256x192 and 17 keypoints: the parameter bytes
and the whole state's bytes one device holds when the state is copied to every device, and
when it is split FSDP-style (`steps.fsdp_spec`: each large array's largest dimension that the
devices divide, over the batch's mesh axis). From shapes alone (`jax.eval_shape` and each
sharding's shard shape): nothing is allocated, so ViT-H's counts come in seconds on any
machine. tests/train_test.py checks on 4 simulated devices that the split step computes what
the copied one does and that each device holds its share.
"""

import argparse

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from config_shapes import load_config
from kp_jax import steps
from kp_jax.models import VIT_SIZES, create_model, vit_shape


def state_shapes(size: str):
  config = load_config("coco_vitpose_b")
  config.model.backbone = {"name": "vit", **vit_shape(size)}
  model, _ = create_model(config.model, 17, (256, 192))
  return steps.state_shapes(config, model, (256, 192, 3))


def bytes_per_device(tree, shardings) -> int:
  """Bytes of the first device's shards of `tree` (ShapeDtypeStructs) laid out by `shardings`."""
  leaves, layouts = jax.tree.leaves(tree), jax.tree.leaves(shardings)
  return sum(int(np.prod(layout.shard_shape(leaf.shape))) * leaf.dtype.itemsize
             for leaf, layout in zip(leaves, layouts))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--sizes", nargs="+", choices=sorted(VIT_SIZES),
                      default=["small", "base", "large", "huge"])
  args = parser.parse_args()
  mesh = Mesh(np.array(jax.devices()), ("data",))
  devices = mesh.devices.size
  replicated = NamedSharding(mesh, PartitionSpec())
  print(f"{devices} devices ({jax.devices()[0].device_kind}); MiB one device holds\n")
  print("| ViTPose | parameters | params replicated | params sharded | state replicated "
        "| state sharded | state sharded / replicated |")
  print("| --- | --- | --- | --- | --- | --- | --- |")
  for size in args.sizes:
    state = steps.checkpointable(state_shapes(size))
    count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state["params"]))
    copied = jax.tree.map(lambda _: replicated, state)
    split = steps.fsdp_shardings(mesh, state)
    mib = lambda tree, layout: bytes_per_device(tree, layout) / 2**20
    whole, shared = mib(state, copied), mib(state, split)
    print(f"| {size} | {count:,} | {mib(state['params'], copied['params']):,.1f} "
          f"| {mib(state['params'], split['params']):,.1f} | {whole:,.1f} | {shared:,.1f} "
          f"| {shared / whole:.3f} |")


if __name__ == "__main__":
  main()
