"""Gradient statistics against BackPACK's SumGradSquared, side by side in one process.

    pip install -e ".[bench]"                      # BackPACK, for this benchmark only
    python benchmarks/stats_vs_backpack.py         # 5 runs of 21 interleaved rounds
    python benchmarks/stats_vs_backpack.py --cpu-clock --runs 7

Both compute, per weight, the ordinary gradient Σg (BackPACK: ``.grad``) and the sum of
squared per-sample gradients Σg² (``SumGradSquared``), on the first 256 MNIST training
digits (batch 256, one thread). Each run times a plain forward+backward, ``gp.gradient_stats``
and BackPACK in turn, round after round (``timing.interleaved_medians``), so the three meet
the same machine load; a run's ratios are its medians divided by the plain step's. The
table gives the median ratio over the runs, and the largest relative difference between
the two libraries' E[g²], so the speed is not bought with a wrong number.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import clock_name, interleaved_medians, load_average, use_cpu_clock  # noqa: E402

import gradprune_lite as gp  # noqa: E402

MODELS = (("LeNet-300-100", gp.models.lenet_300_100), ("LeNet-5", gp.models.lenet5))


def backpack_step(model: nn.Module):
    """A function running one BackPACK SumGradSquared backward on an extended copy."""
    from backpack import backpack, extend
    from backpack.extensions import SumGradSquared

    extended = extend(copy.deepcopy(model))
    loss_fn = extend(nn.CrossEntropyLoss())

    def run(x, y):
        extended.zero_grad(set_to_none=True)
        with backpack(SumGradSquared()):
            loss_fn(extended(x), y).backward()
        return extended

    return run


def largest_difference(model: nn.Module, run_backpack, x, y) -> float:
    """max over weights of ‖E[g²]_ours − E[g²]_BackPACK‖ / ‖E[g²]_BackPACK‖.

    BackPACK's per-sample gradients are those of the mean loss, g_n / N, so its
    ``sum_grad_squared`` is Σ g_n² / N² and E[g²] = N · sum_grad_squared.
    """
    ours = gp.gradient_stats(model, [(x, y)])
    extended = dict(run_backpack(x, y).named_parameters())
    worst = 0.0
    for name, stats in ours.items():
        theirs = extended[name].sum_grad_squared * len(x)
        worst = max(worst, float((stats.sq_mean - theirs).norm() / theirs.norm()))
    return worst


def plain_step(model: nn.Module, x, y) -> None:
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()


def measure(runs: int, rounds: int) -> list[list[str]]:
    digits = gp.mnist("train", limit=256, verbose=False)
    x, y = digits.images, digits.labels
    rows = []
    for name, build in MODELS:
        model = build(seed=0)
        run_backpack = backpack_step(model)
        difference = largest_difference(model, run_backpack, x, y)
        ours, theirs = [], []
        for _ in range(runs):
            times = interleaved_medians(
                {
                    "plain": lambda model=model: plain_step(model, x, y),
                    "ours": lambda model=model: gp.gradient_stats(model, [(x, y)]),
                    "backpack": lambda run=run_backpack: run(x, y),
                },
                rounds,
            )
            ours.append(times["ours"] / times["plain"])
            theirs.append(times["backpack"] / times["plain"])
        ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
        rows.append(
            [
                name,
                f"{ours_median:.2f}× ({min(ours):.2f}–{max(ours):.2f})",
                f"{theirs_median:.2f}× ({min(theirs):.2f}–{max(theirs):.2f})",
                f"{ours_median / theirs_median:.2f}",
                "met" if ours_median <= theirs_median else "missed",
                f"{difference:.1e}",
            ]
        )
        print(f"{name}: ours {ours}, BackPACK {theirs}", flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="interleaved runs (default 5)")
    parser.add_argument("--rounds", type=int, default=21, help="rounds per run (default 21)")
    parser.add_argument("--cpu-clock", action="store_true", help="time process CPU, not wall")
    args = parser.parse_args(argv)
    if args.runs < 5 or args.rounds < 1:
        parser.error("--runs must be ≥ 5 (a median of at least 5 runs) and --rounds ≥ 1.")
    torch.set_num_threads(1)
    if args.cpu_clock:
        use_cpu_clock()
    warnings.filterwarnings("ignore", message="Full backward hook")  # BackPACK's own hooks
    start_load = load_average()
    rows = measure(args.runs, args.rounds)
    header = [
        "model",
        "`gp.gradient_stats`",
        "BackPACK SumGradSquared",
        "ours ÷ BackPACK",
        "target ≤ 1",
        "E[g²] rel. difference",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    print(
        f"\nBatch 256, one thread, {clock_name()}; ratios to one plain forward+backward, the "
        f"median (range) of {args.runs} runs of {args.rounds} interleaved rounds. Load "
        f"average {start_load} at the start, {load_average()} at the end.\n"
    )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
