"""gp.models: the LeNets and the residual CNN, their weight counts, modes and seeding."""

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
    for build in (gp.models.lenet_300_100, gp.models.lenet5, gp.models.resnet_mnist):
        a, b, c = build(seed=3), build(seed=3), build(seed=4)
        assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
        assert not torch.equal(next(a.parameters()), next(c.parameters()))


def test_seeding_leaves_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    gp.models.lenet5(seed=7)
    gp.models.resnet_mnist(seed=7)
    assert torch.equal(torch.rand(3), expected)


def conv_macs(c_in, c_out, kernel, side):
    """Multiply-accumulates of a convolution producing side × side positions."""
    return c_in * c_out * kernel * kernel * side * side


def test_resnet_mnist_layers_shapes_and_counts():
    model = gp.models.resnet_mnist(seed=0)
    shapes = {n: tuple(w.shape) for n, w in gp.prunable_weights(model).items()}
    assert shapes == {
        "conv1.weight": (16, 1, 3, 3),
        "block1.conv1.weight": (16, 16, 3, 3),
        "block1.conv2.weight": (16, 16, 3, 3),
        "block2.conv1.weight": (32, 16, 3, 3),
        "block2.conv2.weight": (32, 32, 3, 3),
        "block2.shortcut.conv.weight": (32, 16, 1, 1),
        "block3.conv1.weight": (32, 32, 3, 3),
        "block3.conv2.weight": (32, 32, 3, 3),
        "fc.weight": (10, 32),
    }
    assert model.block1.shortcut is None and model.block3.shortcut is None
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert [m.num_features for m in norms] == [16, 16, 16, 32, 32, 32, 32, 32]
    # Weights, BatchNorm's scale and shift (2 per channel) and the head's bias.
    weights = sum(w.numel() for w in gp.prunable_weights(model).values())
    assert sum(p.numel() for p in model.parameters()) == weights + 2 * 208 + 10
    # 28×28 → 14×14 in the stem, 7×7 from block2 on; torch's flop counter agrees.
    macs = (
        conv_macs(1, 16, 3, 14)
        + 2 * conv_macs(16, 16, 3, 14)
        + conv_macs(16, 32, 3, 7)
        + conv_macs(32, 32, 3, 7)
        + conv_macs(16, 32, 1, 7)
        + 2 * conv_macs(32, 32, 3, 7)
        + 32 * 10
    )
    assert gp.model_cost(model.eval(), torch.zeros(1, 1, 28, 28))["macs"] == macs
    assert model(torch.zeros(5, 1, 28, 28)).shape == (5, 10)


def test_resnet_mnist_batchnorm_trains_on_the_batch_and_evaluates_per_digit():
    model = gp.models.resnet_mnist(seed=0)
    digits = gp.mnist("test", limit=8, verbose=False).images
    before = model.bn1.running_mean.clone()
    with torch.no_grad():
        model.train()
        alone, together = model(digits[:1].repeat(2, 1, 1, 1)), model(digits)[:1]
        # Train mode normalises with the batch's statistics and updates the running ones.
        assert not torch.allclose(alone[:1], together, atol=1e-3)
        assert not torch.equal(model.bn1.running_mean, before)
        model.eval()
        running = model.bn1.running_mean.clone()
        # Eval mode: a digit's output does not depend on its batch; nothing is updated.
        torch.testing.assert_close(model(digits[:1]), model(digits)[:1], rtol=0, atol=1e-5)
        assert torch.equal(model.bn1.running_mean, running)
