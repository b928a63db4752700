"""Shared fixtures: small seeded models and batches for the maths tests.

Also one setting for the whole run, set before torch is imported: OpenMP threads that wait
for work sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``). On a machine shared with
other jobs, a notebook kernel's spinning threads fight those jobs for the cores: beside one
busy process on 2 cores, notebook 04 executed in 277 s with spinning threads and in 22 s
with sleeping ones; on the quiet machine both took 19 s (measured 30 November 2026).
pytest reads this file while collecting, before nbval or the browser test start a kernel,
so the test process and every kernel inherit the setting. A value the caller set wins.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402 - after the OpenMP setting, which torch reads when it loads
import torch  # noqa: E402
from torch import nn  # noqa: E402


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
