"""Exact curvature and exact removal costs on a classifier's last layer (notebooks 01 and 05).

The last ``nn.Linear`` of a small classifier has few weights (LeNet-300-100's fc3: 10 × 100
= 1,000), so two things that are out of reach for a whole network can be computed exactly
there: the Hessian of the mean cross-entropy with respect to its weight, and the true loss
change of removing each weight alone. Both notebooks compare the criteria's predictions
with them; this module is the one place that computes them.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["last_layer_hessian", "last_layer_inputs", "removal_changes"]


def _split(model: nn.Module) -> tuple[nn.Module, nn.Linear]:
    """The model up to its last layer, and that layer."""
    if not isinstance(model, nn.Sequential) or not isinstance(model[-1], nn.Linear):
        raise ValueError(
            "the last-layer helpers need an nn.Sequential whose last module is an nn.Linear "
            f"(such as gp.models.lenet_300_100); got {type(model).__name__}"
            + (f" ending in {type(model[-1]).__name__}" if isinstance(model, nn.Sequential) else "")
            + "."
        )
    return model[:-1], model[-1]


def last_layer_inputs(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The inputs of the last Linear layer, shaped (N, in_features), without gradients."""
    body, _ = _split(model)
    with torch.no_grad():
        return body(images)


def last_layer_hessian(model: nn.Module, images: torch.Tensor, labels: torch.Tensor):
    """Exact Hessian of the mean cross-entropy w.r.t. the last layer's weight.

    Args:
        model: an ``nn.Sequential`` ending in ``nn.Linear(in, out)``; not modified.
        images: (N, ...) inputs; labels: (N,) class indices.

    Returns:
        (P, P) with P = out · in, the weight flattened row by row (``weight.flatten()``);
        its ``.diagonal().reshape(out, in)`` is the diagonal H_qq shaped like the weight.
    """
    _, last = _split(model)
    features = last_layer_inputs(model, images)
    bias = None if last.bias is None else last.bias.detach()

    def loss_of(weight):
        return F.cross_entropy(F.linear(features, weight, bias), labels)

    weight = last.weight.detach()
    with warnings.catch_warnings():
        # torch.func's forward mode warns once about a torch internal (torch.jit.script).
        warnings.simplefilter("ignore", FutureWarning)
        full = torch.func.hessian(loss_of)(weight)  # (out, in, out, in)
    return full.reshape(weight.numel(), weight.numel())


def removal_changes(model: nn.Module, images: torch.Tensor, labels: torch.Tensor):
    """True change of the mean cross-entropy when each last-layer weight alone is set to 0.

    Returns (out, in), shaped like the weight: entry [r, i] is L(w with w[r, i] = 0) − L(w).
    Exact (no Taylor expansion): removing w[r, i] lowers logit r of every input by
    w[r, i]·x_i, so one layer's worth of logits is recomputed per weight, no forward pass.
    """
    _, last = _split(model)
    features = last_layer_inputs(model, images)  # (N, in)
    weight = last.weight.detach()
    out_features, in_features = weight.shape
    with torch.no_grad():
        logits = last(features)  # (N, out)
        base = F.cross_entropy(logits, labels)
        changes = torch.empty_like(weight)
        for row in range(out_features):
            changed = logits.unsqueeze(0).repeat(in_features, 1, 1)  # (in, N, out)
            changed[:, :, row] -= weight[row].unsqueeze(1) * features.t()
            losses = F.cross_entropy(
                changed.reshape(-1, out_features), labels.repeat(in_features), reduction="none"
            )
            changes[row] = losses.reshape(in_features, -1).mean(1) - base
    return changes
