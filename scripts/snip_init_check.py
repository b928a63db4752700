"""Does SNIP's initialisation explain the rest of its published LeNet-300-100 gap?

With SNIP's training recipe, SNIP at init stays about 0.4 points above the paper
(docs/RESULTS.md, "Why"). One difference left: the initial weights. SNIP's public code
(github.com/namhoonlee/snip-public, snip/network.py) initialises with TensorFlow 1's
``variance_scaling_initializer`` (scale 1, fan-in, truncated normal; standard deviation
sqrt(1/fan_in) after truncation at two standard deviations) and zero biases. PyTorch's
``nn.Linear`` draws weights and biases from U(-1/sqrt(fan_in), 1/sqrt(fan_in)): a standard
deviation sqrt(3) times smaller, and biases that are not zero.

This script registers that initialisation as the model ``lenet_300_100_vs`` (same layers)
and runs SNIP at init at 95 and 98% with SNIP's recipe, exactly as the ``recipe`` part of
``scripts/published_gap_runs.sh`` does, into ``docs/results/snip-recipe/recipe-vs-init``.
Resumable like every compare: a rerun skips the rows already in its results.csv.

    GRADPRUNE_DATA=/folder/holding/MNIST python scripts/snip_init_check.py [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from torch import nn

import gradprune_lite as gp
from gradprune_lite.experiment.comparison import read_rows, run_comparison, write_outputs
from gradprune_lite.experiment.models import MODELS, lenet_300_100

#: TensorFlow's truncated normal keeps draws within two standard deviations; dividing by
#: the standard deviation of that truncated unit normal gives the asked-for spread.
TRUNCATED_STD = 0.87962566103423978
SNIP_RECIPE = {"lr": 0.1, "batch_size": 100, "schedule": "step", "step_every": 45}
SNIP_RECIPE["weight_decay"] = 5e-4


def lenet_300_100_vs(seed: int | None = None) -> nn.Sequential:
    """LeNet-300-100 with variance-scaling weights (fan-in, truncated normal), zero biases."""
    model = lenet_300_100(seed)
    generator = torch.Generator().manual_seed(10_000 + (seed or 0))
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, nn.Linear):
                std = math.sqrt(1.0 / layer.in_features) / TRUNCATED_STD
                draw = torch.empty_like(layer.weight)
                nn.init.trunc_normal_(draw, 0.0, std, -2 * std, 2 * std, generator=generator)
                layer.weight.copy_(draw)
                layer.bias.zero_()
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", default="docs/results/snip-recipe/recipe-vs-init")
    args = parser.parse_args()
    torch.set_num_threads(1)
    MODELS["lenet_300_100_vs"] = lenet_300_100_vs
    out = Path(args.out)
    results_csv = out / "results.csv"
    run_comparison(
        *gp.splits(),
        model="lenet_300_100_vs",
        criteria=["snip"],
        sparsities=[0.95, 0.98],
        modes=["init"],
        epochs=10,
        finetune_epochs=125,
        seeds=[int(s) for s in args.seeds.split(",")],
        results_csv=results_csv,
        training=SNIP_RECIPE,
    )
    paths = write_outputs(read_rows(results_csv), out)
    print(paths["markdown"].read_text())


if __name__ == "__main__":
    main()
