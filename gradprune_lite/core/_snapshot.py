"""Undo for ``gp.prune``: save what a failed run could have changed, and put it back.

``prune`` changes the model over several rounds and calls user code (``between``, custom
criteria) in between, so an error can come after some rounds were applied. A snapshot
taken before the first round makes the whole call all-or-nothing: parameters (values and
``.grad``), buffers (masks and BatchNorm statistics included), train/eval flags, the
optimiser's state and hyper-parameters, and which layers' masks are held.

Tensors are restored *in place* where they still exist, so references held elsewhere (an
optimiser's parameter list, a user's variable) see the old values again. The snapshot
holds one copy of every parameter, buffer and optimiser state tensor: beside it by default,
or in host memory (``gp.prune(..., snapshot_device="cpu")``) to keep a GPU's memory free.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from ._hold import MASK_BUFFER, hold_module, refresh_derived_weight, release_module


def _saved(value, device: torch.device | None = None):
    """A copy of ``value``: a tensor beside itself, or on ``device`` when one is given."""
    if not isinstance(value, torch.Tensor):
        return copy.deepcopy(value)
    if device is None:
        return value.detach().clone()
    return value.detach().to(device, copy=True)


def _snapshot_device(device) -> torch.device | None:
    if device is None:
        return None
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(
            f"snapshot_device must be None (keep the copy beside each tensor) or a device "
            f"such as 'cpu', got {device!r}."
        ) from error


def _restore_value(original, saved):
    """Write ``saved`` back into ``original`` (in place for a tensor); return the result."""
    if isinstance(original, torch.Tensor) and isinstance(saved, torch.Tensor):
        with torch.no_grad():
            original.copy_(saved)
        return original
    return saved


def snapshot(
    model: nn.Module, optimizer: torch.optim.Optimizer | None, device=None
) -> Callable[[], None]:
    """Save the state of ``model`` (and ``optimizer``); return a function restoring it.

    ``device``: where the saved tensors live (None: beside each tensor; ``"cpu"`` keeps a
    GPU's memory free at the cost of copying everything to the host now).
    """
    device = _snapshot_device(device)
    params = [(p, _saved(p, device), p.grad, _saved(p.grad, device)) for p in model.parameters()]
    modules = list(model.modules())
    buffers = [
        (m, {name: (b, _saved(b, device)) for name, b in m._buffers.items()}, m.training)
        for m in modules
    ]
    if optimizer is not None:
        state = {
            param: {key: (value, _saved(value, device)) for key, value in entry.items()}
            for param, entry in optimizer.state.items()
        }
        groups = [
            {k: _saved(v) for k, v in g.items() if k != "params"} for g in optimizer.param_groups
        ]

    def restore() -> None:
        with torch.no_grad():
            for param, value, grad, saved_grad in params:
                param.copy_(value)
                param.grad = None if grad is None else _restore_value(grad, saved_grad)
        for module, saved_buffers, training in buffers:
            module._buffers.clear()
            for name, (original, value) in saved_buffers.items():
                module._buffers[name] = _restore_value(original, value)
            module.training = training
        for module in modules:
            # Hooks follow the restored masks: layers masked during the failed run let go.
            if MASK_BUFFER in module._buffers:
                hold_module(module)
            elif hasattr(module, "weight"):
                release_module(module)
            refresh_derived_weight(module)
        if optimizer is None:
            return
        optimizer.state.clear()
        for param, entry in state.items():
            optimizer.state[param] = {
                key: _restore_value(original, value) for key, (original, value) in entry.items()
            }
        for group, saved_group in zip(optimizer.param_groups, groups):
            group.update({k: copy.deepcopy(v) for k, v in saved_group.items()})

    return restore
