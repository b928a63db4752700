"""Exercise 8: Taylor importance of conv1's channels, and removing one channel by hand."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from ...experiment.models import lenet5
from ._common import call, check_tensor, close, self_check


def _batch(seed: int = 12, size: int = 8):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(size, 1, 28, 28, generator=generator), torch.randint(
        10, (size,), generator=generator
    )


def _products(model: nn.Module, inputs, targets) -> tuple[torch.Tensor, torch.Tensor]:
    """g·w of conv1's weight (20×1×5×5) and bias (20), g the mean-loss gradient."""
    model = copy.deepcopy(model)
    model.zero_grad()
    nn.functional.cross_entropy(model(inputs), targets).backward()
    conv = model.conv1
    return (conv.weight.grad * conv.weight).detach(), (conv.bias.grad * conv.bias).detach()


def _scaled(got: torch.Tensor, want: torch.Tensor) -> bool:
    """``got`` equals ``want`` times one positive factor (least squares), within 1e-4."""
    factor = float(got.double() @ want.double() / (want.double() @ want.double()))
    return factor > 0 and close(got, factor * want, rtol=1e-4, atol=1e-12 * factor)


@self_check
def check_channel_importance(channel_importance: Callable) -> bool:
    """Check ``channel_importance(model, inputs, targets) -> (20,)``: (Σ_group g·w)² per channel.

    The group of channel c is conv1.weight[c] (25 entries) and conv1.bias[c]; g is the
    gradient of the mean cross-entropy on the batch. Accepted too: the same importances times
    one positive factor, such as the N² that a sum-reduced loss gives (its gradient is N
    times the mean's); the importances only rank the channels. Not accepted: other
    orderings, since |Σ g·w| ranks like (Σ g·w)² but leaving out the bias may too, on 20
    channels, and the check could not tell them apart. The model comes with old gradients
    in ``.grad``, as after training, so forgetting ``zero_grad`` shows.
    """
    model = lenet5(seed=3)
    inputs, targets = _batch()
    weight_gw, bias_gw = _products(model, inputs, targets)
    want = (weight_gw.sum(dim=(1, 2, 3)) + bias_gw).square()
    generator = torch.Generator().manual_seed(14)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=generator)
    got = call(channel_importance, "channel_importance", model, inputs, targets)
    got = check_tensor(got, (20,), "channel_importance")
    if _scaled(got, want):
        return
    fresh = lenet5(seed=3)
    again = check_tensor(
        call(channel_importance, "channel_importance", fresh, inputs, targets),
        (20,),
        "channel_importance",
    )
    assert not _scaled(again, want), (
        "Your result includes the model's old gradients: call model.zero_grad() first."
    )
    signed = weight_gw.sum(dim=(1, 2, 3)) + bias_gw
    assert not _scaled(got, signed) and not _scaled(got, signed.abs()), (
        "Square the group sum: (Σ g·w)²."
    )
    assert not bool((got < 0).any()), "Importances are squares, (Σ g·w)² ≥ 0; yours are negative."
    assert not _scaled(got, weight_gw.square().sum(dim=(1, 2, 3)) + bias_gw.square()), (
        "That is Σ (g·w)²; the importance squares the *sum* over the group, (Σ g·w)²."
    )
    assert not _scaled(got, weight_gw.sum(dim=(1, 2, 3)).square()), (
        "The bias is part of the channel's group: add conv1.bias[c]'s g·w."
    )
    raise AssertionError("channel_importance differs from (Σ over the group of g·w)².")


@self_check
def check_remove_conv1_channel(remove_conv1_channel: Callable) -> bool:
    """Check ``remove_conv1_channel(model, c) -> smaller model`` (LeNet-5, conv1 20 → 19).

    Reference: the original model with channel c's weight and bias set to 0 computes the
    same function (ReLU and max-pool keep a zero map at zero, so conv2 gets nothing from it).
    """
    model = lenet5(seed=4)
    inputs, _ = _batch(seed=13)
    before = copy.deepcopy(model.state_dict())
    for c in (0, 7, 19):
        smaller = call(remove_conv1_channel, "remove_conv1_channel", model, c)
        unchanged = all(torch.equal(before[k], v) for k, v in model.state_dict().items())
        assert unchanged, "Your function changed the input model: work on a copy."
        check_tensor(smaller.conv1.weight, (19, 1, 5, 5), "conv1.weight")
        check_tensor(smaller.conv1.bias, (19,), "conv1.bias")
        check_tensor(smaller.conv2.weight, (50, 19, 5, 5), "conv2.weight (its input channels)")
        zeroed = copy.deepcopy(model)
        with torch.no_grad():
            zeroed.conv1.weight[c] = 0
            zeroed.conv1.bias[c] = 0
            want, got = zeroed(inputs), smaller(inputs)
        if close(got, want, rtol=1e-4, atol=1e-5):
            continue
        for other in (c - 1, c + 1):
            if 0 <= other < 20:
                wrong = copy.deepcopy(model)
                with torch.no_grad():
                    wrong.conv1.weight[other] = 0
                    wrong.conv1.bias[other] = 0
                    assert not close(got, wrong(inputs), rtol=1e-4, atol=1e-5), (
                        f"You removed channel {other}, not {c}: check the indexing."
                    )
        raise AssertionError(
            f"Removing channel {c} changed the outputs: drop conv1.weight[c], conv1.bias[c] "
            "and conv2.weight[:, c] (conv2's input channel), nothing else."
        )
