#!/usr/bin/env bash
# GPU readiness in one script, for a single H100/H200 (budget: under 8 minutes):
#   1. the GPU tests (pytest -m gpu): they must run and pass, none skipped
#   2. the metrics benchmark at N = 10k and 100k on CUDA
#   3. the training benchmark at 224 px: [D]-style loop vs ours vs 2..16 runs grouped (images/s, peak memory,
#      configs/hour)
#   4. one short real fine-tuning group of the paper recipe (breastmnist fold 1, the 120-config grid, 224 px)
# Tables go to benchmarks/results/{gpu_tests,metrics,training,finetune_group}_gpu.txt, each naming the machine.
# The plan (python -m helpers.run all --profile paper --plan) then uses training_gpu.txt for its estimates.
#
#   bash benchmarks/gpu_check.sh             # on the GPU machine, from the project root or anywhere
#   bash benchmarks/gpu_check.sh --dry-run   # the same steps at toy sizes on the CPU, tables to a temp folder
#
# Every step must succeed: the script stops at the first failure (set -e), and a GPU run without a CUDA device,
# a skipped GPU test or a step over its time limit is a failure, not a warning.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi; fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -z "${DATA_ROOT:-}" ] && [ -d ../shared/data ]; then export DATA_ROOT="$(cd ../shared/data && pwd)"; fi
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
if [ "$DRY" = 1 ]; then
    OUT="$(mktemp -d)"
    DEVICE=cpu
    echo "[gpu_check] DRY RUN on the CPU at toy sizes; tables in $OUT (not the committed ones)"
else
    OUT=benchmarks/results
    DEVICE=cuda
    "$PY" - <<'PYEOF'
import sys, torch
if not torch.cuda.is_available():
    sys.exit("[gpu_check] FAILED: torch sees no CUDA device (use --dry-run to check the script on a CPU)")
print(f"[gpu_check] {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
PYEOF
fi
mkdir -p "$OUT"
START=$SECONDS

step() {  # step NAME LIMIT_SECONDS COMMAND...: run with a time limit, report its time, fail loudly
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    echo "[gpu_check] $name (limit ${limit} s)"
    if ! timeout "$limit" "$@"; then
        echo "[gpu_check] FAILED: $name (exit status or time limit of ${limit} s)" >&2
        exit 1
    fi
    echo "[gpu_check] $name done in $((SECONDS - t0)) s (total $((SECONDS - START)) s)"
}

# 1. GPU tests: collected, run, and none skipped
if [ "$DRY" = 1 ]; then
    step "GPU tests (collection only)" 120 "$PY" -m pytest -m gpu --collect-only -q -p no:cacheprovider
else
    step "GPU tests" 150 bash -c "'$PY' -m pytest -m gpu -q -rs -p no:cacheprovider 2>&1 | tee '$OUT/gpu_tests_gpu.txt'; exit \${PIPESTATUS[0]}"
    if grep -qiE "[0-9]+ skipped" "$OUT/gpu_tests_gpu.txt"; then
        echo "[gpu_check] FAILED: GPU tests were skipped on a GPU machine" >&2
        exit 1
    fi
    sed -i "1i # pytest -m gpu on $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)" \
        "$OUT/gpu_tests_gpu.txt"
fi

# 2. metrics at N = 10k and 100k on the device (the CPU table is benchmarks/results/metrics_cpu.txt)
if [ "$DRY" = 1 ]; then
    step "metrics benchmark" 300 bash -c "'$PY' benchmarks/metrics.py --sizes 300 --devices cpu --no-approx-check --metrics logme leep > '$OUT/metrics_gpu.txt'"
else
    step "metrics benchmark" 120 bash -c "'$PY' benchmarks/metrics.py --sizes 10000 100000 --devices cuda --no-approx-check > '$OUT/metrics_gpu.txt'"
fi
grep -q "^TOTAL" "$OUT/metrics_gpu.txt" || { echo "[gpu_check] FAILED: metrics table has no TOTAL row" >&2; exit 1; }
! grep -q "ERR" "$OUT/metrics_gpu.txt" || { echo "[gpu_check] FAILED: a metric raised (ERR in the table)" >&2; exit 1; }

# 3. training throughput at 224 px: [D] loop, ours, runs grouped
if [ "$DRY" = 1 ]; then
    step "training benchmark" 300 "$PY" benchmarks/training.py --device cpu --image-size 32 --stored-size 28 \
        --images 64 --batch-size 8 --steps 2 --warmup 1 --workers 0 --together 1,2 --save "$OUT/training_gpu.txt"
else
    step "training benchmark" 120 "$PY" benchmarks/training.py --device cuda --image-size 224 --stored-size 224 \
        --workers 8 --together 1,2,4,8,16 --save "$OUT/training_gpu.txt"
fi
"$PY" -c "
from helpers.stages.throughput import parse_training_table
t = parse_training_table(open('$OUT/training_gpu.txt').read(), 'training_gpu.txt')
print(f'[gpu_check] the plan will read: {t.describe()}')"

# 4. one short real fine-tuning group of the paper recipe
if [ "$DRY" = 1 ]; then
    step "fine-tuning group" 300 "$PY" benchmarks/finetune_group.py --device cpu --configs 2 --epochs 1 \
        --image-size 28 --save "$OUT/finetune_group_gpu.txt"
else
    step "fine-tuning group" 90 "$PY" benchmarks/finetune_group.py --device cuda --epochs 2 --image-size 224 \
        --save "$OUT/finetune_group_gpu.txt"
fi

echo "[gpu_check] all steps passed in $((SECONDS - START)) s; tables:"
ls -l "$OUT"/*_gpu.txt
