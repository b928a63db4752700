"""gp.models: the LeNet architectures, their weight counts and seeding."""

from __future__ import annotations

import torch

import gradprune_lite as gp


def test_lenet_300_100_layers_and_weight_count():
    model = gp.models.lenet_300_100(seed=0)
    weights = gp.prunable_weights(model)
    assert list(weights) == ["fc1.weight", "fc2.weight", "fc3.weight"]
    assert sum(w.numel() for w in weights.values()) == 784 * 300 + 300 * 100 + 100 * 10
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_lenet5_is_the_caffe_variant():
    model = gp.models.lenet5(seed=0)
    weights = gp.prunable_weights(model)
    assert {n: tuple(w.shape) for n, w in weights.items()} == {
        "conv1.weight": (20, 1, 5, 5),
        "conv2.weight": (50, 20, 5, 5),
        "fc1.weight": (500, 800),
        "fc2.weight": (10, 500),
    }
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_same_seed_same_weights_different_seed_different_weights():
    for build in (gp.models.lenet_300_100, gp.models.lenet5):
        a, b, c = build(seed=3), build(seed=3), build(seed=4)
        assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
        assert not torch.equal(next(a.parameters()), next(c.parameters()))


def test_seeding_leaves_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    gp.models.lenet5(seed=7)
    assert torch.equal(torch.rand(3), expected)
