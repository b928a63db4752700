"""Masks that hold: zero pruned weights and keep them exactly zero through training.

A mask is a bool tensor shaped like its weight (True = keep). ``apply_masks`` stores it
on the layer as a *non-persistent* buffer named ``weight_keep``, and holds it (see
``_hold``): the mask lives with the parameter, not with one optimiser, so

* pruned weights stay exactly zero through **any** optimiser stepping the parameter,
  including one created after pruning, a resumed one, gradient clipping, weight decay and
  mixed precision: a gradient hook zeroes their gradient after every backward, and torch's
  global optimiser step hook re-zeroes them and the optimiser's state there after every
  step;
* ``model.state_dict()`` keeps the dense model's keys (it loads with ``strict=True`` into a
  fresh dense model, the zeros travelling in the weights); the mask travels as packed bits
  in the state_dict's per-layer metadata, which ``gp.load_state_dict`` reads back;
* ``copy.deepcopy(model)``, pickling and ``model.to(device)`` carry the masks along, and a
  deep copy holds its own masks at once (an unpickled model from its first step);
* there is no ``weight_orig`` copy and no float mask, unlike ``torch.nn.utils.prune``.

A layer already pruned with ``torch.nn.utils.prune`` (it has a ``weight_orig`` parameter and
a pruning forward pre-hook that recomputes ``weight``) is masked through ``weight_orig``, the
tensor the optimiser actually updates, so both masks hold together.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ._hold import (
    MASK_BUFFER,
    hold_module,
    hold_pending,
    refresh_derived_weight,
    release_module,
    trained_weight,
    unpack_bits,
    zero_pruned,
)
from ._validate import check_exclude, check_masks_match, check_min_density, excluded_names
from .layers import (
    WRAPPER_ATTRIBUTES,
    canonical_names,
    prunable_modules,
    prunable_weights,
    wrapper_prefix,
)

__all__ = [
    "MASK_BUFFER",
    "apply_masks",
    "current_masks",
    "enforce_masks",
    "hold_masks",
    "load_state_dict",
    "mask_overlap",
    "refresh_derived_weight",
    "remove_masks",
    "sparsity",
    "sparsity_report",
    "trained_weight",
]


def current_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Return ``{name: bool mask}`` for every prunable weight that has a mask applied."""
    return {
        name: module._buffers[MASK_BUFFER]
        for name, module in prunable_modules(model).items()
        if module._buffers.get(MASK_BUFFER) is not None
    }


def enforce_masks(model: nn.Module) -> None:
    """Re-zero every pruned weight now, all layers in one fused ``_foreach_mul_``.

    Not needed in training (held masks re-zero after every optimiser step); useful after
    writing into the weights by hand.
    """
    zero_pruned(m for m in prunable_modules(model).values() if MASK_BUFFER in m._buffers)


