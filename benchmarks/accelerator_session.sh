#!/usr/bin/env bash
# A lent GPU's session (docs/benchmarks.md, "On a GPU"): the machine and versions, then every
# row of benchmarks/accelerator.py in bf16 with a fresh compilation cache (cold), then kp-jax's
# rows again from that cache (warm). Rows are written as they finish, so a session cut short
# keeps what it measured.
#
#   bash benchmarks/accelerator_session.sh OUT_DIR COLD_BUDGET_S WARM_BUDGET_S [CONFIG ...]
set -u
out=$1 cold_budget=$2 warm_budget=$3
shift 3
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(coco_vitpose_b coco_hrnet_w32 coco_person resnet18_heatmap
                                     default seed)
mkdir -p "$out"
export PYTHONUNBUFFERED=1
cache=$(mktemp -d)  # empty: the first pass compiles everything
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import jax, flax, optax, torch; print('jax', jax.__version__, '| flax',
flax.__version__, '| optax', optax.__version__, '| torch', torch.__version__)"
  lscpu | grep 'Model name'
  date -u
} 2>&1 | tee -a "$out/machine.txt"
bench=(python3 benchmarks/accelerator.py --configs "${configs[@]}" --dtypes bfloat16
       --compilation_cache_dir "$cache" --row_timeout_s 200)
echo "== cold: ${configs[*]}"
"${bench[@]}" --budget_s "$cold_budget" --json "$out/cold.jsonl" --log "$out/cold.log"
echo "== warm (the same rows, kp-jax, from the cache)"
"${bench[@]}" --frameworks kp-jax --budget_s "$warm_budget" --json "$out/warm.jsonl" \
  --log "$out/warm.log"
