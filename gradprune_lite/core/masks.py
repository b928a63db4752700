"""Masks that hold: zero pruned weights and keep them exactly zero through training.

A mask is a bool tensor shaped like its weight (True = keep). ``apply_masks`` stores it
on the layer as a *non-persistent* buffer named ``weight_keep``, so

* ``model.state_dict()`` keeps the dense model's keys (it loads with ``strict=True``
  into a fresh model, and the zeros travel in the weights themselves);
* ``copy.deepcopy(model)`` and ``model.to(device)`` carry the masks along;
* there is no ``weight_orig`` copy and no float mask, unlike ``torch.nn.utils.prune``.

A layer already pruned with ``torch.nn.utils.prune`` (it has a ``weight_orig`` parameter and
a pruning forward pre-hook that recomputes ``weight``) is masked through ``weight_orig``, the
tensor the optimiser actually updates, so both masks hold together.

Pruned weights are re-zeroed after every optimiser step by a step hook that also zeroes
the optimiser's state (momentum, Adam moments) at pruned entries, so stale state can
never revive them, in our training loop or in yours.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from ._validate import check_exclude, check_masks_match, check_min_density, excluded_names
from .layers import prunable_modules, prunable_weights

MASK_BUFFER = "weight_keep"
#: Attribute of an optimiser listing (model, hook handle) pairs registered by ``hold_masks``.
HOOKS_ATTRIBUTE = "_gradprune_hooked_models"


def current_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Return ``{name: bool mask}`` for every prunable weight that has a mask applied."""
    return {
        name: getattr(module, MASK_BUFFER)
        for name, module in prunable_modules(model).items()
        if getattr(module, MASK_BUFFER, None) is not None
    }


def _as_factor(mask: torch.Tensor) -> torch.Tensor:
    return mask.view(torch.uint8) if mask.dtype == torch.bool else mask


def _torch_pruning_hook(module: nn.Module):
    """The ``torch.nn.utils.prune`` method that recomputes ``module.weight``, or None."""
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, torch_prune.BasePruningMethod) and hook._tensor_name == "weight":
            return hook
    return None


def trained_weight(module: nn.Module) -> torch.Tensor:
    """The tensor an optimiser updates for ``module.weight``.

    Normally ``module.weight`` itself. Under ``torch.nn.utils.prune`` it is ``weight_orig``:
    ``weight`` is then a product recomputed from it before every forward, so zeros written
    into ``weight`` would be overwritten by the next forward (the bug this function avoids).
    """
    original = module._parameters.get("weight_orig")
    if original is not None and _torch_pruning_hook(module) is not None:
        return original
    return module.weight


def _refresh_derived_weight(module: nn.Module) -> None:
    """Recompute ``weight`` of a torch-pruned layer now, as its pre-hook does at forward."""
    hook = _torch_pruning_hook(module)
    if hook is not None:
        hook(module, None)


