"""Notebook 04's sweep in full: 6 criteria × 3 sparsities × 3 seeds, one file.

Every run is ``gradprune_lite.experiment.sweep.prune_and_finetune`` (its docstring states
the protocol: the trained LeNet-300-100 of ``gp.trained``, scored on 1,000 training digits
drawn by the seed, pruned once with one global threshold, fine-tuned one epoch on the
55,000 training digits, evaluated on the test and validation digits). It runs on 2
threads, as the notebook does, because the thread count changes the rounding of training.
Notebook 04 reads the file and reruns seed 0 at 98% live to show that it reproduces it.

Usage: python scripts/sweep_04.py  (54 fits; 61 s on 2 threads of the 2-core Xeon, as the
file's header records). Output of 5 December 2026: docs/results/notebook04/runs.csv.
"""

import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

# Waiting OpenMP threads sleep instead of spinning, as in the test suite (the root conftest.py):
# on a shared machine spinning threads fight other jobs. Set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

import gradprune_lite as gp  # noqa: E402
from gradprune_lite.experiment.sweep import (  # noqa: E402
    CRITERIA_SWEPT,
    LEVELS,
    SEEDS,
    prune_and_finetune,
    write_runs,
)

OUT = Path(__file__).resolve().parent.parent / "docs" / "results" / "notebook04" / "runs.csv"
THREADS = 2  # the notebook's torch.set_num_threads(2)


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo``, else what ``platform`` knows)."""
    try:
        with open("/proc/cpuinfo") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle if "model name" in line)
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main() -> None:
    torch.set_num_threads(THREADS)
    train, validation, test = gp.splits()
    dense = gp.trained("lenet_300_100")
    # others' work slows the timing; Windows has no load average
    load = " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    start = time.perf_counter()
    runs = {}
    for criterion in CRITERIA_SWEPT:
        for sparsity in LEVELS:
            for seed in SEEDS:
                run = prune_and_finetune(dense, criterion, sparsity, seed, train, validation, test)
                runs[criterion, sparsity, seed] = run
                print(
                    f"{criterion:9s} {sparsity:.0%} seed {seed}: test {run.untuned_test:.2f}% "
                    f"→ {run.tuned_test:.2f}% (validation {run.tuned_validation:.2f}%)",
                    flush=True,
                )
    seconds = time.perf_counter() - start
    provenance = {
        "command": "python scripts/sweep_04.py",
        "date": date.today().isoformat(),
        "gradprune_lite": gp.__version__,
        "torch": torch.__version__,
        "cpu": cpu_name(),
        # The vector instructions torch runs on: another set rounds training differently.
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": str(THREADS),
        "data": f"{'the shipped subset of' if train.is_subset else 'full'} MNIST, "
        f"{len(train):,} training, {len(validation):,} validation, {len(test):,} test digits",
        "runs": str(len(runs)),
        "seconds": f"{seconds:.0f}",
        "load_at_start": load,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    write_runs(OUT, runs, provenance)
    print(f"{len(runs)} runs in {seconds:.0f} s on {THREADS} threads → {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
