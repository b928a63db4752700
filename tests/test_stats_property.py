"""Property test: gradient_stats equals torch.func on randomly generated small networks."""

from __future__ import annotations

import torch
from func_reference import assert_stats_match, per_sample_reference
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import gradprune_lite as gp

ACTIVATIONS = {
    "relu": lambda: nn.ReLU(),
    "relu_inplace": lambda: nn.ReLU(inplace=True),
    "tanh": lambda: nn.Tanh(),
    "none": lambda: nn.Identity(),
    "leaky_inplace": lambda: nn.LeakyReLU(0.1, inplace=True),
}


@st.composite
def networks(draw):
    """(model, batches): a Conv2d stack (maybe empty), then a Linear stack, random sizes."""
    seed = draw(st.integers(0, 2**16))
    torch.manual_seed(seed)
    in_channels, in_size = draw(st.integers(1, 3)), draw(st.integers(4, 7))
    channels, size = in_channels, in_size
    layers: list[nn.Module] = []
    for _ in range(draw(st.integers(0, 2))):
        out = draw(st.integers(1, 4))
        groups = draw(st.sampled_from([g for g in (1, 2) if channels % g == 0 and out % g == 0]))
        kernel, stride = draw(st.integers(1, 3)), draw(st.integers(1, 2))
        padding = draw(st.integers(0, 1))
        size_after = (size + 2 * padding - kernel) // stride + 1
        if size_after < 1:
            break
        layers.append(nn.Conv2d(channels, out, kernel, stride, padding, groups=groups))
        layers.append(ACTIVATIONS[draw(st.sampled_from(sorted(ACTIVATIONS)))]())
        channels, size = out, size_after
    layers.append(nn.Flatten())
    width = channels * size * size
    for _ in range(draw(st.integers(0, 2))):
        out = draw(st.integers(1, 6))
        layers.append(nn.Linear(width, out, bias=draw(st.booleans())))
        layers.append(ACTIVATIONS[draw(st.sampled_from(sorted(ACTIVATIONS)))]())
        width = out
    classes = draw(st.integers(2, 4))
    layers.append(nn.Linear(width, classes))
    g = torch.Generator().manual_seed(seed)
    sizes = draw(st.lists(st.integers(1, 5), min_size=1, max_size=2))
    batches = [
        (
            torch.randn(n, in_channels, in_size, in_size, generator=g),
            torch.randint(0, classes, (n,), generator=g),
        )
        for n in sizes
    ]
    return nn.Sequential(*layers), batches


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks())
def test_gradient_stats_equal_torch_func_on_random_networks(network):
    model, batches = network
    stats = gp.gradient_stats(model, batches)
    assert list(stats) == list(gp.prunable_weights(model))
    assert_stats_match(stats, per_sample_reference(model, batches), rtol=1e-4, atol=1e-6)
