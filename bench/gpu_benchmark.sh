#!/usr/bin/env bash
# The benchmark profile on a GPU host, as one prepared run (Qwen2.5-3B config, batch 4 x 1024, 5 steps,
# seeded synthetic tokens). Prints the device and library versions, then, through the validator's path:
#   1. the template, 5 runs through one warm env.py --serve (bench/eval_overhead.py): TPS per run, MFU,
#      CoV, each phase, the in-window hand-over against the window, the overhead ratio;
#   2. an honest faster loop (the given AdamW fused, direct module pass), 3 runs;
#   3. bench/separation.py: every honest variant and every gradient shortcut once, and per statistic the
#      honest spread, the weakest shortcut and their ratio: what the GPU tolerances are set against.
# Logs go to $OUT (or artifacts/gpu); PROFILE=tiny rehearses the script on a CPU. Each step has its own time limit so one hang cannot eat the rest.
set -u
cd "$(dirname "$0")/.."
out=${OUT:-artifacts/gpu}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  python3 -c "import sys, torch, transformers; print(sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__)"
} 2>&1 | tee "$out/device.txt"
step() {
  local name=$1 limit=$2
  shift 2
  echo "== $name"
  timeout "$limit" python3 bench/eval_overhead.py --profile "${PROFILE:-benchmark}" --synthetic "$@" 2>&1 | tee "$out/$name.txt"
  echo "== $name: exit ${PIPESTATUS[0]}"
}
step template "${TEMPLATE_LIMIT:-300}" --runs 5
step honest_fast "${HONEST_LIMIT:-150}" --runs 3 --train tests/fixtures/train/honest_fast.py
echo "== separation"
# A subset on the GPU (each run costs a 3B reference): the kernel variants most likely to differ in bf16, and
# the shortcuts closest to honest on tiny-bf16.
timeout "${SEPARATION_LIMIT:-420}" python3 bench/separation.py --profile "${PROFILE:-benchmark}" --synthetic \
  --honest "${HONEST_VARIANTS:-fused,chunked_ce,microbatch,compile}" \
  --shortcuts "${SHORTCUTS:-zero_last,reuse_last,mhat_last,lr110,head_quarter}" 2>&1 | tee "$out/separation.txt"
echo "== separation: exit ${PIPESTATUS[0]}"
