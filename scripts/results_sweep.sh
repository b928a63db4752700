#!/usr/bin/env bash
# A reduced protocol for docs/RESULTS.md: one process at a time, one thread each, so that
# it shares a 2-core machine politely. On a busy shared machine the first LeNet-300-100 run
# alone took over an hour; RESULTS.md lists the commands whose numbers it shows.
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
      --sparsity 98,99 --mode init --epochs 2 --seeds 0 \
      --out runs/lenet5-seed0 "${common[@]}"
  fi
done
