"""gp.model_cost: parameters, MACs and checkpoint bytes against hand-counted figures."""

from __future__ import annotations

import torch

import gradprune_lite as gp

# LeNet-300-100 by hand: 784·300 + 300·100 + 100·10 weights, 300 + 100 + 10 biases.
LENET300_WEIGHTS = 784 * 300 + 300 * 100 + 100 * 10
LENET300_BIASES = 300 + 100 + 10
# LeNet-5 by hand: conv1 20 maps of 24×24 from 5×5 kernels, conv2 50 maps of 8×8 from
# 20×5×5 kernels, then 800·500 and 500·10.
LENET5_MACS = 20 * 24 * 24 * 25 + 50 * 8 * 8 * 20 * 25 + 800 * 500 + 500 * 10


def test_dense_lenet_300_100_by_hand():
    model = gp.models.lenet_300_100(seed=0)
    cost = gp.model_cost(model, torch.zeros(1, 1, 28, 28))
    assert cost["params_dense"] == LENET300_WEIGHTS + LENET300_BIASES == 266_610
    assert cost["params"] == cost["params_dense"]
    assert cost["macs"] == LENET300_WEIGHTS == 266_200
    assert cost["checkpoint_bytes"] == gp.checkpoint_sizes(model)["sparse_bytes"]


def test_macs_scale_with_the_batch_and_count_convolutions():
    model = gp.models.lenet5(seed=0)
    assert gp.model_cost(model, torch.zeros(1, 1, 28, 28))["macs"] == LENET5_MACS
    assert gp.model_cost(model, torch.zeros(4, 1, 28, 28))["macs"] == 4 * LENET5_MACS


def test_masked_model_counts_nonzero_params_and_dense_macs():
    model = gp.models.lenet_300_100(seed=0)
    masks = gp.global_masks(gp.score(model, "magnitude"), 0.9)
    gp.apply_masks(model, masks)
    kept = sum(int(m.sum()) for m in masks.values())
    cost = gp.model_cost(model, torch.zeros(1, 784))
    assert cost["params"] == kept + LENET300_BIASES
    assert cost["params_dense"] == 266_610 and cost["macs"] == 266_200
    assert cost["checkpoint_bytes"] < gp.checkpoint_sizes(model)["dense_bytes"] / 4


def test_sparse_model_costs_what_its_masked_twin_costs():
    model = gp.models.lenet_300_100(seed=0)
    gp.apply_masks(model, gp.global_masks(gp.score(model, "magnitude"), 0.95))
    x = torch.zeros(1, 784)
    assert gp.model_cost(gp.to_sparse(model), x) == gp.model_cost(model, x)


def test_structured_model_costs_its_smaller_size():
    model = gp.models.lenet_300_100(seed=0)
    small = gp.structured_prune(
        model, "magnitude", 0.5, example_inputs=torch.zeros(1, 784), scope="layerwise"
    )
    cost = gp.model_cost(small, torch.zeros(1, 784))
    assert cost["macs"] == 784 * 150 + 150 * 50 + 50 * 10
    assert cost["params_dense"] == cost["macs"] + 150 + 50 + 10
