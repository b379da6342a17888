#!/usr/bin/env bash
# A lent GPU's session (docs/benchmarks.md, "On a GPU"): the machine and versions and whether
# cuDNN's fused attention runs (a small bf16 forward and gradient), then every row of
# benchmarks/accelerator.py in bf16 with a fresh compilation cache (cold), then kp-jax's rows
# that ran cold again from that cache (warm; a row that did not has nothing there to read
# back, and would only compile cold again). Rows are written as they finish, so a session cut
# short keeps what it measured, and one whose warm rows end early leaves device time for
# another call. Where kp-jax's ViTPose-B row failed cold and DIAGNOSE_BUDGET_S is set, a
# third pass bisects it in that budget (docs/benchmarks.md, "One NVIDIA H200"): the whole model
# with XLA's autotuner but not its checks, one transformer block with and without the classic
# decoder, and the whole model without the autotuner; where it did not fail, the warm pass
# gets that budget as well and profiles each step after timing it (its kernels by time: where
# the step's time goes, for the MFU work).
#
#   [DIAGNOSE_BUDGET_S=S] [ROW_TIMEOUT_S=200] bash benchmarks/accelerator_session.sh OUT_DIR \
#       COLD_BUDGET_S WARM_BUDGET_S [CONFIG ...]
#
# ROW_TIMEOUT_S: each row's limit. A cold row that runs out of it leaves no compiled step in
# the cache for the warm pass (HRNet-W32's cold bf16 row took longer than 200 s on an H200).
set -u
out=$1 cold_budget=$2 warm_budget=$3
shift 3
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(coco_vitpose_b coco_person coco_hrnet_w32 resnet18_heatmap
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
  # ViTPose-B's attention in bf16 takes cuDNN's fused kernel ("auto"): does it run at all here?
  python3 -c "import jax, jax.numpy as jnp
q = jnp.ones((2, 192, 12, 64), jnp.bfloat16)
f = lambda q: jax.nn.dot_product_attention(q, q, q, implementation='cudnn').sum()
try:
  print('cuDNN attention, forward and gradient: ran', jax.jit(jax.grad(f))(q).shape)
except Exception as e:
  print('cuDNN attention, forward and gradient: failed:', type(e).__name__, str(e)[:300])
from kp_jax.models import vit
print('ViT attention auto in bf16 takes:', vit.attention_implementation('auto', jnp.bfloat16, 64))"
} 2>&1 | tee -a "$out/machine.txt"
bench=(python3 benchmarks/accelerator.py --configs "${configs[@]}" --dtypes bfloat16
       --compilation_cache_dir "$cache" --row_timeout_s "${ROW_TIMEOUT_S:-200}")
echo "== cold: ${configs[*]}"
"${bench[@]}" --budget_s "$cold_budget" --json "$out/cold.jsonl" --log "$out/cold.log"
# From the cold rows: did kp-jax's ViTPose-B fail (not merely not start), and which configs'
# kp-jax rows ran (the warm pass reads only those back from the cache)?
read -r vitpose_failed ran_cold_configs < <(python3 -c "import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
kp_jax = [r for r in rows if r['framework'] == 'kp-jax']
print(any(r['config'] == 'coco_vitpose_b' and r['status'] != 'ok'
          and not r['status'].startswith('not started') for r in kp_jax),
      *[r['config'] for r in kp_jax if r['status'] == 'ok'])
" "$out/cold.jsonl" 2>/dev/null)
ran_cold=(${ran_cold_configs:-})
# Nothing to bisect: the warm pass, which the issue asks for, gets the bisection's time too,
# and profiles each row (after its timings are written).
profile=()
if [ "${vitpose_failed:-}" != True ]; then
  warm_budget=$((warm_budget + ${DIAGNOSE_BUDGET_S:-0}))
  profile=(--profile_steps 3)
fi
if [ ${#ran_cold[@]} -gt 0 ]; then
  echo "== warm: ${ran_cold[*]} (kp-jax, from the cache; ${warm_budget} s) ${profile[*]:-}"
  "${bench[@]}" --configs "${ran_cold[@]}" --frameworks kp-jax --budget_s "$warm_budget" \
    --json "$out/warm.jsonl" --log "$out/warm.log" --counts_from "$out/cold.jsonl" \
    ${profile[@]+"${profile[@]}"}
else
  echo "== warm: no kp-jax row ran cold, so none can be read back"
fi
if [ "${vitpose_failed:-}" = True ] && [ "${DIAGNOSE_BUDGET_S:-0}" -gt 0 ]; then
  echo "== diagnose: kp-jax's ViTPose-B failed cold"
  diagnose_end=$((SECONDS + DIAGNOSE_BUDGET_S))
  diagnose() {  # kp-jax's rows of "$@" in what is left of the bisection's budget
    local left=$((diagnose_end - SECONDS))
    "${bench[@]}" --frameworks kp-jax --budget_s $((left > 0 ? left : 0)) \
      --json "$out/diagnose.jsonl" --log "$out/diagnose.log" --counts_from "$out/cold.jsonl" "$@"
  }
  # XLA's autotuner without its buffer initialisation and result checks: if the whole model
  # runs so, the crash lies in what this level leaves out, and it keeps the autotuned kernels.
  diagnose --configs coco_vitpose_b --xla_flags=--xla_gpu_autotune_level=1
  diagnose --configs coco_vitpose_b:model.backbone.depth=1 \
      "coco_vitpose_b:model.backbone.depth=1,model.head.upsample=bilinear,model.head.final_kernel=3"
  diagnose --configs coco_vitpose_b --xla_flags=--xla_gpu_autotune_level=0  # no autotuning
fi
