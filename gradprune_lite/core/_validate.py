"""Input checks shared by the public functions.

Every check runs *before* anything is modified, so a ``ValueError`` leaves the model,
its masks and its optimiser exactly as they were.
"""

from __future__ import annotations

import fnmatch
import math
import numbers
from collections.abc import Iterable, Iterator, Mapping

import torch


def _as_fraction(value, what: str, meaning: str) -> float:
    """``value`` as a float in [0, 1]; strings and bools are refused, not converted."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.dtype != torch.bool:
        value = value.item()
    # float("0.9") and float(True) both succeed, which would hide a mistake; a number is
    # what we ask for, so anything that is not a real number is refused outright.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(
            f"{what} must be a number in [0, 1] ({meaning}), got {value!r} of type "
            f"{type(value).__name__}. Pass a float such as 0.9, not a string or a bool."
        )
    value = float(value)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(
            f"{what} must be in [0, 1] ({meaning}), got {value!r}. For 95% pass 0.95, not 95."
        )
    return value


def check_sparsity(sparsity: float) -> float:
    """Return ``sparsity`` as a float, or raise if it is not a number in [0, 1]."""
    return _as_fraction(sparsity, "sparsity", "the fraction of weights to prune")


def check_min_density(min_density: float) -> float:
    """Return ``min_density`` as a float, or raise if it is not a number in [0, 1]."""
    return _as_fraction(min_density, "min_density", "the smallest fraction kept in each layer")


def check_exclude(exclude) -> tuple[str, ...]:
    """``exclude`` as a tuple of fnmatch patterns; one string is one pattern."""
    if exclude is None:
        return ()
    if isinstance(exclude, str):
        return (exclude,)
    if not isinstance(exclude, Iterable) or not all(isinstance(p, str) for p in exclude):
        raise ValueError(
            f"exclude must be a parameter-name pattern or a list of them (strings such as "
            f"'fc3.weight' or 'features.*'), got {exclude!r}."
        )
    return tuple(exclude)


def excluded_names(names: Iterable[str], patterns: tuple[str, ...]) -> set[str]:
    """The names that match any of ``patterns``; raise if a pattern matches none of them.

    A pattern that matches nothing is almost always a typo (``"fc3"`` for ``"fc3.weight"``),
    and silently pruning the layer the user meant to keep is the worst outcome.
    """
    names = list(names)
    matched = set()
    for pattern in patterns:
        hits = {name for name in names if fnmatch.fnmatchcase(name, pattern)}
        if not hits:
            raise ValueError(
                f"exclude pattern {pattern!r} matches no prunable weight. The names are "
                f"{names}; patterns are fnmatch-style and match whole names, so write "
                f"'fc3.weight' or 'fc3.*' rather than 'fc3'."
            )
        matched |= hits
    return matched


def check_reiterable(batches, rounds: int) -> None:
    """Raise if ``batches`` is a one-shot iterator but several rounds will read it."""
    if rounds > 1 and isinstance(batches, Iterator):
        raise ValueError(
            f"batches is a one-shot iterator ({type(batches).__name__}) but rounds={rounds} "
            "reads the data once per round, so every round after the first would see nothing. "
            "Pass a list of (inputs, targets) batches or a DataLoader, which can be iterated "
            "again (for example batches=list(your_generator))."
        )


def check_score_dtype(name: str, tensor: torch.Tensor) -> None:
    """Raise unless ``tensor`` holds real numbers that can be ranked (float or integer)."""
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise ValueError(
            f"scores[{name!r}] has dtype {tensor.dtype}, which cannot be ranked: return real "
            "importance scores (float or integer tensors, higher = keep) from the criterion."
        )


def check_scores(scores: Mapping[str, torch.Tensor]) -> None:
    """Raise if ``scores`` is empty, not tensors, not rankable, or holds NaN or inf."""
    if not scores:
        raise ValueError("scores is empty: pass a dict name -> tensor, e.g. from gp.score().")
    for name, tensor in scores.items():
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"scores[{name!r}] is a {type(tensor).__name__}, expected a tensor.")
        check_score_dtype(name, tensor)
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
    masks: Mapping[str, torch.Tensor],
    weights: Mapping[str, torch.Tensor],
    *,
    partial: bool = False,
) -> None:
    """Raise unless every mask names a prunable weight and is a bool (or 0/1) tensor of its shape.

    With ``partial=False`` every prunable weight must have a mask; with ``partial=True`` a
    subset is fine (the missing layers are left as they are).
    """
    unknown = [name for name in masks if name not in weights]
    if unknown:
        raise ValueError(
            f"masks name parameters the model has no prunable weight for: {unknown}. "
            f"The prunable weights are {list(weights)}."
        )
    missing = [name for name in weights if name not in masks]
    if missing and not partial:
        raise ValueError(
            f"masks has no entry for {missing}. Give one bool mask per prunable weight "
            f"({list(weights)}); use torch.ones_like(weight, dtype=torch.bool) to keep a layer."
        )
    for name, mask in masks.items():
        weight = weights[name]
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
