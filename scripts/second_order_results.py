"""Reproduce docs/RESULTS.md, "Second order: when gradients beat magnitude".

    python scripts/second_order_results.py oneshot --seeds 0 1 2     # the table, ~1 h busy
    python scripts/second_order_results.py mlpnet                    # MLPNet 784-40-20-10
    python scripts/second_order_results.py cost                      # time and peak memory
    python scripts/second_order_results.py finetune --seeds 0 1 2    # obs + short training

One-shot means: the dense reference from ``gp.trained`` (seeds 0, 1, 2), pruned once with
``gp.prune(model, criterion, sparsity, batches)``, no training afterwards. The curvature
and the statistics use the first 1,000 training digits; errors are on the 10,000 test
digits (``--split validation`` for tuning: choices were made there, never on test).
Rows are appended to ``docs/results/second_order/oneshot.csv`` as they finish, so an
interrupted run keeps what it did; seeds run one after another, on one thread.

``finetune`` prunes the same dense reference in ``--rounds`` rounds, training
``--epochs-per-round`` epochs between rounds with ``gp.fit`` on the 55,000 training digits
(SGD momentum 0.9, batch 128, cosine lr from ``--lr`` to 0 within each round), so the
whole budget is rounds × epochs-per-round epochs after the dense model; magnitude gets
the same rounds and training. Each row records validation and test error: choices are
made on the validation column (seed 0), the test column is what is reported.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import resource
import time
from pathlib import Path

import torch
from torch import nn

import gradprune_lite as gp

OUT = Path(__file__).resolve().parent.parent / "docs" / "results" / "second_order"
#: label → (criterion, options); "obs" is the defaults, "obs block 1" its diagonal variant.
METHODS = {
    "magnitude": ("magnitude", {}),
    "fisher": ("fisher", {}),
    "obs block 1": ("obs", {"block_size": 1}),
    "obs": ("obs", {}),
    # The layer-reconstruction Hessian XᵀX (L-OBS/OBC style), at its validated options.
    "obs reconstruction": (
        "obs",
        {"curvature": "reconstruction", "block_size": 128, "damping": 0.01},
    ),
}
SPARSITIES = (0.5, 0.8, 0.9, 0.95, 0.98)


def scoring_batches(train: gp.Digits, samples: int) -> list:
    return list(train.take(samples).batches(250))


def append_rows(path: Path, rows: list[dict]) -> None:
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        if new:
            writer.writeheader()
        writer.writerows(rows)


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def oneshot(args) -> None:
    train, validation, test = gp.splits()
    evaluate_on = test if args.split == "test" else validation
    batches = scoring_batches(train, args.samples)
    path = args.out / f"oneshot-{args.split}.csv"
    for seed in args.seeds:
        dense = gp.trained("lenet_300_100", seed=seed)
        dense_error = gp.evaluate(dense, evaluate_on).error
        rows = [
            dict(seed=seed, method="dense", sparsity=0.0, error=round(dense_error, 2), seconds=0)
        ]
        append_rows(path, rows)
        for label in args.methods:
            criterion, options = METHODS[label]
            for sparsity in args.sparsities:
                model = copy.deepcopy(dense)
                start = time.perf_counter()
                gp.prune(model, criterion, sparsity, batches, **options)
                seconds = time.perf_counter() - start
                error = gp.evaluate(model, evaluate_on).error
                row = dict(
                    seed=seed,
                    method=label,
                    sparsity=sparsity,
                    error=round(error, 2),
                    seconds=round(seconds, 1),
                )
                append_rows(path, [row])
                print(row, f"load {load_average()}", flush=True)


def mlpnet(seed: int) -> nn.Sequential:
    """WoodFisher's MLPNet: 784 → 40 → 20 → 10, ReLU, no biases."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 40, bias=False),
        nn.ReLU(),
        nn.Linear(40, 20, bias=False),
        nn.ReLU(),
        nn.Linear(20, 10, bias=False),
    )


