"""Exercise 3: an optimiser hook that keeps pruned weights (and their momentum) at zero."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from ._common import call, close, self_check
from ._tiny import tiny_batches, tiny_model


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, inputs, targets) -> None:
    nn.functional.cross_entropy(model(inputs), targets).backward()
    optimizer.step()
    optimizer.zero_grad()


@torch.no_grad()
def _zero_pruned(params: dict, optimizer: torch.optim.Optimizer, masks: dict) -> None:
    """What a correct hook leaves: pruned weights and their momentum at 0, the rest as is."""
    for name, mask in masks.items():
        params[name].mul_(mask)
        momentum = optimizer.state[params[name]].get("momentum_buffer")
        if momentum is not None:
            momentum.mul_(mask)


@self_check
def check_mask_hook(keep_pruned_at_zero: Callable) -> bool:
    """Check ``keep_pruned_at_zero(model, masks, optimizer)``.

    After the call, pruned weights (mask False) must be zero and stay zero through SGD
    steps with momentum, and the optimiser's momentum must be zero there too. Kept weights
    (and biases) must train exactly as SGD with momentum trains them in a reference copy
    that the check re-zeroes by hand after each step, momentum included: a hook that
    zeroes too much, resets the optimiser or swaps the parameters for new ones fails.
    """
    model = tiny_model(seed=2)
    params = dict(model.named_parameters())
    generator = torch.Generator().manual_seed(3)
    masks = {
        name: torch.rand(p.shape, generator=generator) > 0.5
        for name, p in params.items()
        if name.endswith("weight")
    }
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    # One step before pruning fills the momentum buffers, as in training then pruning.
    _step(model, optimizer, *tiny_batches(seed=4, batches=1)[0])
    # The reference: a deep copy of both, so its optimiser steps its own copy's parameters.
    ref_model, ref_optimizer = copy.deepcopy((model, optimizer))
    ref_params = dict(ref_model.named_parameters())
    _zero_pruned(ref_params, ref_optimizer, masks)
    call(keep_pruned_at_zero, "keep_pruned_at_zero", model, masks, optimizer)
    replaced = [n for n, q in model.named_parameters() if q is not params.get(n)]
    assert not replaced, (
        f"{replaced[0]} is a new Parameter; the optimiser still steps the old one: change "
        "the weights in place (weight.mul_(mask) under torch.no_grad())."
    )
    for name, mask in masks.items():
        assert bool((params[name][~mask] == 0).all()), (
            f"{name}: pruned weights are not zero right after your call; multiply by the mask."
        )
        assert bool((params[name][mask] != 0).any()), (
            f"{name}: your call zeroed the kept weights too; True in the mask means keep."
        )
    for step, (inputs, targets) in enumerate(tiny_batches(seed=5, batches=3), start=1):
        before = {name: p.detach().clone() for name, p in params.items()}
        _step(model, optimizer, inputs, targets)
        _step(ref_model, ref_optimizer, inputs, targets)
        _zero_pruned(ref_params, ref_optimizer, masks)
        for name, mask in masks.items():
            assert bool((params[name][~mask] == 0).all()), (
                f"{name}: pruned weights came back after step {step}; their gradient is "
                "not zero, so re-zero them after every step (register_step_post_hook)."
            )
        kept = {
            name: masks.get(name, torch.ones_like(p, dtype=torch.bool))
            for name, p in params.items()
        }
        wrong = [
            name
            for name, p in params.items()
            if not close(p.detach()[kept[name]], ref_params[name].detach()[kept[name]], 1e-5, 1e-7)
        ]
        for name in wrong:
            assert bool(params[name].detach()[kept[name]].ne(0).any()), (
                f"{name}: kept entries are zero after step {step}; your hook zeroes every "
                "weight: multiply by the mask, True = keep."
            )
        for name in wrong:
            p, got = params[name], params[name].detach()[kept[name]]
            assert not torch.equal(got, before[name][kept[name]]), (
                f"{name}: kept weights stopped training at step {step}; the optimiser must "
                "still update the same parameter objects (change values in place)."
            )
            momentum = optimizer.state.get(p, {}).get("momentum_buffer")
            assert momentum is not None and bool(momentum[kept[name]].ne(0).any()), (
                f"{name}: the momentum of kept weights was lost; clear the buffer only at "
                "pruned entries (buffer.mul_(mask)), never the whole optimiser state."
            )
            raise AssertionError(
                f"{name}: kept weights train differently from SGD with momentum after step "
                f"{step}; change only the pruned entries, weights and momentum."
            )
    for name, mask in masks.items():
        momentum = optimizer.state[params[name]].get("momentum_buffer")
        assert momentum is None or bool((momentum[~mask] == 0).all()), (
            f"{name}: the momentum buffer is not zero at pruned entries; zero it in the hook too."
        )
        want = ref_optimizer.state[ref_params[name]]["momentum_buffer"]
        assert momentum is not None and close(momentum[mask], want[mask], rtol=1e-5, atol=1e-7), (
            f"{name}: the momentum of kept weights differs from SGD's; do not rescale or reset it."
        )
