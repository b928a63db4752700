"""Iterative pruning: schedule, exact counts, monotone masks, the between hook."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import gradprune_lite as gp


def count_pruned(masks):
    return sum(int((~m).sum()) for m in masks.values())


def test_exponential_schedule_shrinks_density_geometrically():
    steps = gp.sparsity_schedule(0.99, 4)
    densities = [1 - s for s in steps]
    ratios = [densities[i + 1] / densities[i] for i in range(3)]
    assert steps[-1] == pytest.approx(0.99)
    assert ratios == pytest.approx([ratios[0]] * 3)
    assert gp.sparsity_schedule(0.8, 4, "linear") == pytest.approx([0.2, 0.4, 0.6, 0.8])


@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_iterative_prune_reaches_target_and_never_revives(scope, mlp, mlp_batches):
    total = sum(w.numel() for w in gp.prunable_weights(mlp).values())
    history = []

    def between(model, round_index):
        history.append(copy.deepcopy(gp.current_masks(model)))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
        gp.hold_masks(model, optimizer)
        for x, y in mlp_batches:  # training in between moves surviving weights
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()

    masks = gp.prune(mlp, "taylor", 0.9, mlp_batches, rounds=3, scope=scope, between=between)
    assert len(history) == 3
    for earlier, later in zip(history, history[1:]):
        for name in earlier:
            assert not (later[name] & ~earlier[name]).any(), "a pruned weight came back"
    if scope == "global":
        assert count_pruned(masks) == round(0.9 * total)
    else:
        for m in masks.values():
            assert int((~m).sum()) == round(0.9 * m.numel())
    assert gp.sparsity(mlp) == pytest.approx(count_pruned(masks) / total)


def test_one_shot_magnitude_equals_global_masks(mlp):
    expected = gp.global_masks(gp.score(mlp, "magnitude"), 0.8)
    masks = gp.prune(copy.deepcopy(mlp), "magnitude", 0.8)
    assert all(torch.equal(masks[n], expected[n]) for n in masks)


def test_iterative_synflow_is_data_free(mlp):
    masks = gp.prune(mlp, "synflow", 0.95, rounds=5, input_shape=(1, 8, 8))
    total = sum(m.numel() for m in masks.values())
    assert count_pruned(masks) == round(0.95 * total)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "half"])
def test_bad_sparsity_raises_and_changes_nothing(bad, mlp):
    before = copy.deepcopy(mlp.state_dict())
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        gp.prune(mlp, "magnitude", bad)
    assert all(torch.equal(v, before[k]) for k, v in mlp.state_dict().items())
    assert gp.current_masks(mlp) == {}


def test_bad_arguments(mlp):
    with pytest.raises(ValueError, match="rounds"):
        gp.prune(mlp, "magnitude", 0.5, rounds=0)
    with pytest.raises(ValueError, match="schedule"):
        gp.prune(mlp, "magnitude", 0.5, schedule="cubic")
    with pytest.raises(ValueError, match="scope"):
        gp.prune(mlp, "magnitude", 0.5, scope="local")
    with pytest.raises(ValueError, match="valid names"):
        gp.prune(mlp, "nope", 0.5)
    assert gp.current_masks(mlp) == {}