def _masked(modules) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(trained weight, uint8 view of its mask) for every module that has a mask applied."""
    pairs = []
    for module in modules:
        mask = getattr(module, MASK_BUFFER, None)
        if mask is not None:
            pairs.append((trained_weight(module), _as_factor(mask)))
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
    hooked = optimizer.__dict__.setdefault(HOOKS_ATTRIBUTE, [])
    if any(m is model for m, _ in hooked):
        return
    modules = list(prunable_modules(model).values())

    def after_step(opt, args, kwargs):
        _multiply_all(_masked(modules), opt)

    hooked.append((model, optimizer.register_step_post_hook(after_step)))


@torch.no_grad()
def apply_masks(
    model: nn.Module,
    masks: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer | None = None,
    *,
    exclude: str | Sequence[str] = (),
    min_density: float = 0.0,
) -> nn.Module:
    """Zero pruned weights and keep them zero from now on.

    Args:
        model: the model to prune, on any device; changed in place.
        masks: dict name → bool tensor shaped like the weight (True = keep), for all
            prunable weights or a subset of them (``gp.global_masks`` gives such a dict).
            Layers without an entry are left as they are (dense, or with the mask they
            already had). 0/1 tensors are accepted and converted. Masks combine with any
            already applied: a weight once pruned stays pruned.
        optimizer: optional. Given, a step hook re-zeroes pruned weights after every step
            and clears the optimiser's state there (SGD momentum, Adam moments), so a plain
            ``loss.backward(); optimizer.step()`` loop keeps the sparsity exactly.
        exclude: parameter-name patterns (fnmatch-style, e.g. ``"fc3.weight"``,
            ``"classifier.*"``) of layers that are not masked: their entries in ``masks``
            are ignored and they stay as they are. A pattern matching no name raises.
        min_density: refuse (``ValueError``, nothing changed) masks that would leave any
            masked layer keeping less than this fraction of its weights.

    A layer already under ``torch.nn.utils.prune`` is masked through its ``weight_orig``
    (the parameter the optimiser updates); its own ``weight_mask`` stays in force too.

    Returns:
        the same model, for chaining.

    Raises:
        ValueError: if a mask names no prunable weight, has the wrong shape or is not
            0/1, if a pattern matches nothing, or if a layer would fall below
            ``min_density``; nothing is changed then.
    """
    modules = prunable_modules(model)
    check_masks_match(masks, prunable_weights(model), partial=True)
    min_density = check_min_density(min_density)
    skipped = excluded_names(modules, check_exclude(exclude))
    combined = {}
    for name, mask in masks.items():
        if name in skipped:
            continue
        module = modules[name]
        mask = mask.to(device=module.weight.device, dtype=torch.bool)
        old = getattr(module, MASK_BUFFER, None)
        combined[name] = mask & old if old is not None else mask.clone()
        if min_density == 0:  # nothing to check: no host sync per layer
            continue
        kept = int(combined[name].sum()) / max(1, combined[name].numel())
        if kept < min_density:
            raise ValueError(
                f"masks[{name!r}] (combined with the mask already applied) keeps {kept:.4f} "
                f"of the layer, below min_density={min_density}. Build the masks with "
                f"gp.global_masks(..., min_density={min_density}) or lower min_density."
            )
    for name, mask in combined.items():
        modules[name].register_buffer(MASK_BUFFER, mask, persistent=False)
    _multiply_all(_masked(modules[name] for name in combined), optimizer)
    for name in combined:
        _refresh_derived_weight(modules[name])
    if optimizer is not None:
        hold_masks(model, optimizer)
    return model


def remove_masks(model: nn.Module) -> nn.Module:
    """Forget the masks (the zeros stay in the weights, but training may revive them)."""
    for module in prunable_modules(model).values():
        if MASK_BUFFER in module._buffers:
            del module._buffers[MASK_BUFFER]
    return model


@dataclass
class SparsityReport:
    """What ``gp.sparsity`` counts, layer by layer.

    Attributes:
        covered: dict name → (zeros, size) for every prunable weight (the layer types in
            ``gradprune_lite.core.layers.PRUNABLE_TYPES``), each shared tensor once.
        not_covered: dict name → size of the other weight-bearing parameters (any
            parameter with two or more dimensions, e.g. an ``nn.Embedding`` table or a
            Conv1d kernel when those are not prunable): ``gp.sparsity`` ignores them.
        not_covered_zeros: how many entries of ``not_covered`` are exactly zero.
        sparsity: zeros ÷ size over ``covered``, the value ``gp.sparsity`` returns.
        sparsity_all: zeros ÷ size over ``covered`` and ``not_covered`` together.
    """

    covered: dict[str, tuple[int, int]] = field(default_factory=dict)
    not_covered: dict[str, int] = field(default_factory=dict)
    not_covered_zeros: int = 0

    @property
    def sparsity(self) -> float:
        zeros = sum(z for z, _ in self.covered.values())
        return zeros / max(1, sum(n for _, n in self.covered.values()))

    @property
    def sparsity_all(self) -> float:
        zeros = sum(z for z, _ in self.covered.values()) + self.not_covered_zeros
        size = sum(n for _, n in self.covered.values()) + sum(self.not_covered.values())
        return zeros / max(1, size)

    def __str__(self) -> str:
        lines = [f"sparsity {self.sparsity:.4f} over {len(self.covered)} prunable weights:"]
        lines += [f"  {name}: {z}/{n} zero" for name, (z, n) in self.covered.items()]
        if self.not_covered:
            lines.append(
                f"not counted ({len(self.not_covered)} weight-bearing parameters that "
                f"gradprune-lite does not prune; sparsity over everything "
                f"{self.sparsity_all:.4f}):"
            )
            lines += [f"  {name}: {n} weights" for name, n in self.not_covered.items()]
        return "\n".join(lines)


@torch.no_grad()
def sparsity_report(model: nn.Module) -> SparsityReport:
    """Which weights ``gp.sparsity`` counts, their zeros, and which it leaves out.

    ``print(gp.sparsity_report(model))`` lists both. A tensor shared by several layers
    (tied weights) is counted once.
    """
    report = SparsityReport()
    seen: set[int] = set()
    for name, module in prunable_modules(model).items():
        weight = module.weight
        if id(weight) in seen:  # a tied weight, already counted under its first name
            continue
        seen.update((id(weight), id(trained_weight(module))))
        report.covered[name] = (int((weight == 0).sum()), weight.numel())
    for name, param in model.named_parameters():
        if id(param) in seen or param.dim() < 2:
            continue
        seen.add(id(param))
        report.not_covered[name] = param.numel()
        report.not_covered_zeros += int((param == 0).sum())
    return report


def sparsity(model: nn.Module) -> float:
    """Fraction of the prunable weights that are exactly zero.

    Prunable weights are the ``weight`` of the layer types gradprune-lite prunes
    (``gradprune_lite.core.layers.PRUNABLE_TYPES``, e.g. ``nn.Linear`` and ``nn.Conv2d``);
    biases, norm scales and the weights of other layer types are *not* counted, and a
    weight shared by two layers counts once. ``gp.sparsity_report(model)`` lists what is
    covered and what is not, with the sparsity over all weight-bearing parameters too.
    """
    return sparsity_report(model).sparsity


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
