"""Exercise 10: a lottery ticket (rewound to its initial weights) and its random control."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch

from ...core.masks import current_masks
from ...core.selection import global_masks
from ...experiment.models import lenet_300_100
from ._common import call, self_check


def _setup():
    initial = lenet_300_100(seed=5)
    init_state = copy.deepcopy(initial.state_dict())
    trained = copy.deepcopy(initial)
    generator = torch.Generator().manual_seed(6)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    scores = {n: p.detach().abs() for n, p in trained.named_parameters() if n.endswith("weight")}
    return init_state, trained.state_dict(), global_masks(scores, 0.9)


def _held(model, masks, what: str) -> None:
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        assert bool((params[name].detach()[~mask] == 0).all()), (
            f"{what}: {name} is not zero at pruned entries; apply the masks."
        )
    held = current_masks(model)
    assert set(held) == set(masks) and all(torch.equal(held[n], masks[n]) for n in masks), (
        f"{what}: the masks are not held during training; use gp.apply_masks(model, masks)."
    )


@self_check
def check_rewind(rewind: Callable) -> bool:
    """Check ``rewind(init_state, masks) -> LeNet-300-100``: initial weights, masks held."""
    init_state, trained_state, masks = _setup()
    model = call(rewind, "rewind", copy.deepcopy(init_state), masks)
    state = model.state_dict()
    weight = "fc1.weight"
    assert not torch.allclose(state[weight], trained_state[weight] * masks[weight]), (
        "You kept the trained weights; a ticket rewinds the survivors to their initial values."
    )
    _held(model, masks, "rewind")
    for name, value in init_state.items():
        want = value * masks[name] if name in masks else value
        assert torch.equal(state[name], want), (
            f"{name} is not the initial value (times the mask); load init_state."
        )


@self_check
def check_random_reinit(random_reinit: Callable) -> bool:
    """Check ``random_reinit(masks, seed) -> LeNet-300-100``: fresh weights from ``seed``."""
    init_state, _, masks = _setup()
    model = call(random_reinit, "random_reinit", masks, 11)
    _held(model, masks, "random_reinit")
    state = model.state_dict()
    assert not torch.equal(state["fc1.weight"], init_state["fc1.weight"] * masks["fc1.weight"]), (
        "These are the ticket's initial weights; draw new ones from the given seed."
    )
    again = call(random_reinit, "random_reinit", masks, 11).state_dict()
    assert all(torch.equal(again[n], v) for n, v in state.items()), (
        "The same seed must give the same weights: gp.models.lenet_300_100(seed=seed)."
    )
    fresh = lenet_300_100(seed=11).state_dict()
    for name, value in fresh.items():
        want = value * masks[name] if name in masks else value
        assert torch.equal(state[name], want), (
            f"{name}: use the default initialisation, gp.models.lenet_300_100(seed=seed)."
        )
