"""Exercise 10: a lottery ticket (rewound to its initial weights), a fair control, retraining.

The fair control keeps the ticket's mask and biases and draws new surviving weights at the
scale a unit's surviving fan-in needs: std σ·√(fan_in / surviving fan_in of that unit), σ
the layer's initial std, so each unit's input variance is what the dense initialisation
gave. The retraining check compares with ``torch.optim.SGD`` run by the check itself.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch

from ...core.masks import apply_masks, current_masks
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


def _row_scale(init: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """σ·√(fan_in / surviving fan_in) per output unit, shaped (out, 1); 0 where none survive."""
    fan_in = mask.sum(dim=1, keepdim=True).double()
    scale = init.double().std() * (mask.shape[1] / fan_in.clamp(min=1)).sqrt()
    return torch.where(fan_in > 0, scale, torch.zeros_like(scale))


def _uneven_masks(init_state: dict) -> dict[str, torch.Tensor]:
    """Masks whose units keep very different numbers of inputs (fc1: 392, 98, 24 or 6 of
    784, in turn), so that a per-unit scale is told from a layer-wide or per-column one."""
    generator = torch.Generator().manual_seed(8)
    masks = {}
    for name, value in init_state.items():
        if name.endswith("weight"):
            units, inputs = value.shape
            mask = torch.zeros(units, inputs, dtype=torch.bool)
            for unit in range(units):
                kept = max(1, inputs >> (1 + 2 * (unit % 4)))
                mask[unit, torch.randperm(inputs, generator=generator)[:kept]] = True
            masks[name] = mask
    return masks


@self_check
def check_fair_control(fair_control: Callable) -> bool:
    """Check ``fair_control(init_state, masks, seed) -> LeNet-300-100``: the same mask and
    biases, new surviving weights with std σ·√(fan_in / surviving fan_in) per unit."""
    init_state, _, masks = _setup()
    model = call(fair_control, "fair_control", copy.deepcopy(init_state), masks, 11)
    _held(model, masks, "fair_control")
    state = model.state_dict()
    for name, mask in masks.items():
        new, old = state[name][mask].double(), init_state[name][mask].double()
        assert not torch.equal(new, old), (
            f"{name}: these are the ticket's initial weights; the control draws new ones."
        )
        same_sign = float((new.sign() == old.sign()).double().mean())
        assert same_sign < 0.6, (
            f"{name}: {same_sign:.0%} of the signs are the ticket's; draw fresh signs (keeping "
            "them is Zhou et al.'s sign control, not a random one)."
        )
        assert not torch.allclose(new.abs().sort().values, old.abs().sort().values), (
            f"{name}: the ticket's own values, reshuffled; draw new ones at the fair scale."
        )
        normalised = state[name].double() / _row_scale(init_state[name], mask)
        spread = float(normalised[mask].std())
        assert 0.85 < spread < 1.15, (
            f"{name}: the surviving weights are {spread:.2f}× the fair scale; draw each unit's "
            "with std σ·√(fan_in / its surviving fan_in), σ the layer's initial std."
        )
    for name, value in init_state.items():
        if name not in masks:
            assert torch.equal(state[name], value), (
                f"{name}: keep the initial biases; only the surviving weights are redrawn."
            )
    uneven = _uneven_masks(init_state)
    state = call(fair_control, "fair_control", copy.deepcopy(init_state), uneven, 11).state_dict()
    for name, mask in uneven.items():
        normalised = state[name].double() / _row_scale(init_state[name], mask)
        kept = mask.sum(dim=1)
        for count in kept.unique().tolist():
            group = mask & (kept == count)[:, None]
            if int(group.sum()) < 200:  # too few draws to measure a spread
                continue
            spread = float(normalised[group].std())
            assert 0.85 < spread < 1.15, (
                f"{name}: units that keep {count} inputs get {spread:.2f}× the fair scale; "
                "scale each unit by its own surviving fan-in k_i (mask.sum(1)), not by the "
                "layer's average or a column's."
            )
    state = model.state_dict()
    again = call(fair_control, "fair_control", copy.deepcopy(init_state), masks, 11)
    assert all(torch.equal(again.state_dict()[n], v) for n, v in state.items()), (
        "The same seed must give the same weights: draw from torch.Generator().manual_seed(seed)."
    )
    other = call(fair_control, "fair_control", copy.deepcopy(init_state), masks, 12)
    assert not torch.equal(other.state_dict()["fc1.weight"], state["fc1.weight"]), (
        "Another seed must give other weights."
    )


def _sgd_reference(model, batches, lr, *, momentum=0.9, zero_grad=True, reduction="mean"):
    """One pass of SGD over ``batches``; the keywords make the likely mistakes."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    for images, labels in batches:
        if zero_grad:
            optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(images), labels, reduction=reduction)
        loss.backward()
        optimizer.step()
    return model


@self_check
def check_retrain(retrain: Callable) -> bool:
    """Check ``retrain(model, batches, lr)``: one pass of SGD (momentum 0.9, mean loss)."""
    init_state, _, masks = _setup()
    generator = torch.Generator().manual_seed(13)
    batches = [
        (
            torch.randn(32, 1, 28, 28, generator=generator),
            torch.randint(10, (32,), generator=generator),
        )
        for _ in range(4)
    ]

    def masked():
        model = lenet_300_100()
        model.load_state_dict(init_state)
        apply_masks(model, masks)
        return model

    model = masked()
    result = call(retrain, "retrain", model, iter(batches), 0.05)
    trained = result if isinstance(result, torch.nn.Module) else model
    got = {n: p.detach() for n, p in trained.named_parameters()}
    assert not torch.equal(got["fc2.weight"], init_state["fc2.weight"] * masks["fc2.weight"]), (
        "The weights did not change: call optimizer.step() after each backward."
    )
    for name, mask in masks.items():
        assert bool((got[name][~mask] == 0).all()), f"{name}: a pruned weight came back."

    def same_as(**mistake):
        want = dict(_sgd_reference(masked(), batches, 0.05, **mistake).named_parameters())
        return all(torch.allclose(got[n], want[n].detach(), atol=1e-6) for n in got)

    if same_as():
        return
    assert not same_as(zero_grad=False), (
        "Gradients accumulate across batches: call optimizer.zero_grad() before each backward."
    )
    # A new optimiser per batch steps exactly like momentum 0: its buffer starts afresh.
    assert not same_as(momentum=0.0), (
        "No momentum carried between batches: use momentum 0.9 and create the optimiser "
        "once, before the loop."
    )
    assert not same_as(reduction="sum"), (
        "Use the mean loss over the batch (cross_entropy's default), not the sum."
    )
    raise AssertionError("The weights after one pass differ from SGD (lr, momentum 0.9).")
