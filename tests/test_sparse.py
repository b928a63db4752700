"""gp.to_sparse: masked Linear layers computing with CSR weights, same outputs."""

from __future__ import annotations

import copy

import pytest
import torch

import gradprune_lite as gp
from gradprune_lite.core.sparse import SparseLinear, to_masked_dense


def masked(build, sparsity, seed=0):
    model = build(seed=seed)
    gp.apply_masks(model, gp.global_masks(gp.score(model, "random", seed=seed), sparsity))
    return model


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.98, 0.999])
def test_outputs_match_the_masked_dense_model(sparsity):
    model = masked(gp.models.lenet_300_100, sparsity)
    sparse = gp.to_sparse(model)
    assert all(isinstance(getattr(sparse, n), SparseLinear) for n in ("fc1", "fc2", "fc3"))
    for batch in (1, 7, 256):
        x = torch.randn(batch, 1, 28, 28)
        with torch.no_grad():
            torch.testing.assert_close(sparse(x), model(x), rtol=0, atol=1e-5)


def test_csr_stores_only_the_kept_weights():
    model = masked(gp.models.lenet_300_100, 0.95)
    sparse = gp.to_sparse(model)
    kept = {n: int(m.sum()) for n, m in gp.current_masks(model).items()}
    for name in ("fc1", "fc2", "fc3"):
        weight = getattr(sparse, name).weight
        assert weight.layout == torch.sparse_csr
        assert weight.values().numel() == kept[f"{name}.weight"]
        torch.testing.assert_close(
            weight.to_dense(), getattr(model, name).weight.detach(), rtol=0, atol=0
        )


def test_masked_convolutions_stay_dense_and_masked():
    model = masked(gp.models.lenet5, 0.9)
    sparse = gp.to_sparse(model)
    assert isinstance(sparse.conv1, torch.nn.Conv2d) and isinstance(sparse.fc1, SparseLinear)
    assert set(gp.current_masks(sparse)) == {"conv1.weight", "conv2.weight"}
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(sparse(x), model(x), rtol=0, atol=1e-5)


def test_input_model_is_unchanged():
    model = masked(gp.models.lenet_300_100, 0.9)
    before = copy.deepcopy(model.state_dict())
    gp.to_sparse(model)
    assert isinstance(model.fc1, torch.nn.Linear)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_unmasked_model_is_an_error():
    with pytest.raises(ValueError, match="no masked nn.Linear"):
        gp.to_sparse(gp.models.lenet_300_100(seed=0))


def test_back_to_masked_dense_is_exact():
    model = masked(gp.models.lenet_300_100, 0.9)
    back = to_masked_dense(gp.to_sparse(model))
    masks, back_masks = gp.current_masks(model), gp.current_masks(back)
    assert masks.keys() == back_masks.keys()
    for name, p in model.state_dict().items():
        torch.testing.assert_close(back.state_dict()[name], p, rtol=0, atol=0)
    assert all(torch.equal(masks[n], back_masks[n]) for n in masks)


def test_sparse_model_deep_copies():
    sparse = gp.to_sparse(masked(gp.models.lenet_300_100, 0.9))
    twin = copy.deepcopy(sparse)
    assert twin.fc1.weight.layout == torch.sparse_csr
    x = torch.randn(3, 784)
    with torch.no_grad():
        torch.testing.assert_close(twin(x), sparse(x), rtol=0, atol=0)


def test_kept_weights_that_are_exactly_zero_are_stored():
    """Item 12: CSR holds exactly the kept entries (was 75 kept, 71 stored)."""
    model = masked(gp.models.lenet_300_100, 0.9)
    keep = gp.current_masks(model)["fc2.weight"]
    with torch.no_grad():
        model.fc2.weight[keep] = torch.where(
            torch.rand(int(keep.sum())) < 0.1, 0.0, model.fc2.weight[keep]
        )
    assert (model.fc2.weight[keep] == 0).sum() > 0
    sparse = gp.to_sparse(model)
    for name in ("fc1", "fc2", "fc3"):
        weight, mask = getattr(sparse, name).weight, gp.current_masks(model)[f"{name}.weight"]
        assert weight.values().numel() == int(mask.sum())
        assert torch.equal(getattr(sparse, name)._keep(), mask)
    back = to_masked_dense(sparse)
    assert torch.equal(gp.current_masks(back)["fc2.weight"], keep)
    assert torch.equal(copy.deepcopy(sparse).fc2._keep(), keep)


def test_half_on_cpu_is_refused_at_conversion_naming_a_dtype_that_works():
    model = masked(gp.models.lenet_300_100, 0.9).half()
    with pytest.raises(ValueError, match="float16 on cpu.*float32"):
        gp.to_sparse(model)
