"""Round trips with torch.nn.utils.prune."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.utils import prune as torch_prune

import gradprune_lite as gp


def test_export_to_torch_prune_gives_the_same_effective_weights(mlp):
    masks = gp.global_masks(gp.score(mlp, "magnitude"), 0.7)
    expected = {n: w.detach() * masks[n] for n, w in gp.prunable_weights(mlp).items()}
    gp.to_torch_prune(mlp, masks)
    modules = dict(mlp.named_modules())
    for name, mask in masks.items():
        module = modules[name.rsplit(".", 1)[0]]
        assert torch_prune.is_pruned(module)
        assert torch.equal(module.weight_mask.bool(), mask)
        assert torch.equal(module.weight, expected[name])


def test_import_from_torch_prune_round_trip(mlp):
    weights = gp.prunable_weights(mlp)
    torch_prune.global_unstructured(
        [(m, "weight") for m in gp.core.layers.prunable_modules(mlp).values()],
        pruning_method=torch_prune.L1Unstructured,
        amount=0.6,
    )
    imported = gp.from_torch_prune(mlp)
    assert set(imported) == set(weights)
    assert all(m.dtype == torch.bool for m in imported.values())
    total = sum(m.numel() for m in imported.values())
    pruned = sum(int((~m).sum()) for m in imported.values())
    assert pruned == round(0.6 * total)


def test_unpruned_layers_import_as_all_true(mlp):
    masks = gp.from_torch_prune(mlp)
    assert all(m.all() for m in masks.values())


def test_apply_masks_on_a_torch_pruned_model_holds_through_training(mlp, mlp_batches):
    """The reported failure: masks written into the derived ``weight`` came back (0.389)."""
    for module in gp.core.layers.prunable_modules(mlp).values():
        torch_prune.l1_unstructured(module, "weight", amount=0.3)
    optimizer = torch.optim.SGD(mlp.parameters(), lr=0.5, momentum=0.9)
    masks = gp.global_masks(gp.score(mlp, "magnitude"), 0.8)
    gp.apply_masks(mlp, masks, optimizer)
    total = sum(m.numel() for m in masks.values())
    assert gp.sparsity(mlp) == round(0.8 * total) / total
    for _ in range(3):
        for x, y in mlp_batches:
            optimizer.zero_grad()
            F.cross_entropy(mlp(x), y).backward()
            optimizer.step()
    mlp(mlp_batches[0][0])  # the pre-hook recomputes weight = weight_orig * weight_mask
    assert gp.sparsity(mlp) == round(0.8 * total) / total
    modules = gp.core.layers.prunable_modules(mlp)
    for name, mask in masks.items():
        original = modules[name].weight_orig
        assert (original.detach()[~mask] == 0).all()
        assert (optimizer.state[original]["momentum_buffer"][~mask] == 0).all()
        assert torch_prune.is_pruned(modules[name])  # torch's own mask is still in force


def torch_pruned(model, amount=0.6):
    torch_prune.global_unstructured(
        [(m, "weight") for m in gp.core.layers.prunable_modules(model).values()],
        pruning_method=torch_prune.L1Unstructured,
        amount=amount,
    )
    return model


def test_save_and_load_a_torch_pruned_model(mlp, mlp_factory, mlp_batches, tmp_path):
    """Item 11: gp.save raised KeyError('1.weight') on torch.nn.utils.prune's keys."""
    torch_pruned(mlp)
    gp.apply_masks(mlp, gp.global_masks(gp.score(mlp, "magnitude"), 0.8))
    F.cross_entropy(mlp(mlp_batches[0][0]), mlp_batches[0][1]).backward()  # weight is derived
    gp.save(mlp, tmp_path / "m.pt")
    restored = torch_pruned(mlp_factory())  # the same architecture: weight_orig, weight_mask
    gp.load(tmp_path / "m.pt", restored)
    for key, value in mlp.state_dict().items():
        assert torch.equal(restored.state_dict()[key], value), key
    assert set(gp.current_masks(restored)) == set(gp.current_masks(mlp))
    x = mlp_batches[1][0]
    torch.testing.assert_close(restored(x), mlp(x), rtol=0, atol=0)


def test_model_cost_of_a_torch_pruned_model_counts_its_masked_weights(mlp):
    """Item 11: gp.model_cost raised deepcopy's RuntimeError; torch's masks are the reference."""
    x = torch.zeros(1, 1, 8, 8)
    dense_cost = gp.model_cost(mlp, x)
    torch_pruned(mlp)
    mlp(x).sum().backward()  # the derived weight now has a grad_fn: deepcopy refuses it
    cost = gp.model_cost(mlp, x)
    kept = sum(int(m.weight_mask.sum()) for m in gp.core.layers.prunable_modules(mlp).values())
    biases = sum(p.numel() for n, p in mlp.named_parameters() if n.endswith("bias"))
    assert cost["params"] == kept + biases
    assert cost["params_dense"] == dense_cost["params_dense"]
    assert cost["macs"] == dense_cost["macs"]
    assert cost["checkpoint_bytes"] > 0
