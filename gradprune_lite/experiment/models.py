"""The two reference networks of the pruning literature on MNIST, seedable.

Both are plain ``nn.Sequential`` models with named layers, so prunable weights are called
``"fc1.weight"``, ``"conv1.weight"`` and so on, as everywhere else in gradprune-lite.
Inputs are N×1×28×28 (what ``gp.mnist`` gives); outputs are N×10 logits.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


def _build(layers, seed: int | None) -> nn.Sequential:
    # Layers draw their initial weights from the global RNG; forking keeps the caller's
    # random state untouched when a seed is given.
    if seed is None:
        return nn.Sequential(layers())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(layers())


def lenet_300_100(seed: int | None = None) -> nn.Sequential:
    """LeNet-300-100 (LeCun et al. 1998): 784 → 300 → 100 → 10, ReLU; 266,200 weights.

    Layers ``fc1``, ``fc2``, ``fc3``; ``seed`` fixes the initial weights.
    """
    return _build(
        lambda: OrderedDict(
            flatten=nn.Flatten(),
            fc1=nn.Linear(784, 300),
            relu1=nn.ReLU(),
            fc2=nn.Linear(300, 100),
            relu2=nn.ReLU(),
            fc3=nn.Linear(100, 10),
        ),
        seed,
    )


def lenet5(seed: int | None = None) -> nn.Sequential:
    """LeNet-5-Caffe (Han et al. 2015, SNIP): 430,500 weights.

    conv1 20@5×5 → ReLU → max-pool 2 → conv2 50@5×5 → ReLU → max-pool 2 → fc1 800→500 →
    ReLU → fc2 500→10. (Caffe's prototxt has no ReLU after the convolutions; we follow the
    PyTorch re-implementations of SNIP, which add them; the weight count is the same.)
    """
    return _build(
        lambda: OrderedDict(
            conv1=nn.Conv2d(1, 20, kernel_size=5),
            relu1=nn.ReLU(),
            pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(20, 50, kernel_size=5),
            relu2=nn.ReLU(),
            pool2=nn.MaxPool2d(2),
            flatten=nn.Flatten(),
            fc1=nn.Linear(800, 500),
            relu3=nn.ReLU(),
            fc2=nn.Linear(500, 10),
        ),
        seed,
    )


#: Model name (as the CLI spells it) → constructor.
MODELS = {"lenet_300_100": lenet_300_100, "lenet5": lenet5}
