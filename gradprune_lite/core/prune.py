"""Iterative pruning: score → mask → (train) → repeat, up to a target sparsity."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ._snapshot import snapshot
from ._validate import (
    check_exclude,
    check_min_density,
    check_reiterable,
    check_score_dtype,
    check_sparsity,
    excluded_names,
)
from .criteria import CRITERIA, close_state, score_with
from .layers import prunable_weights
from .masks import apply_masks, current_masks
from .selection import global_masks, layerwise_masks

SCHEDULES = ("exponential", "linear")
SCOPES = ("global", "layerwise")


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


def _lowest(dtype: torch.dtype):
    """The smallest value of ``dtype``: dead weights get it so they rank below all others."""
    return torch.finfo(dtype).min if dtype.is_floating_point else torch.iinfo(dtype).min


def _checked_scores(scores, weights: dict, criterion: str) -> dict[str, torch.Tensor]:
    """The criterion's scores, checked before any of them is used to change the model."""
    for name, weight in weights.items():
        value = scores.get(name)
        if not isinstance(value, torch.Tensor) or value.shape != weight.shape:
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(
                f"criterion {criterion!r} returned {got} for {name!r}; it must return a "
                f"tensor shaped like the weight, {tuple(weight.shape)}."
            )
        check_score_dtype(name, value)
    return dict(scores)


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
    *,
    exclude: str | Sequence[str] = (),
    min_density: float = 0.0,
    snapshot_device: str | torch.device | None = None,
    **options,
) -> dict[str, torch.Tensor]:
    """Prune ``model`` in place to ``sparsity`` over ``rounds`` rounds; all or nothing.

    Each round scores the weights by ``criterion``, masks the lowest-scored so that the
    round's sparsity (see ``sparsity_schedule``) is reached, applies the masks, then calls
    ``between(model, round_index)`` (for example, to train). Weights already pruned stay
    pruned: their scores are ranked below every living weight.

    The call is atomic: the arguments are checked before anything changes, and if any
    round fails (a criterion, ``between``, a keyboard interrupt), the model's parameters,
    gradients, buffers, masks and train/eval flags and the optimiser's state are put back
    exactly as they were before the call, and the error is raised again. This keeps one
    copy of the model and of the optimiser state while it runs.

    Args:
        model: the model, changed in place (masks applied via ``gp.apply_masks``).
        criterion: a name in ``gp.CRITERIA`` (its record there says which options it
            takes, with their defaults, and whether it moves weights or keeps state).
        sparsity: the final fraction of prunable weights (not units; compare
            ``gp.structured_prune``'s ``amount``) to remove, a number in [0, 1].
        batches: data for data-driven criteria, re-iterated every round: with
            ``rounds > 1`` it must be a list or a DataLoader, not a generator.
        rounds: number of score → mask rounds (1 = one-shot).
        schedule: ``"exponential"`` (default) or ``"linear"``.
        scope: ``"global"`` (one threshold) or ``"layerwise"`` (same sparsity per layer).
        between: optional ``between(model, round_index)`` called after each round.
        optimizer: optional, passed to ``apply_masks`` so it cannot revive pruned weights.
        exclude: parameter-name patterns kept dense (fnmatch-style, see
            ``gp.global_masks``); ``sparsity`` is then the fraction of the other weights.
        min_density: the smallest fraction kept in every layer (see ``gp.global_masks``).
        snapshot_device: where the rollback copy lives. None (default): beside each
            tensor, which on a GPU costs device memory the size of the parameters,
            gradients, buffers and optimiser state (about 2× the model with momentum).
            ``"cpu"``: in host memory, freeing that device memory at the price of one
            device→host copy of all of it per call (and a host→device copy back only if
            the call fails); at PCIe speeds, roughly 0.1 s per GB.
        **options: passed to the criterion (see ``gp.score``).

    Returns:
        the final masks, dict name → bool tensor (True = keep).

    Raises:
        ValueError: bad arguments (raised before any change), a criterion returning
            scores that cannot be ranked, or floors that make the count impossible.
    """
    steps = sparsity_schedule(sparsity, rounds, schedule)
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}.")
    record = CRITERIA.record(criterion)
    options = record.with_defaults(options)
    if between is not None and not callable(between):
        raise ValueError(f"between must be a function (model, round_index), got {between!r}.")
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise ValueError(f"optimizer must be a torch.optim.Optimizer, got {optimizer!r}.")
    check_reiterable(batches, rounds)
    weights = prunable_weights(model)
    patterns = check_exclude(exclude)
    excluded_names(weights, patterns)  # a pattern that matches nothing raises here
    min_density = check_min_density(min_density)
    select = global_masks if scope == "global" else layerwise_masks

    restore = snapshot(model, optimizer, device=snapshot_device)
    state = None
    try:
        # A stateful criterion (see core/registry.py) keeps one state through every round.
        state = record.make_state(model) if record.make_state is not None else None
        for round_index, step in enumerate(steps):
            if record.weight_update is not None:  # e.g. "obs": it chooses and moves weights
                select_round = functools.partial(select, exclude=patterns, min_density=min_density)
                masks = record.weight_update(model, step, select_round, batches, options)
                apply_masks(model, masks, optimizer=optimizer)
                if between is not None:
                    between(model, round_index)
                continue
            scores = _checked_scores(
                score_with(record, model, batches, options, state), weights, criterion
            )
            # Dead weights rank below every living one, so they are the first pruned again
            # and the count of newly pruned weights is exactly what this round adds.
            for name, mask in current_masks(model).items():
                scores[name] = scores[name].masked_fill(~mask, _lowest(scores[name].dtype))
            masks = select(scores, step, exclude=patterns, min_density=min_density)
            apply_masks(model, masks, optimizer=optimizer)
            if between is not None:
                between(model, round_index)
    except BaseException:
        restore()
        raise
    finally:
        close_state(state)
    return {
        name: current_masks(model).get(name, torch.ones_like(w, dtype=torch.bool))
        for name, w in weights.items()
    }
