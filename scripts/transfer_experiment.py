"""Pruning while fine-tuning a pretrained network: does movement beat magnitude on digits?

    python scripts/transfer_experiment.py run --seeds 0 --budgets light      # one slice
    python scripts/transfer_experiment.py run --part 2/6                    # a sixth of it
    python scripts/transfer_experiment.py plan                               # cells and estimate
    python scripts/transfer_experiment.py summary                            # chosen-lr table

Split MNIST. LeNet-300-100 (``gp.models.lenet_300_100(seed)``) is pretrained on digits 0-4
(``transfer.PRETRAIN``: 5 epochs, SGD momentum 0.9, lr 0.05 cosine, batch 128), its head ``fc3`` is
replaced by a new 100→5 layer, and it is fine-pruned on digits 5-9 (labels 5-9 read as
0-4). The new head is not pruned (its weights are random when pruning starts); the
sparsity is over ``fc1`` and ``fc2`` (265,200 weights).

Every training split comes from ``gp.splits()``: the 55,000 training digits train, the
5,000 held-out validation digits choose the learning rate, the test digits 5-9 are only
reported. A fine-tuning *budget* is a number of epochs and a grid of learning rates (SGD
momentum 0.9, cosine to 0, batch 128); each method gets every lr of its budget's grid and
the summary keeps, per (seed, budget, method, sparsity), the lr with the lowest validation
error. Methods:

* ``dense``: fine-tuning without pruning (sparsity 0), the reference at each budget;
* ``magnitude``: one-shot magnitude pruning of the pretrained weights, then fine-tuning;
* ``gmp``, ``movement``, ``taylor``: ``gp.GradualPruner`` with that criterion (gmp is
  magnitude), cubic schedule from step 0 to 75% of the steps, ``transfer.PRUNING_STEPS`` pruning
  steps, then fine-tuning at the final sparsity for the last 25%.

One CSV row per (seed, budget, method, sparsity, lr) is appended to
``docs/results/transfer/runs.csv`` as soon as it finishes; a rerun skips the rows already
there, so any interrupted run resumes. ``--part K/N`` takes every N-th cell, starting at
the K-th (1-based), so N processes or N sessions split the work. Runs on one thread.

The task and one run are ``gradprune_lite.experiment.transfer``'s (``transfer_tasks``,
``pretrained``, ``fine_prune``), which notebook 07 runs too; this script adds the grid,
the CSVs and the summary.
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path

import torch
from torch import nn

import gradprune_lite as gp
from gradprune_lite.experiment import results, transfer

OUT = Path(__file__).resolve().parent.parent / "docs" / "results" / "transfer"
RUNS_CSV = OUT / "runs.csv"
PRETRAIN_CSV = OUT / "pretrain.csv"
#: name → (epochs, learning-rate grid). "light" barely moves the pretrained weights,
#: "full" retrains them; the weight_change column measures how far they moved.
BUDGETS = {
    "light": (1, (0.001, 0.0025, 0.005)),
    "medium": (3, (0.005, 0.01, 0.02)),
    "full": (8, (0.025, 0.05, 0.1)),
}
METHODS = transfer.METHODS
SPARSITIES = (0.5, 0.9, 0.95, 0.98, 0.99)
SEEDS = (0, 1, 2)
HEAD = transfer.HEAD
COLUMNS = (
    "seed",
    "budget",
    "epochs",
    "method",
    "sparsity",
    "lr",
    "val_error",
    "test_error",
    "achieved_sparsity",
    "weight_change",
    "seconds",
)


def pretrained(seed: int, tasks: dict) -> nn.Module:
    """The network pretrained on digits 0-4 (cached); its first training writes a CSV row."""
    model, seconds = transfer.pretrained(seed, tasks)
    if seconds is None or any(int(row["seed"]) == seed for row in read_rows(PRETRAIN_CSV)):
        return model  # cached, or another part trained it at the same time: one row per seed
    error = gp.evaluate(model, tasks["pretrain_test"]).error
    append_rows(
        PRETRAIN_CSV,
        [{"seed": seed, "test_error_0to4": f"{error:.2f}", "seconds": f"{seconds:.1f}"}],
        ("seed", "test_error_0to4", "seconds"),
    )
    return model


def weight_change(before: dict, model: nn.Module) -> float:
    """‖w_end − w_0‖ / ‖w_0‖ over the surviving weights of fc1 and fc2."""
    diff = norm = 0.0
    for name, w in gp.prunable_weights(model).items():
        if name == HEAD:
            continue
        alive = w.detach() != 0
        diff += float((w.detach() - before[name])[alive].square().sum())
        norm += float(before[name][alive].square().sum())
    return math.sqrt(diff / max(norm, 1e-30))


def fine_prune(
    base: nn.Module, tasks: dict, seed: int, budget: str, method: str, sparsity: float, lr: float
) -> dict:
    """One run: prune ``base`` (a copy) while fine-tuning; the row of the CSV."""
    epochs, _ = BUDGETS[budget]
    before = {
        name: w.detach().clone()
        for name, w in gp.prunable_weights(transfer.with_new_head(base, seed)).items()
    }
    start = time.perf_counter()
    model = transfer.fine_prune(base, tasks["train"], method, sparsity, lr, epochs, seed)
    seconds = time.perf_counter() - start
    return {
        "seed": seed,
        "budget": budget,
        "epochs": epochs,
        "method": method,
        "sparsity": sparsity,
        "lr": lr,
        "val_error": f"{gp.evaluate(model, tasks['validation']).error:.2f}",
        "test_error": f"{gp.evaluate(model, tasks['test']).error:.2f}",
        "achieved_sparsity": f"{transfer.pruned_fraction(model):.4f}",
        "weight_change": f"{weight_change(before, model):.4f}",
        "seconds": f"{seconds:.1f}",
    }


def cells(seeds, budgets, methods, sparsities) -> list[tuple]:
    """(seed, budget, method, sparsity, lr) in run order: seed, then budget, then the rest."""
    out = []
    for seed in seeds:
        for budget in budgets:
            for method in methods:
                for sparsity in (0.0,) if method == "dense" else sparsities:
                    out.extend((seed, budget, method, sparsity, lr) for lr in BUDGETS[budget][1])
    return out


def key(row) -> tuple:
    return (
        int(row["seed"]),
        row["budget"],
        row["method"],
        float(row["sparsity"]),
        float(row["lr"]),
    )


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def append_rows(path: Path, rows: list[dict], columns=COLUMNS) -> None:
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        if new:
            writer.writeheader()
        writer.writerows(rows)


def part_of(todo: list, part: str | None) -> list:
    if part is None:
        return todo
    k, n = (int(x) for x in part.split("/"))
    if not 1 <= k <= n:
        raise ValueError(f"--part must be K/N with 1 <= K <= N, got {part!r}.")
    return todo[k - 1 :: n]


def run(args) -> None:
    torch.set_num_threads(args.threads)
    todo = part_of(cells(args.seeds, args.budgets, args.methods, args.sparsities), args.part)
    done = {key(row) for row in read_rows(RUNS_CSV)}
    todo = [cell for cell in todo if cell not in done]
    print(f"{len(todo)} runs to do ({len(done)} rows already in {RUNS_CSV.name})", flush=True)
    tasks = transfer.transfer_tasks()
    bases = {}
    for seed, budget, method, sparsity, lr in todo[: args.limit]:
        if seed not in bases:
            bases[seed] = pretrained(seed, tasks)
        row = fine_prune(bases[seed], tasks, seed, budget, method, sparsity, lr)
        append_rows(RUNS_CSV, [row])
        print(", ".join(f"{k}={v}" for k, v in row.items()), flush=True)


def plan(args) -> None:
    """How many runs and fine-tuning epochs are left (of this part), and how long at a rate."""
    todo = part_of(cells(args.seeds, args.budgets, args.methods, args.sparsities), args.part)
    done = {key(row) for row in read_rows(RUNS_CSV)}
    left = [cell for cell in todo if cell not in done]
    epochs = sum(BUDGETS[budget][0] for _, budget, *_ in left)
    print(f"{len(todo)} runs, {len(left)} left: {epochs} fine-tuning epochs")
    if args.seconds_per_epoch:
        hours = epochs * args.seconds_per_epoch / 3600
        print(f"at {args.seconds_per_epoch} s per fine-tuning epoch: {hours:.1f} h")


def summary(args) -> None:
    """Per (budget, method, sparsity): test error at the lr chosen on validation, mean ± std.

    The choice and the statistics are ``gradprune_lite.experiment.results``' (the reader
    that notebook 07 and docs/RESULTS.md use).
    """
    cells = results.transfer_summary(results.read_transfer_runs(RUNS_CSV))
    print("budget | method | sparsity | test error % (chosen lr) | seeds")
    for (budget, method, sparsity), cell in sorted(cells.items()):
        lrs = ",".join(f"{lr:g}" for lr in cell.lrs)
        print(f"{budget} | {method} | {sparsity:g} | {cell.text()} ({lrs}) | {len(cell.errors)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("run", "plan", "summary"))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--budgets", nargs="+", choices=tuple(BUDGETS), default=list(BUDGETS))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--sparsities", type=float, nargs="+", default=list(SPARSITIES))
    parser.add_argument("--part", help="K/N: every N-th run, starting at the K-th")
    parser.add_argument("--limit", type=int, help="stop after this many runs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds-per-epoch", type=float, help="for plan's estimate")
    args = parser.parse_args()
    {"run": run, "plan": plan, "summary": summary}[args.command](args)


if __name__ == "__main__":
    main()
