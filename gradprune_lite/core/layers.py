"""Which parameters are prunable, and how to find them by name.

Prunable means the ``weight`` of every ``nn.Linear`` and ``nn.Conv2d``; biases and
every other parameter are left alone. Everything in gradprune-lite is keyed by the
parameter name from ``model.named_parameters()`` (for example ``"fc1.weight"``), so a
user can print any dict we return and understand it.
"""

from __future__ import annotations

from torch import nn

PRUNABLE_TYPES = (nn.Linear, nn.Conv2d)


def prunable_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Return ``{"<module>.weight": module}`` for every prunable layer, in model order.

    Raises ``ValueError`` when the model has none.
    """
    found = {
        (f"{name}.weight" if name else "weight"): module
        for name, module in model.named_modules()
        if isinstance(module, PRUNABLE_TYPES)
    }
    if not found:
        raise ValueError(
            f"{type(model).__name__} has no prunable layers: gradprune-lite prunes the weights "
            "of nn.Linear and nn.Conv2d modules, and this model contains neither."
        )
    return found


def prunable_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """Return ``{name: weight}`` for every prunable weight, in model order."""
    return {name: module.weight for name, module in prunable_modules(model).items()}
