"""Writes checkpoint_v1.pt (by gp.save) and checkpoint_v1_expected.pt (plain torch.save).

Run once, with gradprune-lite 0.1.0, to freeze a file of that release's format:
``tests/test_checkpoint.py`` checks that every later release still loads it. Never rerun it
to make a failing test pass: the point is that the file stays as 0.1.0 wrote it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

import gradprune_lite as gp

HERE = Path(__file__).resolve().parent


def fixture_model() -> nn.Sequential:
    """A conv layer, a very sparse linear layer (int32 indices) and a dense-ish one (bits)."""
    return nn.Sequential(
        nn.Conv2d(1, 2, 3),
        nn.Flatten(),
        nn.Linear(32, 80),
        nn.ReLU(),
        nn.Linear(80, 3),
    )


def main() -> None:
    torch.manual_seed(0)
    model = fixture_model()
    generator = torch.Generator().manual_seed(0)
    weights = gp.prunable_weights(model)
    keep = {"0.weight": 0.5, "2.weight": 0.01}  # 4.weight stays unmasked
    masks = {}
    for name, weight in weights.items():
        fraction = keep.get(name, 1.0)
        masks[name] = torch.rand(weight.shape, generator=generator) < fraction
    gp.apply_masks(model, {n: m for n, m in masks.items() if n in keep})
    gp.save(model, HERE / "checkpoint_v1.pt")
    torch.save(
        {"state": model.state_dict(), "masks": gp.current_masks(model)},
        HERE / "checkpoint_v1_expected.pt",
    )


if __name__ == "__main__":
    main()
