#!/usr/bin/env bash
# The benchmark profile on a GPU host, as one prepared run (Qwen2.5-3B config, batch 4 x 1024, 5 steps,
# seeded synthetic tokens). Prints the device and library versions, then three evaluations through the
# validator's path (bench/eval_overhead.py, env.py per run):
#   1. the template, 5 runs: TPS per run, MFU, CoV, phase timings, honest check values;
#   2. an honest faster loop (fused AdamW, direct module pass), 3 runs: the honest-vs-honest spread the
#      GPU tolerances are set against;
#   3. cheats, 1 run each: skipping backward on the last step (weights_mismatch) and freezing layers then
#      restoring requires_grad (frozen_params).
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
for cheat in skip_backward_last freeze_restore; do
  step "$cheat" "${CHEAT_LIMIT:-80}" --runs 1 --train "tests/fixtures/train/$cheat.py"
done
