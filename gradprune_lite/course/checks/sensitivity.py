"""Exercise 6: a per-layer sensitivity scan and per-layer sparsities within a budget."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from ...core.layers import prunable_weights
from ._common import call, self_check
from ._tiny import tiny_batches, tiny_model

LEVELS = [0.3, 0.6, 0.9]


def _prune_layers(model: nn.Module, names, sparsity: float) -> nn.Module:
    """A copy of ``model`` with each layer in ``names`` pruned by magnitude to ``sparsity``."""
    pruned = copy.deepcopy(model)
    params = dict(pruned.named_parameters())
    with torch.no_grad():
        for name in names:
            w = params[name]
            k = round(sparsity * w.numel())
            if k:
                t = w.abs().reshape(-1).kthvalue(k).values
                w.mul_(w.abs() > t)
    return pruned


def _reference_curves(model, levels, error_at):
    names = list(prunable_weights(model))
    return {n: [float(error_at(_prune_layers(model, [n], s))) for s in levels] for n in names}


def _loss_error(inputs, targets):
    def error_at(model):
        with torch.no_grad():
            return 100 * float(nn.functional.cross_entropy(model(inputs), targets))

    return error_at


@self_check
def check_sensitivity_scan(sensitivity_scan: Callable) -> bool:
    """Check ``sensitivity_scan(model, levels, error_at) -> dict name → list of errors``.

    For each prunable weight alone, prune it by magnitude to each level (the other layers
    dense) and record ``error_at(pruned_model)``; ``model`` itself must not change.
    """
    model = tiny_model(seed=8)
    inputs, targets = tiny_batches(seed=9, batches=1, size=64)[0]
    error_at = _loss_error(inputs, targets)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    want = _reference_curves(model, LEVELS, error_at)
    got = call(sensitivity_scan, "sensitivity_scan", model, list(LEVELS), error_at)
    changed = any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not changed, "Your scan changed the model: prune a copy (copy.deepcopy(model))."
    assert isinstance(got, dict) and set(got) == set(want), (
        f"Return a dict with one entry per prunable weight {sorted(want)}."
    )
    for name, errors in want.items():
        assert len(got[name]) == len(LEVELS), f"{name}: one error per level, in the given order."
        values = [float(e) for e in got[name]]
        if all(abs(a - b) < 1e-4 for a, b in zip(values, errors)):
            continue
        together = [float(error_at(_prune_layers(model, want, s))) for s in LEVELS]
        assert not all(abs(a - b) < 1e-4 for a, b in zip(values, together)), (
            "You pruned all layers at once: prune one layer at a time, the others dense."
        )
        raise AssertionError(
            f"{name}: errors {[round(v, 2) for v in values]}, expected "
            f"{[round(v, 2) for v in errors]} (magnitude pruning of this layer alone)."
        )


@self_check
def check_choose_layer_sparsities(choose_layer_sparsities: Callable) -> bool:
    """Check ``choose_layer_sparsities(curves, levels, limit) -> dict name → level | None``.

    Per layer, the rule of Exercise 4: the largest level ``s`` whose error is strictly below
    ``limit`` at ``s`` and at every smaller level (None if the smallest fails).
    """
    levels = [0.5, 0.8, 0.9, 0.95]
    curves = {
        "fc1.weight": [1.5, 1.6, 1.7, 1.9],
        "fc2.weight": [1.5, 1.8, 2.1, 1.9],
        "fc3.weight": [2.5, 2.6, 2.7, 3.0],
        "conv.weight": [1.5, 2.0, 2.0, 3.0],
    }
    want = {"fc1.weight": 0.95, "fc2.weight": 0.8, "fc3.weight": None, "conv.weight": 0.5}
    got = call(choose_layer_sparsities, "choose_layer_sparsities", curves, levels, 2.0)
    assert isinstance(got, dict) and set(got) == set(want), "Return one entry per layer."
    assert got["fc2.weight"] != 0.95, "fc2: 0.9 already failed, so do not take the dip at 0.95."
    assert got["conv.weight"] != 0.9, "conv: an error of exactly 2.0 is not under 2.0."
    assert got["fc3.weight"] is None, "fc3: no level is under the limit, so return None."
    assert got == want, f"expected {want}, got {got}."
    reordered = call(
        choose_layer_sparsities,
        "choose_layer_sparsities",
        {n: c[::-1] for n, c in curves.items()},
        levels[::-1],
        2.0,
    )
    assert reordered == want, "With the levels given in another order the answer must not change."
