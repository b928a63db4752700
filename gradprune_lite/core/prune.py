"""Iterative pruning: score → mask → (train) → repeat, up to a target sparsity."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ._validate import check_sparsity
from .criteria import CRITERIA, score
from .layers import prunable_weights
from .masks import apply_masks, current_masks
from .selection import global_masks, layerwise_masks

SCHEDULES = ("exponential", "linear")
SCOPES = ("global", "layerwise")

#: Criteria that move the surviving weights as they prune (second order, e.g. "obs"):
#: name → fn(model, sparsity, select, batches, options) → masks. Such a function chooses
#: the weights with ``select`` itself, writes the updated weights into the model only
#: after every check passed, and returns the masks for ``apply_masks``.
WEIGHT_UPDATES: dict[str, Callable] = {}


def sparsity_schedule(target: float, rounds: int, schedule: str = "exponential") -> list[float]:
    """Sparsity after each of ``rounds`` rounds, ending exactly at ``target``.

    ``exponential`` keeps the same *fraction* of the remaining weights every round, the
    density (1 − s) shrinking geometrically as in iterative magnitude pruning and SynFlow:
    s_r = 1 − (1 − target)^(r / rounds). ``linear`` grows the sparsity in equal steps.
    """
    target = check_sparsity(target)
    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be a positive integer, got {rounds!r}.")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}.")
    if schedule == "linear" or target == 1.0:
        steps = [target * r / rounds for r in range(1, rounds + 1)]
    else:
        steps = [1 - (1 - target) ** (r / rounds) for r in range(1, rounds + 1)]
    steps[-1] = target  # exactly, not 1 − (1 − target) with its round-off
    return steps


def prune(
    model: nn.Module,
    criterion: str,
    sparsity: float,
    batches=None,
    rounds: int = 1,
    schedule: str = "exponential",
    scope: str = "global",
    between: Callable[[nn.Module, int], None] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    **options,
) -> dict[str, torch.Tensor]:
    """Prune ``model`` in place to ``sparsity`` over ``rounds`` rounds.

    Each round scores the weights by ``criterion``, masks the lowest-scored so that the
    round's sparsity (see ``sparsity_schedule``) is reached, applies the masks, then calls
    ``between(model, round_index)`` (for example, to train). Weights already pruned stay
    pruned: their scores are ranked below every living weight.

    Args:
        model: the model, changed in place (masks applied via ``gp.apply_masks``).
        criterion: a name in ``gp.CRITERIA``.
        sparsity: the final fraction of prunable weights to remove, in [0, 1].
        batches: data for data-driven criteria (re-iterated every round).
        rounds: number of score → mask rounds (1 = one-shot).
        schedule: ``"exponential"`` (default) or ``"linear"``.
        scope: ``"global"`` (one threshold) or ``"layerwise"`` (same sparsity per layer).
        between: optional ``between(model, round_index)`` called after each round.
        optimizer: optional, passed to ``apply_masks`` so it cannot revive pruned weights.
        **options: passed to the criterion (see ``gp.score``).

    Returns:
        the final masks, dict name → bool tensor (True = keep).
    """
    steps = sparsity_schedule(sparsity, rounds, schedule)
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}.")
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; valid names are {sorted(CRITERIA)}.")
    select = global_masks if scope == "global" else layerwise_masks
    weights = prunable_weights(model)
    for round_index, step in enumerate(steps):
        if criterion in WEIGHT_UPDATES:
            masks = WEIGHT_UPDATES[criterion](model, step, select, batches, options)
            apply_masks(model, masks, optimizer=optimizer)
            if between is not None:
                between(model, round_index)
            continue
        scores = score(model, criterion, batches, **options)
        already = current_masks(model)
        if already:
            # Dead weights rank below every living one, so they are the first pruned again
            # and the count of newly pruned weights is exactly what this round adds.
            for name, mask in already.items():
                lowest = torch.finfo(scores[name].dtype).min
                scores[name] = scores[name].masked_fill(~mask, lowest)
        masks = select(scores, step)
        apply_masks(model, masks, optimizer=optimizer)
        if between is not None:
            between(model, round_index)
    return {
        name: current_masks(model).get(name, torch.ones_like(w, dtype=torch.bool))
        for name, w in weights.items()
    }
