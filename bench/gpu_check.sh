#!/usr/bin/env bash
# GPU check on one Keras backend: training images/s per backbone (float32 vs mixed precision vs
# mixed + XLA, the trainer's own step), then `search.run --study convnext --weights none` for a
# few short trials with one and with two workers on GPU 0, printing each worker's peak GPU
# memory. A few minutes on a GPU; on a machine without one it runs on the CPU with fewer steps
# and says so.
#
#   bash bench/gpu_check.sh --backend jax|torch|tensorflow [--wheels DIR]
#
# It needs only what a CUDA machine with that backend already has (PyTorch, or JAX with CUDA,
# or TensorFlow) plus this project's small dependencies: for an offline machine, download their
# wheels elsewhere (`pip download -d DIR .`, the README's "Backends" section), carry DIR over and
# pass --wheels DIR; the project is then installed from DIR alone (`pip install --no-index
# --find-links DIR -e .`), the backend already there left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
backend="${KERAS_BACKEND:-tensorflow}"
wheels=""
while [ $# -gt 0 ]; do
  case "$1" in
    --backend) backend="$2"; shift 2 ;;
    --wheels) wheels="$2"; shift 2 ;;
    *) echo "usage: bash bench/gpu_check.sh --backend jax|torch|tensorflow [--wheels DIR]" >&2; exit 2 ;;
  esac
done
export KERAS_BACKEND="$backend" TF_CPP_MIN_LOG_LEVEL=2
if [ -n "$wheels" ]; then
  "$PY" -m pip install -q --no-index --find-links "$wheels" -e .
fi
"$PY" -c "import keras; assert keras.backend.backend() == '$backend', keras.backend.backend()"
"$PY" bench/gpu_throughput.py --backend "$backend" --out "docs/gpu_$backend.md"

work="$(mktemp -d)"
trap 'rm -rf "$work"; kill "${poll:-0}" 2>/dev/null || true' EXIT
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  ( while sleep 1; do
      nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader >>"$work/mem.csv"
    done ) & poll=$!
  placements=("--gpus 0 --workers-per-gpu 1" "--gpus 0 --workers-per-gpu 2")
else
  echo "no GPU found: the searches run on the CPU"
  placements=("--workers 1" "--workers 2")
fi
for placement in "${placements[@]}"; do
  : >"$work/mem.csv"
  start=$(date +%s)
  # shellcheck disable=SC2086
  "$PY" -m search.run --study convnext --weights none --backend "$backend" --data demo \
    --image-size 64 --n-trials 4 --epochs 2 --folds 2 --pruner none $placement \
    --storage "sqlite:///$work/check.db" --name "check-${placement// /}" -q
  echo "search ($placement, $backend): 4 trials in $(( $(date +%s) - start )) s"
  if [ -s "$work/mem.csv" ]; then
    echo "  peak GPU memory per worker process (MiB):"
    sort -t, -k1,1 -k2,2n "$work/mem.csv" | awk -F', ' '{m[$1]=$2} END {for (p in m) print "    pid " p ": " m[p]}'
  fi
done