def mlpnet_run(args) -> None:
    train, _, test = gp.splits()
    batches = scoring_batches(train, args.samples)
    rows = []
    for seed in args.seeds:
        dense = mlpnet(seed)
        gp.fit(dense, train, 10, 0.05, schedule="cosine", seed=seed, progress=False)
        dense_accuracy = gp.evaluate(dense, test).accuracy
        for label in ("magnitude", "fisher", "obs", "obs tuned"):
            criterion, options = METHODS.get(label, ("obs", args.tuned))
            model = copy.deepcopy(dense)
            gp.prune(model, criterion, 0.95, batches, **options)
            accuracy = gp.evaluate(model, test).accuracy
            row = dict(
                seed=seed,
                method=label,
                dense_accuracy=round(100 * dense_accuracy, 2),
                accuracy=round(100 * accuracy, 2),
                kept=round(100 * accuracy / dense_accuracy, 1),
            )
            rows.append(row)
            print(row, f"load {load_average()}", flush=True)
    append_rows(args.out / "mlpnet.csv", rows)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cost(args) -> None:
    """Seconds and peak-memory growth of one obs prune (defaults) beside one fisher prune."""
    train, _, _ = gp.splits()
    batches = scoring_batches(train, args.samples)
    rows = []
    for name in ("lenet_300_100", "lenet5"):
        dense = gp.trained(name, seed=0)
        for label in ("fisher", "obs"):
            criterion, options = METHODS[label]
            model = copy.deepcopy(dense)
            before = peak_rss_mb()
            start = time.perf_counter()
            gp.prune(model, criterion, 0.95, batches, **options)
            seconds = time.perf_counter() - start
            row = dict(
                model=name,
                method=label,
                seconds=round(seconds, 1),
                peak_rss_growth_mb=round(peak_rss_mb() - before),
                load=load_average(),
            )
            rows.append(row)
            print(row, flush=True)
    append_rows(args.out / "cost.csv", rows)


def finetune(args) -> None:
    train, validation, test = gp.splits()
    batches = scoring_batches(train, args.samples)
    for seed in args.seeds:
        dense = gp.trained("lenet_300_100", seed=seed)
        for label in args.methods:
            criterion, options = METHODS[label]
            for sparsity in args.sparsities:
                for lr in args.lrs:
                    model = copy.deepcopy(dense)

                    def train_between(model: nn.Module, round_index: int, lr=lr, seed=seed) -> None:
                        gp.fit(
                            model,
                            train,
                            args.epochs_per_round,
                            lr,
                            schedule="cosine",
                            seed=seed * 100 + round_index,
                            progress=False,
                        )

                    start = time.perf_counter()
                    gp.prune(
                        model,
                        criterion,
                        sparsity,
                        batches,
                        rounds=args.rounds,
                        between=train_between,
                        **options,
                    )
                    seconds = time.perf_counter() - start
                    row = dict(
                        seed=seed,
                        method=label,
                        sparsity=sparsity,
                        rounds=args.rounds,
                        epochs=args.rounds * args.epochs_per_round,
                        lr=lr,
                        validation_error=round(gp.evaluate(model, validation).error, 2),
                        test_error=round(gp.evaluate(model, test).error, 2),
                        seconds=round(seconds, 1),
                        load=load_average(),
                    )
                    append_rows(args.out / "finetune.csv", [row])
                    print(row, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("oneshot", "mlpnet", "cost", "finetune"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS)[:4], choices=list(METHODS))
    parser.add_argument("--sparsities", type=float, nargs="+", default=list(SPARSITIES))
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--split", choices=("test", "validation"), default="test")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--tuned",
        type=json.loads,
        default={"steps": 32, "allocation": "saliency"},
        help="obs options of the 'obs tuned' MLPNet row (JSON), chosen on validation",
    )
    parser.add_argument("--rounds", type=int, default=3, help="finetune: prune rounds")
    parser.add_argument("--epochs-per-round", type=int, default=1, help="finetune: training")
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.01], help="finetune: lr")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"load average at start: {load_average()}", flush=True)
    run = {"oneshot": oneshot, "mlpnet": mlpnet_run, "cost": cost, "finetune": finetune}
    run[args.what](args)


if __name__ == "__main__":
    main()
