"""Optimal Brain Surgeon on block-diagonal curvature: the ``"obs"`` criterion.

Near a minimum the loss change of a weight step δw is ΔL ≈ ½·δwᵀFδw (the gradient term
vanishes). Removing a set Q of weights means δw_Q = −w_Q; the other weights may move to
compensate. The best such move and its cost are (Hassibi & Stork 1993; WoodFisher,
Singh & Alistarh 2020):

    δw = −F⁻¹E_Q (E_QᵀF⁻¹E_Q)⁻¹ w_Q,     ΔL = ½·w_Qᵀ (E_QᵀF⁻¹E_Q)⁻¹ w_Q,

with E_Q the columns of the identity at Q. For one weight q this is the saliency
ρ_q = w_q² / (2·[F⁻¹]_qq) (higher = keep) and δw = −F⁻¹e_q·w_q / [F⁻¹]_qq.

Choices, and why:

* F is block-diagonal (``fisher_blocks``), so Q splits into its blocks and each block is
  solved on its own, all blocks in one batched solve.
* Within a block, the weights chosen in one step are removed **jointly** with the
  formula above, not greedily one at a time: for the chosen set it is the exact optimum
  of the quadratic model, in one batched solve instead of |Q| sequential ones. The set
  itself is chosen by the single-weight saliencies, which ignore how removals interact;
  the internal ``steps`` (F recomputed after each) are what corrects for that.
* ``steps``: one big step leaves the region where the quadratic model holds (near a
  minimum F is concentrated on a few uncertain samples). WoodFisher's multi-step prunes
  in several smaller steps, recomputing F at the moved weights in between. The density
  shrinks geometrically, as in ``gp.sparsity_schedule``.
* ``allocation="magnitude"``: one threshold on ρ across layers (``"saliency"``) measured
  much worse on LeNet-300-100 (it strips fc1 hardest; ρ from block-diagonal F is a local
  estimate that ignores the coupling between layers). By default each layer loses as
  many weights per step as global magnitude pruning would remove there, and ρ picks
  which ones.
* ``block_size=1`` is OBD (the diagonal ``fisher`` criterion, damped) with its update,
  which only zeroes the weight: the cross terms are what lets survivors compensate.

Memory: the curvature and its inverse are 2 × B × P_pad floats per layer (float32,
also during the factorisation), and per-sample gradients stream in chunks of at most
``gp.per_sample_gradients``' 16 M floats; measured in ``docs/RESULTS.md``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from ._scoring import check_batch_list, scoring_state
from .fisher_blocks import (
    damped_inverses,
    gradient_curvature,
    padded_blocks,
    reconstruction_curvature,
    sampled_label_batches,
    unblock,
)
from .layers import prunable_weights
from .masks import current_masks
from .registry import ScoringContext
from .selection import _syncs_are_free, global_masks

CURVATURES = ("empirical", "sampled", "reconstruction")
ALLOCATIONS = ("magnitude", "saliency")

#: The defaults: the best one-shot result we found on LeNet-300-100 at 95% (validation
#: split; the tuning runs are listed in docs/RESULTS.md).
DEFAULTS = {
    "block_size": 64,
    "damping": 0.1,
    "samples": None,
    "steps": 8,
    "curvature": "empirical",
    "allocation": "magnitude",
    "seed": 0,
    "loss_fn": None,
}


def obs_options(options: dict) -> dict:
    """The obs options with defaults filled in; ValueError naming any bad one.

    block_size: entries per curvature block (1 = diagonal, OBD). damping: λ > 0, relative
    to the mean curvature. samples: how many samples build F (None = all given; per rank
    under torch.distributed, where the blocks are summed over the ranks' samples).
    steps: internal prune steps per round, F recomputed at each. curvature: one of
    ``CURVATURES``. allocation: how many weights each layer loses per step under global
    scope, ``"magnitude"`` (as global magnitude pruning would) or ``"saliency"`` (one
    threshold on ρ); which weights always follows ρ. seed: the label draw of
    ``"sampled"``. loss_fn: as for gp.score.
    """
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"obs got unknown options {unknown}; valid ones are {sorted(DEFAULTS)}.")
    chosen = {**DEFAULTS, **options}
    for key in ("block_size", "steps"):
        value = chosen[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"obs {key} must be a positive integer, got {value!r}.")
    samples = chosen["samples"]
    if samples is not None and (not isinstance(samples, int) or samples < 1):
        raise ValueError(f"obs samples must be a positive integer or None (all), got {samples!r}.")
    damping = chosen["damping"]
    if not isinstance(damping, (int, float)) or not math.isfinite(damping) or damping <= 0:
        raise ValueError(f"obs damping must be a positive number such as 1e-2, got {damping!r}.")
    if chosen["allocation"] not in ALLOCATIONS:
        raise ValueError(
            f"obs allocation must be one of {ALLOCATIONS}, got {chosen['allocation']!r}."
        )
    if chosen["curvature"] not in CURVATURES:
        raise ValueError(f"obs curvature must be one of {CURVATURES}, got {chosen['curvature']!r}.")
    return chosen


def _first_samples(batches: Iterable, samples: int | None) -> list:
    """The first ``samples`` samples as a list of batches, so every step sees the same data."""
    check_batch_list(batches)
    taken, count = [], 0
    for inputs, targets in batches:
        if samples is not None and count + len(inputs) > samples:
            inputs, targets = inputs[: samples - count], targets[: samples - count]
        if len(inputs):
            taken.append((inputs, targets))
            count += len(inputs)
        if samples is not None and count >= samples:
            break
    if not taken:
        raise ValueError("obs needs data, but batches yielded no samples.")
    return taken


def inverse_curvature(
    model: nn.Module, data: list, alive: dict[str, torch.Tensor], options: dict
) -> dict[str, torch.Tensor]:
    """dict name → (blocks, B, B) damped inverse curvature at the model's current weights."""
    block_size = options["block_size"]
    curvature = options["curvature"]
    # Every curvature runs in the scoring state: eval mode, and no BatchNorm statistic,
    # mode or requires_grad flag of the model changes.
    with scoring_state(model):
        if curvature == "reconstruction":
            blocks = reconstruction_curvature(model, data, alive, block_size)
        else:
            if curvature == "sampled":
                data = sampled_label_batches(model, data, options["seed"])
            blocks = gradient_curvature(model, data, alive, block_size, options["loss_fn"])
    return damped_inverses(blocks, alive, options["damping"], block_size)


def saliency(weight: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """ρ_q = w_q² / (2·[F⁻¹]_qq), shaped like ``weight`` (higher = keep)."""
    diag = unblock(inverse.diagonal(dim1=1, dim2=2), weight.shape)
    return weight.square() / (2 * diag)


def obs_update(weight: torch.Tensor, inverse: torch.Tensor, remove: torch.Tensor) -> torch.Tensor:
    """The weight after jointly removing ``remove`` with the OBS update, block by block.

    Args:
        weight: any shape; inverse: its (blocks, B, B) inverse curvature; remove: bool
            mask shaped like ``weight``, True where a weight is removed now.

    Returns:
        w + δw with δw = −F⁻¹E_Q (E_QᵀF⁻¹E_Q)⁻¹ w_Q per block, removed entries exactly 0.
    """
    block_size = inverse.shape[-1]
    w = padded_blocks(weight.reshape(-1), block_size)
    q = padded_blocks(remove.reshape(-1), block_size)
    counts = q.sum(1)
    # The batch width, the most removals in any block. Reading it costs nothing on the
    # CPU; elsewhere the whole block width spares a host sync per layer and step (padding
    # columns solve as identity rows with zero weight, so the update is the same).
    width = int(counts.max()) if _syncs_are_free(w.device) else block_size
    if width == 0:
        return weight.clone()
    # The removed entries of each block first, padded to a common width m.
    order = torch.argsort((~q).to(torch.uint8), dim=1, stable=True)[:, :width]
    valid = torch.arange(width, device=w.device) < counts.unsqueeze(1)
    columns = torch.gather(inverse, 2, order.unsqueeze(1).expand(-1, block_size, -1))
    square = torch.gather(columns, 1, order.unsqueeze(2).expand(-1, -1, width))
    pair = valid.unsqueeze(2) & valid.unsqueeze(1)
    eye = torch.eye(width, dtype=inverse.dtype, device=inverse.device)
    # Padding columns get identity rows and zero weight, so their multipliers are 0.
    square = torch.where(pair, square, eye)
    w_q = torch.gather(w, 1, order) * valid
    multipliers = torch.linalg.solve(square, w_q)
    moved = w - torch.bmm(columns, multipliers.unsqueeze(2)).squeeze(2)
    return unblock(moved, weight.shape).masked_fill(remove, 0.0)


def _alive_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    masks = current_masks(model)
    return {
        name: masks.get(name, torch.ones_like(w, dtype=torch.bool)).clone()
        for name, w in prunable_weights(model).items()
    }


def obs_scores(ctx: ScoringContext) -> dict[str, torch.Tensor]:
    """OBS saliency w² / (2·[F⁻¹]_qq) on the block-diagonal damped curvature (higher = keep).

    Options (see ``obs_options``): block_size, damping, samples, curvature, seed, loss_fn.
    Weights already masked are decoupled from F and score 0. ``gp.prune(model, "obs", …)``
    also moves the surviving weights (the OBS update) and prunes in ``steps`` steps.
    """
    options = obs_options(ctx.options)
    data = _first_samples(ctx.require_batches(), options["samples"])
    alive = _alive_masks(ctx.model)
    inverses = inverse_curvature(ctx.model, data, alive, options)
    return {
        name: saliency(w, inverses[name]).masked_fill(~alive[name], 0.0)
        for name, w in ctx.weights.items()
    }


def step_sparsities(start: float, target: float, steps: int) -> list[float]:
    """Sparsity after each internal step from ``start`` to ``target``, density geometric."""
    if target <= start or target == 1.0:
        return [target]
    ratio = (1 - target) / (1 - start)
    values = [1 - (1 - start) * ratio ** (k / steps) for k in range(1, steps + 1)]
    values[-1] = target
    return values


def _choose(scores, weights, alive, sparsity, select, allocation) -> dict[str, torch.Tensor]:
    """Keep-masks at ``sparsity``: how many per layer by ``allocation``, which by saliency."""
    if allocation == "saliency":
        return select(scores, sparsity)
    lowest = torch.finfo(torch.float32).min
    magnitude = {
        n: w.detach().abs().float().masked_fill(~alive[n], lowest) for n, w in weights.items()
    }
    counts = {n: int((~m).sum()) for n, m in select(magnitude, sparsity).items()}
    return {n: global_masks({n: scores[n]}, counts[n] / scores[n].numel())[n] for n in scores}


def obs_prune(
    model: nn.Module,
    sparsity: float,
    select: Callable[[dict, float], dict],
    batches,
    options: dict,
) -> dict[str, torch.Tensor]:
    """One ``gp.prune`` round of obs: reach ``sparsity`` in ``steps`` OBS steps.

    Every step recomputes the inverse curvature at the current weights, masks the
    lowest saliencies with ``select`` (so global/layerwise scope and exact counts are
    those of ``gp.prune``) and applies the joint OBS update to each block. The work is
    done on a copy: the model's weights change only at the end, after every check and
    computation succeeded. Returns the masks (True = keep) for ``apply_masks``.
    """
    options = obs_options(options)
    if batches is None:
        raise ValueError("obs needs data: pass batches=[(inputs, targets), ...] to gp.prune.")
    data = _first_samples(batches, options["samples"])
    work = copy.deepcopy(model)
    weights = prunable_weights(work)
    alive = _alive_masks(work)
    total = sum(m.numel() for m in alive.values())
    start = sum(int((~m).sum()) for m in alive.values()) / total
    lowest = torch.finfo(torch.float32).min
    for step in step_sparsities(start, sparsity, options["steps"]):
        inverses = inverse_curvature(work, data, alive, options)
        scores = {
            name: saliency(w.detach(), inverses[name]).float().masked_fill(~alive[name], lowest)
            for name, w in weights.items()
        }
        keep = _choose(scores, weights, alive, step, select, options["allocation"])
        with torch.no_grad():
            for name, w in weights.items():
                keep[name] &= alive[name]
                w.copy_(obs_update(w, inverses[name], alive[name] & ~keep[name]))
        alive = keep
    with torch.no_grad():
        for name, w in prunable_weights(model).items():
            w.copy_(weights[name])
    return alive
