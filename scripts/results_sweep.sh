#!/usr/bin/env bash
# The reduced protocol behind docs/RESULTS.md: one process at a time, one thread each,
# so that it shares a 2-core machine politely (about 40 minutes in all).
# Each run writes runs/<name>/results.{csv,md,png}; `gradprune-lite report` merges them.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
common=(--threads 1 --no-progress --cache runs/cache)
for seed in 0 1 2; do
  python -m gradprune_lite compare --model lenet_300_100 \
    --criteria random,magnitude,taylor,snip,fisher,grasp,synflow --sparsity 90,95,98,99 \
    --mode init,after,iterative --rounds 3 --epochs 3 --seeds "$seed" \
    --out "runs/lenet300-seed$seed" "${common[@]}"
  if [ "$seed" = 0 ]; then
    python -m gradprune_lite compare --model lenet5 --criteria magnitude,snip,synflow \
      --sparsity 98,99 --mode init,after --epochs 2 --finetune-epochs 1 --seeds 0 \
      --out runs/lenet5-seed0 "${common[@]}"
  fi
done
