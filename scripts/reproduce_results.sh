#!/usr/bin/env bash
# Reproduce every run behind docs/RESULTS.md's protocol tables, then rebuild its tables.
#
#   GRADPRUNE_DATA=/folder/holding/MNIST scripts/reproduce_results.sh
#
# Resumable: each finished row is appended to its results.csv at once, so after an
# interruption (Ctrl-C, a closed laptop, a killed job) run the script again and it goes
# on from the first missing row. Each compare shows a progress bar with the time left.
#
# Protocol (docs/RESULTS.md, "To reproduce"): the dense reference of gp.trained (10 epochs,
# SGD momentum 0.9, cosine lr 0.05, batch 128, 55,000 training digits, 5,000 held out for
# validation), 3 seeds, and every pruned network trained 10 + 3 = 13 epochs in every mode.
# The criteria are every one registered in gp.CRITERIA when the script runs (so obs and
# any structured criterion are in once they are registered), less `gradient`.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1  # one thread per run: on a shared machine, spinning threads cost more
compare=(python -m gradprune_lite compare --seeds 0,1,2 --epochs 10 --finetune-epochs 3
  --rounds 3 --threads 1)
registered() {  # the registered names among "$@", comma-separated
  python -c 'import sys, gradprune_lite as gp; print(",".join(c for c in sys.argv[1:] if c in gp.CRITERIA))' "$@"
}

# LeNet-300-100: every criterion, 90-99%, all three modes.
"${compare[@]}" --model lenet_300_100 --sparsity 90,95,98,99 --mode init,after,iterative \
  --out docs/results/lenet300-protocol

# LeNet-5-Caffe: the rows with published numbers (one protocol, so one folder).
"${compare[@]}" --model lenet5 --criteria "$(registered snip magnitude taylor synflow obs)" \
  --sparsity 98,99 --mode init,after,iterative --out docs/results/lenet5-protocol
"${compare[@]}" --model lenet5 --criteria "$(registered magnitude taylor fisher synflow obs)" \
  --sparsity 92 --mode iterative --out docs/results/lenet5-protocol

# Merge both models into docs/results/summary (CSV, tables, plot, summary.md), which the
# summary tables of docs/RESULTS.md read; then rebuild every marked table of the document.
python -m gradprune_lite report docs/results/lenet300-protocol/results.csv \
  docs/results/lenet5-protocol/results.csv --out docs/results/summary --doc docs/RESULTS.md
