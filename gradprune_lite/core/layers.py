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

Names are those of the plain model even when it is wrapped: ``torch.compile(model)`` names
its parameters ``_orig_mod.fc1.weight`` and DDP ``module.fc1.weight``, and we key both as
``fc1.weight``, so scores and masks move freely between a model and its wrapped twin.
``canonical_names`` accepts dicts keyed either way.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping

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


#: Attributes through which wrappers hold the model: ``torch.compile``'s OptimizedModule
#: (``_orig_mod``), ``DistributedDataParallel`` and ``DataParallel`` (``module``).
WRAPPER_ATTRIBUTES = ("_orig_mod", "module")


def wrapper_prefix(model: nn.Module) -> str:
    """The name prefix a wrapper adds, e.g. ``"_orig_mod."`` or ``"_orig_mod.module."``.

    A wrapper is a module whose only child is ``_orig_mod`` or ``module`` and which has no
    parameters of its own; any other model gets ``""``, so no user layer that happens to
    be called ``module`` is ever renamed.
    """
    prefix = ""
    while True:
        children = dict(model.named_children())
        if len(children) != 1 or next(model.parameters(recurse=False), None) is not None:
            return prefix
        ((name, inner),) = children.items()
        if name not in WRAPPER_ATTRIBUTES:
            return prefix
        prefix, model = f"{prefix}{name}.", inner


def canonical_names(mapping: Mapping[str, object], known: Iterable[str]) -> dict[str, object]:
    """``mapping`` with keys written with a wrapper's prefixes renamed to ``known`` names.

    A key not in ``known`` loses leading ``_orig_mod.`` / ``module.`` segments until it is;
    keys that match nothing either way are kept as they are (the caller's check names them).
    Raises ``ValueError`` when two keys name the same weight.
    """
    known = set(known)
    renamed: dict[str, object] = {}
    for name, value in mapping.items():
        candidate = name
        while candidate not in known:
            head, dot, rest = candidate.partition(".")
            if head not in WRAPPER_ATTRIBUTES or not dot:
                candidate = name
                break
            candidate = rest
        if candidate in renamed:
            raise ValueError(
                f"{name!r} and another key both name {candidate!r} (one with a wrapper's "
                "'_orig_mod.' or 'module.' prefix): give each weight once."
            )
        renamed[candidate] = value
    return renamed


def _weight_key(module_name: str) -> str:
    return f"{module_name}.weight" if module_name else "weight"


def prunable_groups(model: nn.Module) -> dict[str, list[nn.Module]]:
    """Return ``{"<first module>.weight": [every prunable module holding that weight]}``.

    Names are the plain model's (see ``wrapper_prefix``). Keyed by identity: a weight
    shared by several modules (tied weights) is one entry whose list holds every module
    that uses it, first-named first. A module registered under two
    names appears once. Raises ``ValueError`` when the model has no prunable layer.
    """
    groups: dict[str, list[nn.Module]] = {}
    key_of_weight: dict[int, str] = {}
    skipped = []
    prefix = wrapper_prefix(model)
    for name, module in model.named_modules():
        name = name[len(prefix) :] if name.startswith(prefix) else name
        if prefix and name == prefix[:-1]:  # the wrapped model itself, e.g. DDP(nn.Linear)
            name = ""
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
