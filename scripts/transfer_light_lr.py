"""Is the transfer experiment's `light` budget short in epochs, or in learning rate?

The `light` budget of ``scripts/transfer_experiment.py`` is one epoch with the grid
0.001 / 0.0025 / 0.005, and every seed chose the grid's top in 20 of its 21 cells. This
control keeps the one epoch and gives it the `full` budget's grid (0.025 / 0.05 / 0.1),
everything else as in the experiment (``transfer.fine_prune``: Split MNIST, the cached
pretrained networks, cubic schedule over 75% of the steps, SGD momentum 0.9, cosine, batch
128), for dense fine-tuning and for gmp, movement and taylor at 98% and 99%. Per (seed,
method, sparsity) the lr with the lowest validation error is kept; the test digits 5-9
only report. Prints one line per choice, then mean ± sd over the seeds.

Usage: python scripts/transfer_light_lr.py  (63 runs, about 2 min on one core). Output of
5 December 2026: docs/results/transfer/light_lr.txt.
"""

import statistics

import torch

import gradprune_lite as gp
from gradprune_lite.experiment import transfer

SEEDS = (0, 1, 2)
LRS = (0.025, 0.05, 0.1)  # the `full` budget's grid
CELLS = [("dense", 0.0)] + [(m, s) for s in (0.98, 0.99) for m in ("gmp", "movement", "taylor")]


def main():
    torch.set_num_threads(1)
    tasks = transfer.transfer_tasks()
    chosen = {}
    for seed in SEEDS:
        base, _ = transfer.pretrained(seed, tasks)
        for method, sparsity in CELLS:
            runs = []
            for lr in LRS:
                model = transfer.fine_prune(base, tasks["train"], method, sparsity, lr, 1, seed)
                val = gp.evaluate(model, tasks["validation"]).error
                runs.append((val, gp.evaluate(model, tasks["test"]).error, lr))
            val, test, lr = min(runs)
            chosen.setdefault((method, sparsity), []).append((test, lr))
            print(
                f"seed {seed} {method:<8} {sparsity:.0%}: lr {lr:g} val {val:.2f} test {test:.2f}"
            )
    print("one epoch, lr grid 0.025/0.05/0.1: test error % on digits 5-9, mean ± sd over seeds")
    for (method, sparsity), picks in chosen.items():
        errors = [test for test, _ in picks]
        top = sum(lr == LRS[-1] for _, lr in picks)
        print(
            f"  {method:<8} {sparsity:>4.0%}  {statistics.mean(errors):.2f} ± "
            f"{statistics.stdev(errors):.2f}  ({top} of {len(picks)} seeds chose lr {LRS[-1]:g})"
        )


if __name__ == "__main__":
    main()
