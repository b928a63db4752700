"""Masked training epoch against dense: what holding the masks costs.

Two copies of each model train on the same batches (SGD, momentum 0.9, batch 128, random
MNIST-shaped data), one dense and one with 90% of its weights masked by ``gp.apply_masks``;
the masked copy's optimiser is created *after* pruning and is never handed to us, as a
trainer would do. Whole epochs of the two alternate (order rotating), in one process, and
the ratio is masked ÷ dense of the medians over ``--rounds`` epochs (at least 5).

    python benchmarks/masked_epoch.py --threads 1 --cpu-clock
    python benchmarks/masked_epoch.py --device cuda
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import (  # noqa: E402
    clock_name,
    fmt_seconds,
    interleaved_medians,
    load_average,
    markdown_table,
    use_cpu_clock,
)

import gradprune_lite as gp  # noqa: E402

SPARSITY = 0.9
MODELS = (("LeNet-300-100", gp.models.lenet_300_100), ("LeNet-5", gp.models.lenet5))


def epoch(model, optimizer, x, y, batch_size: int = 128):
    """A function running one epoch of SGD steps over ``x``, ``y``."""

    def run():
        for start in range(0, x.shape[0], batch_size):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(
                model(x[start : start + batch_size]), y[start : start + batch_size]
            ).backward()
            optimizer.step()

    return run


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
            model_name: epoch(
                model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), x, y
            )
            for model_name, model in (("dense", dense), ("masked", masked))
        }
        medians = interleaved_medians(runs, rounds, device=device)
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
