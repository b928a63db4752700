"""Fast training on tensors: the whole set on the device, batches by index permutation.

No DataLoader and no workers: MNIST fits in memory many times over, and indexing a tensor
with a permutation is the cheapest batching there is. Masks applied to the model hold
through training with any optimiser (they live with the parameters, see ``gp.apply_masks``),
so a pruned weight stays exactly zero.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..core.masks import hold_masks
from .data import Digits

SCHEDULES = (None, "cosine", "step")


def _lr_factor(schedule: str | None, step: int, total: int, step_every: int | None = None) -> float:
    """Multiplier of the base learning rate at ``step`` of ``total``.

    ``step_every`` (in steps) only affects ``"step"``: ×0.1 after every ``step_every``
    steps instead of at half and three quarters of training.
    """
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * step / total))
    if schedule == "step" and step_every is not None:
        return 0.1 ** (step // step_every)
    if schedule == "step":  # ×0.1 at half and again at three quarters of training
        return 0.1 ** ((step >= total // 2) + (step >= 3 * total // 4))
    return 1.0


def fit(
    model: nn.Module,
    train: Digits,
    epochs: int = 1,
    lr: float = 0.1,
    *,
    batch_size: int = 128,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    schedule: str | None = None,
    step_every: int | None = None,
    seed: int = 0,
    progress: bool = True,
    pruner=None,
) -> dict[str, list[float]]:
    """Train ``model`` with SGD (momentum) on ``train``, minimising cross-entropy.

    Args:
        model: changed in place; its device decides where training runs. Masks applied
            with ``gp.apply_masks`` are held (pruned weights and their momentum stay 0).
        train: the digits (moved to the model's device once).
        epochs: passes over the data (0 trains nothing).
        lr: base learning rate.
        batch_size: digits per step; the last batch of an epoch may be smaller.
        momentum, weight_decay: SGD's.
        schedule: None (constant lr), ``"cosine"`` (annealed to 0 per step) or
            ``"step"`` (×0.1 at 50% and 75% of the steps, or every ``step_every`` epochs).
        step_every: with ``schedule="step"``, divide the learning rate by 10 after every
            this many epochs (SNIP's MNIST recipe: every 25,000 steps of 100 digits, about
            45 epochs of 55,000). None keeps the 50%/75% steps.
        seed: fixes the order of the batches.
        progress: show a ``tqdm`` bar (terminal or notebook).
        pruner: optional ``gp.GradualPruner`` (or any object with ``attach(optimizer)``
            and ``step()``): attached to this run's optimiser, then stepped after every
            optimiser step, so the model is pruned gradually while it trains.

    Returns:
        ``{"loss": mean training loss per epoch, "seconds": wall time per epoch}``.
    """
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}.")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}.")
    if step_every is not None and (
        schedule != "step" or not isinstance(step_every, int) or step_every < 1
    ):
        raise ValueError(
            f"step_every must be a positive integer number of epochs and needs "
            f"schedule='step'; got step_every={step_every!r} with schedule={schedule!r}."
        )
    if len(train) == 0:
        raise ValueError("train holds no digits.")

    device = next(model.parameters()).device
    images, labels = train.images.to(device), train.labels.to(device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
    )
    hold_masks(model, optimizer)
    if pruner is not None:
        pruner.attach(optimizer)
    generator = torch.Generator().manual_seed(seed)
    n = len(labels)
    steps_per_epoch = math.ceil(n / batch_size)
    total = epochs * steps_per_epoch
    every = None if step_every is None else step_every * steps_per_epoch
    history: dict[str, list[float]] = {"loss": [], "seconds": []}
    was_training = model.training
    model.train()
    bar = tqdm(total=total, desc="train", unit="step", disable=not progress, leave=False)
    step = 0
    try:
        for epoch in range(epochs):
            start = time.perf_counter()
            order = torch.randperm(n, generator=generator).to(device)
            # Summed on the device so the loop never waits for a .item() per step.
            loss_sum = torch.zeros((), device=device)
            for first in range(0, n, batch_size):
                index = order[first : first + batch_size]
                for group in optimizer.param_groups:
                    group["lr"] = lr * _lr_factor(schedule, step, total, every)
                loss = F.cross_entropy(model(images[index]), labels[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if pruner is not None:
                    pruner.step()
                loss_sum += loss.detach() * len(index)
                step += 1
                bar.update(1)
            history["loss"].append(float(loss_sum) / n)
            history["seconds"].append(time.perf_counter() - start)
            bar.set_postfix(epoch=epoch + 1, loss=f"{history['loss'][-1]:.4f}")
    finally:
        bar.close()
        model.train(was_training)
    return history
