"""Small made-up models and data that the checks run the student's code on."""

from __future__ import annotations

import torch
from torch import nn


def tiny_model(seed: int = 0) -> nn.Module:
    """Flatten → Linear(12, 8) → ReLU → Linear(8, 3), weights fixed by ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))


def tiny_batches(seed: int = 0, batches: int = 2, size: int = 16):
    """``batches`` lists of (inputs size×12, targets size) from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(size, 12, generator=generator), torch.randint(3, (size,), generator=generator))
        for _ in range(batches)
    ]
