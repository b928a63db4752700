"""Which parameters are prunable, and how to find them by name.

Prunable means the ``weight`` of every module whose type is in ``PRUNABLE_TYPES``:
``nn.Linear`` (``nn.MultiheadAttention.out_proj`` included), ``nn.Conv1d/2d/3d``,
``nn.ConvTranspose1d/2d/3d`` and ``nn.Embedding``. Biases, normalisation layers and every
other parameter are left alone; the weights of ``NOT_PRUNABLE_TYPES`` (recurrent layers,
``nn.Bilinear``, ``nn.EmbeddingBag``, the input projection of ``nn.MultiheadAttention``)
are left dense with a warning.

Everything in gradprune-lite is keyed by the parameter name from
``model.named_parameters()`` (for example ``"fc1.weight"``), so a user can print any dict
we return and understand it. A weight shared by several layers (tied weights,
``dec.weight = enc.weight``) is one entry, keyed by its first name.
"""

from __future__ import annotations

import warnings

from torch import nn

#: Module types whose ``weight`` gradprune-lite prunes and scores.
PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.Embedding,
)

#: Module types with weights that are *not* pruned (a warning names them when present).
NOT_PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (
    nn.RNNBase,
    nn.Bilinear,
    nn.EmbeddingBag,
    nn.MultiheadAttention,
)


def _weight_key(module_name: str) -> str:
    return f"{module_name}.weight" if module_name else "weight"


def prunable_groups(model: nn.Module) -> dict[str, list[nn.Module]]:
    """Return ``{"<first module>.weight": [every prunable module holding that weight]}``.

    Keyed by identity: a weight shared by several modules (tied weights) is one entry whose
    list holds every module that uses it, first-named first. A module registered under two
    names appears once. Raises ``ValueError`` when the model has no prunable layer.
    """
    groups: dict[str, list[nn.Module]] = {}
    key_of_weight: dict[int, str] = {}
    skipped = []
    for name, module in model.named_modules():
        if isinstance(module, PRUNABLE_TYPES):
            key = key_of_weight.setdefault(id(module.weight), _weight_key(name))
            groups.setdefault(key, []).append(module)
        elif isinstance(module, NOT_PRUNABLE_TYPES):
            skipped.append(f"{name or type(model).__name__} ({type(module).__name__})")
    if not groups:
        raise ValueError(
            f"{type(model).__name__} has no prunable layers: gradprune-lite prunes the weights "
            f"of {', '.join(t.__name__ for t in PRUNABLE_TYPES)} modules, and this model "
            "contains none of them."
        )
    if skipped:
        warnings.warn(
            f"gradprune-lite leaves these layers' own weights dense (not prunable): "
            f"{', '.join(skipped)}. Only the weights of {[t.__name__ for t in PRUNABLE_TYPES]} "
            "modules are scored and pruned (an attention layer's out_proj is an nn.Linear).",
            stacklevel=3,
        )
    return groups


def prunable_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Return ``{"<module>.weight": module}`` for every prunable weight, in model order.

    A tied weight appears once, with the first module that holds it.
    Raises ``ValueError`` when the model has none.
    """
    return {name: modules[0] for name, modules in prunable_groups(model).items()}


def prunable_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """Return ``{name: weight}`` for every prunable weight, in model order (tied once)."""
    return {name: module.weight for name, module in prunable_modules(model).items()}
