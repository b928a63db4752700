"""Masks that hold: zero pruned weights and keep them exactly zero through training.

A mask is a bool tensor shaped like its weight (True = keep). ``apply_masks`` stores it
on the layer as a *non-persistent* buffer named ``weight_keep``, so

* ``model.state_dict()`` keeps the dense model's keys (it loads with ``strict=True``
  into a fresh model, and the zeros travel in the weights themselves);
* ``copy.deepcopy(model)`` and ``model.to(device)`` carry the masks along;
* there is no ``weight_orig`` copy and no float mask, unlike ``torch.nn.utils.prune``.

Pruned weights are re-zeroed after every optimiser step by a step hook that also zeroes
the optimiser's state (momentum, Adam moments) at pruned entries, so stale state can
never revive them, in our training loop or in yours.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ._validate import check_masks_match
from .layers import prunable_modules, prunable_weights

MASK_BUFFER = "weight_keep"


def current_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Return ``{name: bool mask}`` for every prunable weight that has a mask applied."""
    return {
        name: getattr(module, MASK_BUFFER)
        for name, module in prunable_modules(model).items()
        if getattr(module, MASK_BUFFER, None) is not None
    }


def _as_factor(mask: torch.Tensor) -> torch.Tensor:
    return mask.view(torch.uint8) if mask.dtype == torch.bool else mask


def _masked(modules) -> list[tuple[nn.Parameter, torch.Tensor]]:
    """(weight, uint8 view of its mask) for every module that has a mask applied."""
    pairs = []
    for module in modules:
        mask = getattr(module, MASK_BUFFER, None)
        if mask is not None:
            pairs.append((module.weight, _as_factor(mask)))
    return pairs


def _multiply_all(pairs, optimizer: torch.optim.Optimizer | None = None) -> None:
    """Zero pruned entries of the weights and of their optimiser state, in one fused op.

    The factor is the bool mask's own bytes read as uint8 (0/1): multiplying a float tensor
    by a bool tensor takes torch's slow casting path (measured ~4x slower on CPU), and the
    view makes no copy, so the stored masks stay bool.
    """
    tensors, factors = [], []
    for weight, factor in pairs:
        tensors.append(weight)
        factors.append(factor)
        state = optimizer.state.get(weight, {}) if optimizer is not None else {}
        for value in state.values():
            if isinstance(value, torch.Tensor) and value.shape == weight.shape:
                tensors.append(value)
                factors.append(factor)
    if tensors:
        with torch.no_grad():
            torch._foreach_mul_(tensors, factors)


def enforce_masks(model: nn.Module) -> None:
    """Re-zero every pruned weight, all layers in one fused ``_foreach_mul_``."""
    _multiply_all(_masked(prunable_modules(model).values()))


def hold_masks(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Keep ``model``'s applied masks through ``optimizer``'s steps.

    Registers (once per optimiser and model) a step post-hook that re-zeroes pruned
    weights and the optimiser's state at pruned entries (momentum, Adam moments), all in
    one fused multiply. Masks applied later are honoured too, since the hook reads the
    layers' masks at every step; the list of prunable layers is taken once, here.
    """
    hooked = optimizer.__dict__.setdefault("_gradprune_hooked_models", [])
    if any(m is model for m in hooked):
        return
    hooked.append(model)
    modules = list(prunable_modules(model).values())

    def after_step(opt, args, kwargs):
        _multiply_all(_masked(modules), opt)

    optimizer.register_step_post_hook(after_step)


@torch.no_grad()
def apply_masks(
    model: nn.Module,
    masks: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer | None = None,
) -> nn.Module:
    """Zero pruned weights and keep them zero from now on.

    Args:
        model: the model to prune, on any device; changed in place.
        masks: dict name → bool tensor shaped like the weight (True = keep), one per
            prunable weight (``gp.global_masks`` gives such a dict). 0/1 tensors are
            accepted and converted. Masks combine with any already applied: a weight once
            pruned stays pruned.
        optimizer: optional. Given, a step hook re-zeroes pruned weights after every step
            and clears the optimiser's state there (SGD momentum, Adam moments), so a plain
            ``loss.backward(); optimizer.step()`` loop keeps the sparsity exactly.

    Returns:
        the same model, for chaining.

    Raises:
        ValueError: if mask names or shapes do not match the model's prunable weights;
            nothing is changed then.
    """
    modules = prunable_modules(model)
    check_masks_match(masks, prunable_weights(model))
    for name, module in modules.items():
        mask = masks[name].to(device=module.weight.device, dtype=torch.bool)
        old = getattr(module, MASK_BUFFER, None)
        if old is not None:
            mask = mask & old
        module.register_buffer(MASK_BUFFER, mask.clone(), persistent=False)
    _multiply_all(_masked(modules.values()), optimizer)
    if optimizer is not None:
        hold_masks(model, optimizer)
    return model


def remove_masks(model: nn.Module) -> nn.Module:
    """Forget the masks (the zeros stay in the weights, but training may revive them)."""
    for module in prunable_modules(model).values():
        if MASK_BUFFER in module._buffers:
            del module._buffers[MASK_BUFFER]
    return model


@torch.no_grad()
def sparsity(model: nn.Module) -> float:
    """Fraction of prunable weights (Linear and Conv2d ``weight``) that are exactly zero."""
    weights = prunable_weights(model).values()
    total = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    return zeros / total


def mask_overlap(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    """Jaccard overlap |A ∩ B| / |A ∪ B| of the kept sets of two mask dicts.

    1.0 means both masks keep exactly the same weights; our measure of ranking stability.
    Both dicts must have the same names and shapes. Two masks that keep nothing overlap 1.
    """
    if set(a) != set(b):
        raise ValueError(
            f"mask_overlap needs masks for the same parameters; only in the first: "
            f"{sorted(set(a) - set(b))}, only in the second: {sorted(set(b) - set(a))}."
        )
    intersection = union = 0
    for name in a:
        ma, mb = a[name].bool(), b[name].bool().to(a[name].device)
        if ma.shape != mb.shape:
            raise ValueError(
                f"mask_overlap: {name!r} has shape {tuple(ma.shape)} in the first dict and "
                f"{tuple(mb.shape)} in the second."
            )
        intersection += int((ma & mb).sum())
        union += int((ma | mb).sum())
    return 1.0 if union == 0 else intersection / union
