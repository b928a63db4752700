"""Masked training epoch against dense: what holding the masks costs.

Two copies of each model train on the same batches (SGD, momentum 0.9, batch 128, random
MNIST-shaped data), one dense and one with 90% of its weights masked by ``gp.apply_masks``;
the masked copy's optimiser is created *after* pruning and is never handed to us, as a
trainer would do. Single steps of the two alternate (order flipping every step), in one
process; an epoch is the sum of its steps, and the ratio is masked ÷ dense of the medians
over ``--rounds`` epochs (at least 5). ``--control`` leaves both copies dense: its ratio is
the noise of the measurement on this machine at this moment.

    python benchmarks/masked_epoch.py --threads 1 --cpu-clock
    python benchmarks/masked_epoch.py --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import timing  # noqa: E402
from timing import (  # noqa: E402
    clock_name,
    fmt_seconds,
    load_average,
    markdown_table,
    use_cpu_clock,
)

import gradprune_lite as gp  # noqa: E402

SPARSITY = 0.9
MODELS = (("LeNet-300-100", gp.models.lenet_300_100), ("LeNet-5", gp.models.lenet5))


def step(model, optimizer, xb, yb) -> None:
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(xb), yb).backward()
    optimizer.step()


def interleaved_epochs(runs: dict, x, y, rounds: int, device: str, batch_size: int = 128):
    """Median epoch seconds of each ``(model, optimizer)`` in ``runs``.

    Single steps alternate between the runs (the order flipping every step), so both meet
    the same background load from one moment to the next; an epoch's time is the sum of
    its steps, and the median is over ``rounds`` epochs after one untimed warm-up epoch.
    """
    names = list(runs)
    epochs: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds + 1):
        totals = dict.fromkeys(names, 0.0)
        for i, start in enumerate(range(0, x.shape[0], batch_size)):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            for name in names if (r + i) % 2 == 0 else names[::-1]:
                timing.sync(device)
                began = timing._clock()
                step(*runs[name], xb, yb)
                timing.sync(device)
                totals[name] += timing._clock() - began
        if r:  # the first epoch warms up both
            for name in names:
                epochs[name].append(totals[name])
    return {name: statistics.median(values) for name, values in epochs.items()}


def ratio_rows(
    samples: dict[str, int], rounds: int, device: str, control: bool = False, models=MODELS
) -> tuple[list[list[str]], dict[str, float]]:
    """Table rows and ``{model: masked ÷ dense}``; ``control`` leaves the second copy dense
    too, so its ratio shows the noise of the measurement itself."""
    rows, ratios = [], {}
    for name, build in models:
        generator = torch.Generator().manual_seed(3)
        x = torch.randn(samples[name], 1, 28, 28, generator=generator).to(device)
        y = torch.randint(10, (samples[name],), generator=generator).to(device)
        dense, masked = build(seed=0).to(device), build(seed=0).to(device)
        if not control:
            gp.apply_masks(masked, gp.global_masks(gp.score(masked, "magnitude"), SPARSITY))
        runs = {
            key: (model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
            for key, model in (("dense", dense), ("masked", masked))
        }
        medians = interleaved_epochs(runs, x, y, rounds, device)
        assert control or abs(gp.sparsity(masked) - SPARSITY) < 1e-4, "the masks did not hold"
        ratio = ratios[name] = medians["masked"] / medians["dense"]
        rows.append(
            [
                name,
                str(samples[name]),
                fmt_seconds(medians["dense"]),
                fmt_seconds(medians["masked"]),
                f"{ratio:.3f}×",
            ]
        )
        print(f"{name}: {rows[-1]}", flush=True)
    return rows, ratios


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="epochs of each, at least 5")
    parser.add_argument("--threads", type=int, help="torch threads; default: torch's")
    parser.add_argument("--cpu-clock", action="store_true", help="process CPU time")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="fewer samples per epoch")
    parser.add_argument(
        "--control", action="store_true", help="both copies dense: the measurement's noise"
    )
    parser.add_argument("--model", choices=[name for name, _ in MODELS], help="one model only")
    args = parser.parse_args(argv)
    if args.rounds < 5:
        parser.error("--rounds must be at least 5")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cpu_clock:
        use_cpu_clock()
    samples = {"LeNet-300-100": 8192, "LeNet-5": 2048 if args.quick else 4096}
    if args.quick:
        samples["LeNet-300-100"] = 4096
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {clock_name()}, "
        f"load average at start {load_average()}",
        flush=True,
    )
    models = [(n, b) for n, b in MODELS if args.model in (None, n)]
    rows, _ = ratio_rows(samples, args.rounds, args.device, args.control, models)
    print(
        "\n"
        + markdown_table(["model", "samples", "dense epoch", "masked epoch", "ratio"], rows)
        + f"\n\nmedians of {args.rounds} interleaved epochs"
        + (" (control: both copies dense)" if args.control else "")
        + f"; load average at end {load_average()}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