def hold_masks(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> None:
    """Make sure every mask on ``model`` is held; clear ``optimizer``'s state at pruned entries.

    Rarely needed: ``apply_masks``, ``gp.load`` and ``gp.load_state_dict`` hold the masks
    they set, and a copied model holds its own masks. Holding is not
    tied to ``optimizer``: every optimiser, now or later, respects held masks. Given, the
    optimiser's state (momentum, Adam moments) is zeroed at pruned entries right away
    (it would be at its next step anyway). Calling it again changes nothing.
    """
    hold_pending()
    masked = [m for m in prunable_modules(model).values() if MASK_BUFFER in m._buffers]
    for module in masked:
        hold_module(module)
    if optimizer is not None:
        zero_pruned(masked, optimizer)


@torch.no_grad()
def apply_masks(
    model: nn.Module,
    masks: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer | None = None,
    *,
    exclude: str | Sequence[str] = (),
    min_density: float = 0.0,
) -> nn.Module:
    """Zero pruned weights and keep them exactly zero from now on, with any optimiser.

    Args:
        model: the model to prune, on any device; changed in place. A wrapped model
            (``torch.compile(model)``, DDP) works too.
        masks: dict name → bool tensor shaped like the weight (True = keep), for all
            prunable weights or a subset of them (``gp.global_masks`` gives such a dict).
            Names may carry a wrapper's ``_orig_mod.`` / ``module.`` prefix or not.
            Layers without an entry are left as they are (dense, or with the mask they
            already had). 0/1 tensors are accepted and converted. Masks combine with any
            already applied: a weight once pruned stays pruned.
        optimizer: optional and not needed: masks hold through every optimiser (see the
            module docstring). Given, its state (momentum, Adam moments) is zeroed at
            pruned entries now rather than at its next step.
        exclude: parameter-name patterns (fnmatch-style, e.g. ``"fc3.weight"``,
            ``"classifier.*"``) of layers that are not masked: their entries in ``masks``
            are ignored and they stay as they are. A pattern matching no name raises.
        min_density: refuse (``ValueError``, nothing changed) masks that would leave any
            masked layer keeping less than this fraction of its weights.

    After this, a gradient hook on each masked weight zeroes its gradient at pruned
    entries after every backward (so ``clip_grad_norm_`` does not count them), and torch's
    global optimiser step hook re-zeroes the weights and any optimiser's state there after
    every step. A layer already under ``torch.nn.utils.prune`` is masked through its
    ``weight_orig`` (the parameter the optimiser updates); its own ``weight_mask`` stays in
    force too.

    Returns:
        the same model, for chaining.

    Raises:
        ValueError: if a mask names no prunable weight, has the wrong shape or is not
            0/1, if a pattern matches nothing, or if a layer would fall below
            ``min_density``; nothing is changed then.
    """
    modules = prunable_modules(model)
    masks = canonical_names(masks, modules)
    check_masks_match(masks, prunable_weights(model), partial=True)
    min_density = check_min_density(min_density)
    skipped = excluded_names(modules, check_exclude(exclude))
    combined = {}
    for name, mask in masks.items():
        if name in skipped:
            continue
        module = modules[name]
        mask = mask.to(device=module.weight.device, dtype=torch.bool)
        old = module._buffers.get(MASK_BUFFER)
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
        hold_module(modules[name])
    zero_pruned([modules[name] for name in combined], optimizer)
    return model


def remove_masks(model: nn.Module) -> nn.Module:
    """Forget the masks: no hook and no reference to the model is left behind.

    The zeros stay in the weights, but training may revive them.
    """
    for module in prunable_modules(model).values():
        release_module(module)
        module._buffers.pop(MASK_BUFFER, None)
    return model


def _saved_masks(model: nn.Module, state_dict: Mapping) -> dict[str, torch.Tensor] | None:
    """The masks stored in ``state_dict``'s metadata by ``model.state_dict()``; None if it has none.

    Keyed like ``prunable_weights(model)``; the metadata's module names may carry a
    wrapper's prefix or not.
    """
    metadata = getattr(state_dict, "_metadata", None)
    if metadata is None:
        return None
    weights = prunable_weights(model)
    packed = {
        (f"{path}.weight" if path else "weight"): entry[MASK_BUFFER]
        for path, entry in metadata.items()
        if isinstance(entry, Mapping) and MASK_BUFFER in entry
    }
    masks = {}
    for name, bits in canonical_names(packed, weights).items():
        weight = weights.get(name)
        if weight is None:
            raise ValueError(
                f"the checkpoint holds a mask for {name!r}, which this model has no prunable "
                f"weight for (its prunable weights are {list(weights)}). Load it into the "
                "architecture it was saved from."
            )
        if (
            not isinstance(bits, torch.Tensor)
            or bits.dtype != torch.uint8
            or bits.numel() != (weight.numel() + 7) // 8
        ):
            raise ValueError(
                f"the checkpoint's mask for {name!r} does not fit the weight of shape "
                f"{tuple(weight.shape)}; load it into the architecture it was saved from."
            )
        masks[name] = unpack_bits(bits.to(weight.device), weight.shape)
    return masks


def load_state_dict(model: nn.Module, state_dict: Mapping, *, strict: bool = True):
    """Load ``model.state_dict()`` of a pruned model into ``model``, masks included.

    The masks ``model.state_dict()`` recorded (packed bits in the state_dict's metadata,
    kept by ``torch.save``/``torch.load``) replace any masks on ``model``, and are held,
    so training resumed with any optimiser keeps exactly the saved sparsity. A checkpoint
    of an unpruned model leaves ``model`` without masks. Plain ``model.load_state_dict``
    still works on the same checkpoint (the keys are the dense model's) but restores no
    masks. Keys may carry a wrapper's prefix (``_orig_mod.``, ``module.``) that ``model``
    lacks, or the other way round.

    Args:
        model: the model to load into, of the architecture the checkpoint came from.
        state_dict: what ``model.state_dict()`` returned (directly or via ``torch.load``).
        strict: as in ``nn.Module.load_state_dict``.

    Returns:
        ``nn.Module.load_state_dict``'s named tuple of missing and unexpected keys.

    Raises:
        ValueError: keys, shapes or masks that do not fit ``model`` (checked before
            anything is written, so ``model`` is unchanged).

    Warns:
        UserWarning: when ``state_dict`` carries no metadata at all (it was rebuilt as a
            plain dict or went through a format without it, e.g. safetensors): no masks
            can be restored then; re-apply them with ``gp.apply_masks``.
    """
    masks = _saved_masks(model, state_dict)
    if masks is None:
        warnings.warn(
            "this state_dict carries no metadata (rebuilt as a plain dict, or saved in a "
            "format without it), so it holds no masks: the model loads without masks. "
            "Save with torch.save(model.state_dict(), path), or re-apply the masks with "
            "gp.apply_masks(model, masks).",
            stacklevel=2,
        )
    target = model.state_dict()
    saved_prefix, prefix = _shared_wrapper_prefix(state_dict), wrapper_prefix(model)
    renamed = {prefix + key[len(saved_prefix) :]: value for key, value in state_dict.items()}
    missing = sorted(set(target) - set(renamed))
    unexpected = sorted(set(renamed) - set(target))
    if strict and (missing or unexpected):
        raise ValueError(
            f"the state_dict does not fit this model: missing {missing}, unexpected "
            f"{unexpected}. Load it into the architecture it was saved from, or pass "
            "strict=False."
        )
    for key in set(renamed) & set(target):
        value = renamed[key]
        if isinstance(value, torch.Tensor) and value.shape != target[key].shape:
            raise ValueError(
                f"{key} has shape {tuple(value.shape)} in the state_dict but "
                f"{tuple(target[key].shape)} in the model."
            )
    result = model.load_state_dict(renamed, strict=strict)
    remove_masks(model)
    if masks:
        apply_masks(model, masks)
    return result


def _shared_wrapper_prefix(keys) -> str:
    """The wrapper prefix (``_orig_mod.``, ``module.``, …) that every one of ``keys`` has."""
    keys, prefix = list(keys), ""
    while keys:
        head = keys[0].partition(".")[0]
        if head not in WRAPPER_ATTRIBUTES or not all(k.startswith(f"{head}.") for k in keys):
            break
        prefix, keys = f"{prefix}{head}.", [k[len(head) + 1 :] for k in keys]
    return prefix


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
