"""The reference networks on MNIST, seedable.

The two LeNets of the pruning literature are plain ``nn.Sequential`` models with named
layers, so prunable weights are called ``"fc1.weight"``, ``"conv1.weight"`` and so on, as
everywhere else in gradprune-lite. ``resnet_mnist`` is a small residual CNN with
BatchNorm, the kind of network channel pruning is for (notebook 06). Inputs are
N×1×28×28 (what ``gp.mnist`` gives); outputs are N×10 logits.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def _seeded(make: Callable[[], nn.Module], seed: int | None) -> nn.Module:
    # Layers draw their initial weights from the global RNG; forking keeps the caller's
    # random state untouched when a seed is given.
    if seed is None:
        return make()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


def _build(layers, seed: int | None) -> nn.Sequential:
    return _seeded(lambda: nn.Sequential(layers()), seed)


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


class ResidualBlock(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), 3×3 convolutions.

    The shortcut is the identity when the shape is kept, else ``shortcut.conv`` (1×1,
    strided) and ``shortcut.bn``. The convolutions have no bias: the BatchNorm after each
    one has its own. x: N×C_in×H×W → N×C_out×H/stride×W/stride.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                OrderedDict(
                    conv=nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                    bn=nn.BatchNorm2d(out_channels),
                )
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = F.relu(self.bn1(self.conv1(x)))
        residual = self.bn2(self.conv2(residual))
        return F.relu(residual + (x if self.shortcut is None else self.shortcut(x)))


class ResNetMNIST(nn.Module):
    """Stem → three residual blocks → global average pool → linear head.

    conv1 16@3×3 stride 2 (28×28 → 14×14) → bn1 → ReLU → block1 16 → 16 (identity
    shortcut) → block2 16 → 32 stride 2 (7×7, 1×1 projection shortcut) → block3 32 → 32
    (identity) → mean over the 7×7 positions → fc 32 → 10.

    The identity shortcuts couple channels: the stem's outputs and block1.conv2's are added
    into one 16-channel stream, and block2.conv2, block2.shortcut.conv and block3.conv2
    write one 32-channel stream, so channel pruning must remove a stream channel from
    every layer that writes it (``gp.structured_prune`` does).
    """

    def __init__(self, width: int = 16):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.block1 = ResidualBlock(width, width)
        self.block2 = ResidualBlock(width, 2 * width, stride=2)
        self.block3 = ResidualBlock(2 * width, 2 * width)
        self.fc = nn.Linear(2 * width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.block3(self.block2(self.block1(x)))
        return self.fc(x.mean((2, 3)))


def resnet_mnist(seed: int | None = None) -> ResNetMNIST:
    """A small residual CNN with BatchNorm (see ``ResNetMNIST``).

    37,840 weights in its convolutions and head, 38,266 parameters with the biases and
    BatchNorm's; 2,537,344 multiply-accumulates per digit.
    ``seed`` fixes the initial weights.
    """
    return _seeded(ResNetMNIST, seed)


#: Model name (as the CLI spells it) → constructor.
MODELS = {"lenet_300_100": lenet_300_100, "lenet5": lenet5, "resnet_mnist": resnet_mnist}
