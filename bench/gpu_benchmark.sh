#!/usr/bin/env bash
# Calibrates the benchmark profile on a GPU host, as one prepared run of under 8 minutes on one H100
# (Qwen2.5-3B config, batch 4 x 1024, 5 steps, seeded synthetic tokens). Through the validator's path:
#   1. bench/calibrate.py: honest loops of the profile's precision (bf16 autocast over fp32 master weights
#      and fp32 AdamW state) or better, 2 seeds each (too few for a loop's tail, so these bounds are the
#      margin over the maximum only, and calibrate.py says so), one warm env.py --serve; writes
#      $OUT/<profile>.<device class>.json (for the benchmark profile also into environments/templar/calibration/,
#      where the next step's harness reads it: commit that file) and the runs it measured
#      ($OUT/calibration-runs.json: merge sessions with calibrate.py --from-runs a.json b.json);
#   2. bench/separation.py with that calibration: the closest fp8 shortcut (weight gradients) and the
#      closest gradient shortcut (the last gradient zeroed), beside one fresh honest seed.
# Each step has its own time limit so one hang cannot eat the rest; the defaults sum to 460 s of a 480 s
# budget (~28 s per 3B evaluation on an H200, imports and model builds included: 12 calibration runs, 3
# separation runs). TPS, MFU and phases: bench/eval_overhead.py --profile benchmark --synthetic.
# Dry run on a CPU: PROFILE=tiny-bf16 bash bench/gpu_benchmark.sh (the same steps on the tiny model).
set -u
cd "$(dirname "$0")/.."
out=${OUT:-artifacts/gpu}
profile=${PROFILE:-benchmark}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>/dev/null || echo "no nvidia-smi: a CPU dry run"
  python3 -c "import sys, torch, transformers; print(sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__)"
} 2>&1 | tee "$out/device.txt"
run() {  # name limit command...
  local name=$1 limit=$2
  shift 2
  echo "== $name"
  timeout "$limit" "$@" 2>&1 | tee "$out/$name.txt"
  echo "== $name: exit ${PIPESTATUS[0]}"
}
# The fp32 loop (higher precision is honest) runs with activation checkpointing: without it a 3B fp32 run
# does not fit 80 GB at 4 x 1024 tokens.
run calibrate "${CALIBRATE_LIMIT:-350}" python3 bench/calibrate.py --profile "$profile" --synthetic \
  --seeds "${SEEDS:-2}" --loops "${LOOPS:-template,fp32_checkpoint,fused,chunked_ce,math_sdpa,checkpoint}" \
  --save-runs "$out/calibration-runs.json" --out "$out"
# A dry run (PROFILE=tiny-bf16 on a CPU) leaves the shipped calibrations alone.
[ "$profile" = benchmark ] && cp "$out"/benchmark.*.json environments/templar/calibration/
run separation "${SEPARATION_LIMIT:-110}" python3 bench/separation.py --profile "$profile" --synthetic \
  --seeds 1 --honest "${HONEST_VARIANTS:-fused}" --shortcuts "${SHORTCUTS:-fp8_wgrad,zero_last}"
