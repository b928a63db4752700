"""Exercise 3: an optimiser hook that keeps pruned weights (and their momentum) at zero."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ._common import call, self_check
from ._tiny import tiny_batches, tiny_model


@self_check
def check_mask_hook(keep_pruned_at_zero: Callable) -> bool:
    """Check ``keep_pruned_at_zero(model, masks, optimizer)``.

    After the call, pruned weights (mask False) must be zero and stay zero through SGD
    steps with momentum, and the optimiser's momentum must be zero there too.
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
    inputs, targets = tiny_batches(seed=4, batches=1)[0]
    nn.functional.cross_entropy(model(inputs), targets).backward()
    optimizer.step()
    optimizer.zero_grad()
    call(keep_pruned_at_zero, "keep_pruned_at_zero", model, masks, optimizer)
    for name, mask in masks.items():
        assert bool((params[name][~mask] == 0).all()), (
            f"{name}: pruned weights are not zero right after your call; multiply by the mask."
        )
    for step, (inputs, targets) in enumerate(tiny_batches(seed=5, batches=3)):
        nn.functional.cross_entropy(model(inputs), targets).backward()
        optimizer.step()
        optimizer.zero_grad()
        for name, mask in masks.items():
            assert bool((params[name][~mask] == 0).all()), (
                f"{name}: pruned weights came back after step {step + 1}; their gradient is "
                "not zero, so re-zero them after every step (register_step_post_hook)."
            )
    for name, mask in masks.items():
        momentum = optimizer.state[params[name]].get("momentum_buffer")
        assert momentum is None or bool((momentum[~mask] == 0).all()), (
            f"{name}: the momentum buffer is not zero at pruned entries; zero it in the hook too."
        )
