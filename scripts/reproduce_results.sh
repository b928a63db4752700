#!/usr/bin/env bash
# Reproduce every run behind docs/RESULTS.md's protocol tables, then rebuild its tables.
#
#   GRADPRUNE_DATA=/folder/holding/MNIST scripts/reproduce_results.sh           # everything
#   GRADPRUNE_DATA=... scripts/reproduce_results.sh lenet300-init lenet5-init  # some parts
#   scripts/reproduce_results.sh report                                          # tables only
#
# The work is cut into parts, one output folder each under docs/results/protocol/, so that
# two parts can run at once on two cores (each compare runs on one thread) and so that a
# part can be run on another day. Resumable: each finished row is appended to its
# results.csv at once, so after an interruption (Ctrl-C, a closed laptop, a killed job) run
# the same part again and it goes on from the first missing row. Each compare shows a
# progress bar with the time left. The wall time of each part, as measured when the
# committed results were made, is in docs/RESULTS.md ("How the runs were made").
#
# Protocol (docs/RESULTS.md, "To reproduce"): the dense reference of gp.trained (10 epochs,
# SGD momentum 0.9, cosine lr 0.05, batch 128, 55,000 training digits, 5,000 held out for
# validation), 3 seeds, and every pruned network trained 10 + 3 = 13 epochs in every mode:
# at init it trains 13 epochs from scratch; after and iterative fine-tune the 10-epoch
# reference for 3 epochs (iterative: 1 epoch after each of its 3 rounds).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1  # one thread per run: on a shared machine, spinning threads cost more
out=docs/results/protocol
compare=(python -m gradprune_lite compare --seeds 0,1,2 --epochs 10 --finetune-epochs 3
  --rounds 3 --threads 1)
registered() {  # the registered names among "$@", comma-separated
  python -c 'import sys, gradprune_lite as gp; print(",".join(c for c in sys.argv[1:] if c in gp.CRITERIA))' "$@"
}
wanted() {  # is part $1 asked for (no arguments: every part)
  [[ ${#parts[@]} -eq 0 ]] && return 0
  local p
  for p in "${parts[@]}"; do [[ $p == "$1" ]] && return 0; done
  return 1
}
part() {  # part NAME compare-options...: run one compare into docs/results/protocol/NAME
  local name=$1
  shift
  if wanted "$name"; then
    local start=$SECONDS
    "${compare[@]}" "$@" --out "$out/$name"
    echo "part $name: $((SECONDS - start)) s of wall time" >&2
  fi
}
parts=("$@")

# LeNet-300-100: every criterion registered (gradient aside), 90-99%, all three modes,
# then the two published sparsities between them (92%: Han et al.; 98.5%: L-OBS and
# Sparse VD), in the modes those papers used (after training, iterative).
part lenet300-init --model lenet_300_100 --sparsity 90,95,98,99 --mode init
part lenet300-trained --model lenet_300_100 --sparsity 90,95,98,99 --mode after,iterative
part lenet300-published --model lenet_300_100 --sparsity 92,98.5 --mode after,iterative

# LeNet-5-Caffe: the rows with published numbers. SNIP at init at 98/99% (SNIP's own
# protocol); magnitude, taylor, synflow and obs pruned after training at 98/99%;
# iterative magnitude at 92/98/99% (Han et al.) and taylor at 92%. An epoch of LeNet-5
# costs about 20 times one of LeNet-300-100, so this is a selection, not the full grid.
part lenet5-init --model lenet5 --criteria snip --sparsity 98,99 --mode init
part lenet5-trained --model lenet5 --criteria "$(registered magnitude taylor synflow obs)" \
  --sparsity 98,99 --mode after
part lenet5-iterative --model lenet5 --criteria magnitude --sparsity 92,98,99 --mode iterative
part lenet5-iterative --model lenet5 --criteria taylor --sparsity 92 --mode iterative

# Merge every part into docs/results/summary (CSV, tables, plot, summary.md), which the
# summary tables of docs/RESULTS.md read; then rebuild every marked table of the document.
# LeNet-300-100 alone again in docs/results/summary-lenet300, for the README's figure.
if wanted report; then
  python -m gradprune_lite report "$out"/*/results.csv --out docs/results/summary
  python scripts/results_doc.py docs/RESULTS.md
  python -m gradprune_lite report "$out"/lenet300-*/results.csv --out docs/results/summary-lenet300
fi
