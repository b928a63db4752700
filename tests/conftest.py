"""Shared fixtures: small seeded models and batches for the maths tests.

The OpenMP setting for the whole run (threads that sleep while waiting) is in the
repository root's ``conftest.py``, so that it also holds when pytest is given one notebook.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn


def pytest_report_header(config):
    """A torch and torchvision that do not belong together, named before collection fails.

    Test modules import torchvision, so such a pair stops the run at collection with
    "operator torchvision::nms does not exist"; this line says what is wrong and the fix.
    """
    from gradprune_lite._install_check import torch_torchvision_problem

    problem = torch_torchvision_problem()
    return [problem] if problem else []


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(2)


def small_mlp() -> nn.Module:
    """784 → 32 → 10 MLP; names '1.weight', '3.weight'."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def small_cnn() -> nn.Module:
    """A tiny CNN with stride, padding, groups and a Linear head."""
    torch.manual_seed(2)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, stride=2, groups=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 3 * 3, 5),
    )


@pytest.fixture
def mlp():
    return small_mlp()


@pytest.fixture
def cnn():
    return small_cnn()


@pytest.fixture
def mlp_batches():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(24, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (24,), generator=g)
    return [(x[:10], y[:10]), (x[10:], y[10:])]


@pytest.fixture
def cnn_batches():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(12, 2, 7, 7, generator=g)
    y = torch.randint(0, 5, (12,), generator=g)
    return [(x[:5], y[:5]), (x[5:], y[5:])]


@pytest.fixture
def mlp_factory():
    """Build a fresh copy of the small MLP (same initial weights every call)."""
    return small_mlp


def _load_real_digits(train_limit: int, test_limit: int):
    """First digits of real MNIST: the full set via GRADPRUNE_DATA, else the shipped subset.

    Never downloads; the subset's fallback warning is silenced here (test_data checks it).
    """
    import warnings

    import gradprune_lite as gp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train = gp.mnist("train", limit=train_limit, verbose=False, download=False)
        test = gp.mnist("test", limit=test_limit, verbose=False, download=False)
    return train, test


@pytest.fixture(scope="session")
def real_digits():
    """``real_digits(train_limit, test_limit)`` → (train, test) Digits of real MNIST."""
    return _load_real_digits
