#!/usr/bin/env bash
# GPU check (issue 8): install from given wheels if any, measure training images/s per backbone
# (fp32 vs mixed vs mixed+XLA), and run a short search with 2 workers on one GPU (1 on CPU),
# printing each worker's GPU memory. Under 8 minutes on a GPU; on a CPU-only machine it runs
# too, with fewer steps, and says that no GPU was found.
#
#   bash bench/gpu_check.sh [WHEEL_DIR]     # WHEEL_DIR: wheels for an offline machine
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ -n "${1:-}" ]; then
  "$PY" -m pip install -q --no-index --find-links "$1" -e ".[gpu]" || \
    "$PY" -m pip install -q --no-index --find-links "$1" -e .
fi
export TF_CPP_MIN_LOG_LEVEL=2
"$PY" bench/gpu_throughput.py "${@:2}"

work="$(mktemp -d)"
trap 'rm -rf "$work"; kill "${poll:-0}" 2>/dev/null || true' EXIT
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  workers=(--workers-per-gpu 2 --gpus 0)
  ( while sleep 2; do
      nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader >>"$work/mem.csv"
    done ) & poll=$!
else
  echo "no GPU found: the search runs on the CPU with one worker"
  workers=(--workers 1)
fi
start=$(date +%s)
"$PY" -m search.run --study quick --data demo --n-trials 2 --epochs 1 --folds 2 \
  --storage "sqlite:///$work/check.db" --name gpu-check --pruner none "${workers[@]}" -q
echo "search: 2 trials in $(( $(date +%s) - start )) s"
if [ -s "$work/mem.csv" ]; then
  echo "GPU memory per worker process (MiB, peak seen):"
  sort -t, -k1,1 -k2,2n "$work/mem.csv" | awk -F', ' '{m[$1]=$2} END {for (p in m) print "  pid " p ": " m[p]}'
fi
