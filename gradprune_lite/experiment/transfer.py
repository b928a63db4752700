"""Split MNIST for pruning while fine-tuning: pretrain on digits 0-4, fine-prune on 5-9.

The task of ``scripts/transfer_experiment.py`` (its docstring states the whole protocol)
and of notebook 07's small live run, in one place so both run the same code:

* ``transfer_tasks()``: the splits of ``gp.splits()`` cut into digits 0-4 (pretraining)
  and 5-9 (fine-tuning; labels 5-9 read as 0-4);
* ``pretrained(seed, tasks)``: LeNet-300-100 trained on digits 0-4 (``PRETRAIN``), cached
  on disk under a name that holds the digits' fingerprint;
* ``with_new_head(model, seed)``: a copy with a fresh, seeded 100→5 ``fc3``;
* ``fine_prune(base, train, method, sparsity, lr, epochs, seed)``: one run, pruned
  one-shot (``magnitude``) or gradually (``gmp``, ``movement``, ``taylor`` through
  ``gp.GradualPruner``) or not at all (``dense``) while it fine-tunes.

The new head is never pruned (its weights are random when pruning starts): the sparsity is
over ``fc1`` and ``fc2``.
"""

from __future__ import annotations

import math
import time

import torch
from torch import nn

from ..core.gradual import GradualPruner
from ..core.layers import prunable_weights
from ..core.prune import prune
from .cached_file import load_into, one_writer, save_atomically
from .data import Digits, default_cache_dir
from .models import lenet_300_100
from .reference import fingerprint, splits
from .train import fit

#: Pretraining on digits 0-4: SGD momentum 0.9, cosine to 0.
PRETRAIN = {"epochs": 5, "lr": 0.05, "batch_size": 128, "schedule": "cosine"}
BATCH_SIZE = 128
#: The new head, left out of the sparsity.
HEAD = "fc3.weight"
#: method → the criterion GradualPruner ranks by (magnitude is one-shot, dense unpruned).
GRADUAL = {"gmp": "magnitude", "movement": "movement", "taylor": "taylor"}
METHODS = ("dense", "magnitude", *GRADUAL)
#: The gradual schedule: cubic from step 0 to this fraction of the steps, then fine-tuning
#: at the final sparsity; ``PRUNING_STEPS`` pruning steps along the way.
PRUNED_END = 0.75
PRUNING_STEPS = 20


def digits_of(data: Digits, low: int, high: int, note: str) -> Digits:
    """The digits of ``data`` with labels in [low, high], relabelled from 0."""
    keep = (data.labels >= low) & (data.labels <= high)
    return Digits(data.images[keep], data.labels[keep] - low, f"{data.source}, {note}", False)


def transfer_tasks() -> dict[str, Digits]:
    """The five sets: pretrain, pretrain_test (digits 0-4); train, validation, test (5-9)."""
    train, validation, test = splits()
    return {
        "pretrain": digits_of(train, 0, 4, "digits 0-4"),
        "pretrain_test": digits_of(test, 0, 4, "digits 0-4"),
        "train": digits_of(train, 5, 9, "digits 5-9"),
        "validation": digits_of(validation, 5, 9, "digits 5-9"),
        "test": digits_of(test, 5, 9, "digits 5-9"),
    }


def pretrained(seed: int, tasks: dict[str, Digits]) -> tuple[nn.Module, float | None]:
    """LeNet-300-100 trained on ``tasks["pretrain"]`` (its 10-way head kept), cached on disk.

    Returns (model, seconds): the wall time of its training, or None when it was loaded
    from the cache (``<cache>/transfer/lenet_300_100-0to4-seed<seed>-<fingerprint>.pt``).
    """
    key = fingerprint(tasks["pretrain"])
    path = default_cache_dir() / "transfer" / f"lenet_300_100-0to4-seed{seed}-{key}.pt"
    model = lenet_300_100(seed=seed)
    with one_writer(path):
        # A process that waited on the lock finds the file its holder wrote.
        if path.is_file():
            load_into(model, path)
            return model, None
        start = time.perf_counter()
        fit(
            model,
            tasks["pretrain"],
            PRETRAIN["epochs"],
            PRETRAIN["lr"],
            seed=seed,
            batch_size=PRETRAIN["batch_size"],
            schedule=PRETRAIN["schedule"],
            progress=False,
        )
        seconds = time.perf_counter() - start
        save_atomically(model.state_dict(), path)
    return model, seconds


def with_new_head(model: nn.Module, seed: int) -> nn.Module:
    """A copy of ``model`` whose ``fc3`` is a fresh 100→5 layer (seeded by ``seed``)."""
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("fc3.")}
    net = lenet_300_100(seed=seed)
    net.load_state_dict(state, strict=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(10_000 + seed)
        net.fc3 = nn.Linear(100, 5)
    return net


def fine_prune(
    base: nn.Module,
    train: Digits,
    method: str,
    sparsity: float,
    lr: float,
    epochs: int,
    seed: int,
) -> nn.Module:
    """One run: ``base`` with a new head, pruned by ``method`` while it fine-tunes on ``train``.

    SGD momentum 0.9, cosine to 0, batch ``BATCH_SIZE``, ``epochs`` passes. ``magnitude``
    prunes the pretrained weights once before fine-tuning; ``gmp``/``movement``/``taylor``
    raise the sparsity along the cubic schedule (``PRUNED_END``, ``PRUNING_STEPS``);
    ``dense`` does not prune (``sparsity`` must be 0). ``base`` is not changed.

    Returns the fine-tuned model (masks held on it).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
    if (method == "dense") != (sparsity == 0):
        raise ValueError(
            f"method {method!r} with sparsity {sparsity!r}: dense runs at sparsity 0, every "
            "other method at a sparsity above 0."
        )
    model = with_new_head(base, seed)
    steps = epochs * math.ceil(len(train) / BATCH_SIZE)
    pruner = None
    if method == "magnitude":
        prune(model, "magnitude", sparsity, exclude=HEAD)
    elif method in GRADUAL:
        end = round(PRUNED_END * steps)
        every = max(1, end // PRUNING_STEPS)
        pruner = GradualPruner(model, GRADUAL[method], sparsity, 0, end, every, exclude=HEAD)
    fit(
        model,
        train,
        epochs,
        lr,
        batch_size=BATCH_SIZE,
        schedule="cosine",
        seed=seed,
        progress=False,
        pruner=pruner,
    )
    return model


def pruned_fraction(model: nn.Module) -> float:
    """The fraction of zero weights over the prunable weights except the head."""
    weights = [w for name, w in prunable_weights(model).items() if name != HEAD]
    return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
