"""Input checks shared by the public functions.

Every check runs *before* anything is modified, so a ``ValueError`` leaves the model,
its masks and its optimiser exactly as they were.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch


def check_sparsity(sparsity: float) -> float:
    """Return ``sparsity`` as a float, or raise if it is not a number in [0, 1]."""
    try:
        value = float(sparsity)
    except (TypeError, ValueError):
        raise ValueError(
            f"sparsity must be a number in [0, 1] (the fraction of weights to prune), "
            f"got {sparsity!r}."
        ) from None
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(
            f"sparsity must be in [0, 1] (the fraction of weights to prune), got {sparsity!r}. "
            "For 95% sparsity pass 0.95, not 95."
        )
    return value


def check_scores(scores: Mapping[str, torch.Tensor]) -> None:
    """Raise if ``scores`` is empty, not tensors, or holds NaN or infinite values."""
    if not scores:
        raise ValueError("scores is empty: pass a dict name -> tensor, e.g. from gp.score().")
    for name, tensor in scores.items():
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"scores[{name!r}] is a {type(tensor).__name__}, expected a tensor.")
        if not tensor.is_floating_point():
            continue
        if not bool(torch.isfinite(tensor).all()):
            bad = "NaN" if bool(torch.isnan(tensor).any()) else "inf"
            raise ValueError(
                f"scores[{name!r}] contains {bad}: a criterion produced non-finite importance. "
                "Check the data and the loss (a diverged model gives NaN gradients), or clean "
                "the scores with torch.nan_to_num before ranking."
            )


def check_masks_match(
    masks: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor]
) -> None:
    """Raise unless ``masks`` has exactly one bool tensor per prunable weight, same shapes."""
    missing = [name for name in weights if name not in masks]
    unknown = [name for name in masks if name not in weights]
    if unknown:
        raise ValueError(
            f"masks name parameters the model has no prunable weight for: {unknown}. "
            f"The prunable weights are {list(weights)}."
        )
    if missing:
        raise ValueError(
            f"masks has no entry for {missing}. Give one bool mask per prunable weight "
            f"({list(weights)}); use torch.ones_like(weight, dtype=torch.bool) to keep a layer."
        )
    for name, weight in weights.items():
        mask = masks[name]
        if not isinstance(mask, torch.Tensor):
            raise ValueError(f"masks[{name!r}] is a {type(mask).__name__}, expected a tensor.")
        if tuple(mask.shape) != tuple(weight.shape):
            raise ValueError(
                f"masks[{name!r}] has shape {tuple(mask.shape)} but the weight has shape "
                f"{tuple(weight.shape)}."
            )
        if mask.dtype != torch.bool:
            values = torch.unique(mask)
            if not bool(((values == 0) | (values == 1)).all()):
                raise ValueError(
                    f"masks[{name!r}] must be bool (True = keep) or 0/1, got values "
                    f"{values[:5].tolist()}."
                )
