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


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "half", "0.9", True])
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


@pytest.fixture
def custom_criterion():
    """Register criteria for one test and remove them afterwards."""
    added = []

    def register(name, fn):
        gp.register_criterion(name, fn)
        added.append(name)

    yield register
    for name in added:
        gp.CRITERIA.pop(name, None)


def everything_of(model, optimizer):
    """A deep copy of all that prune may change: parameters, grads, buffers, masks, state."""
    return {
        "params": {n: p.detach().clone() for n, p in model.named_parameters()},
        "grads": {
            n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()
        },
        "buffers": {n: b.clone() for n, b in model.named_buffers()},
        "training": [m.training for m in model.modules()],
        "optimizer": copy.deepcopy(optimizer.state_dict()),
        "hooks": len(optimizer._optimizer_step_post_hooks),
    }


def assert_same(before, after):
    assert before.keys() == after.keys()
    for key in ("params", "grads", "buffers"):
        assert before[key].keys() == after[key].keys(), key
        for name, value in before[key].items():
            other = after[key][name]
            assert (value is None and other is None) or torch.equal(value, other), (key, name)
    assert before["training"] == after["training"]
    assert before["hooks"] == after["hooks"]
    state_a, state_b = before["optimizer"], after["optimizer"]
    assert state_a["param_groups"] == state_b["param_groups"]
    assert state_a["state"].keys() == state_b["state"].keys()
    for pid, entry in state_a["state"].items():
        assert entry.keys() == state_b["state"][pid].keys()
        for key, value in entry.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(state_b["state"][pid][key]))


def bn_mlp():
    torch.manual_seed(5)
    return torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(64, 32),
        torch.nn.BatchNorm1d(32),
        torch.nn.ReLU(),
        torch.nn.Linear(32, 10),
    )


def trained_a_little(model, batches):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for x, y in batches:
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return optimizer


@pytest.mark.parametrize("fails_in", ["criterion", "between"])
def test_failure_in_round_two_restores_model_masks_and_optimizer(
    fails_in, mlp_batches, custom_criterion
):
    model = bn_mlp()
    optimizer = trained_a_little(model, mlp_batches)  # momentum and grads exist already
    gp.apply_masks(model, gp.global_masks(gp.score(model, "magnitude"), 0.2))  # earlier masks
    model.eval()
    calls = []

    def flaky(ctx):
        calls.append(1)
        if fails_in == "criterion" and len(calls) == 2:
            raise RuntimeError("criterion broke in round 2")
        return {n: w.abs() for n, w in ctx.weights.items()}

    def between(m, round_index):
        m.train()
        for x, y in mlp_batches:  # moves weights, BatchNorm statistics and momentum
            optimizer.zero_grad()
            F.cross_entropy(m(x), y).backward()
            optimizer.step()
        if fails_in == "between" and round_index == 1:
            raise RuntimeError("training broke after round 2")

    custom_criterion("flaky", flaky)
    before = everything_of(model, optimizer)
    masks_before = copy.deepcopy(gp.current_masks(model))
    with pytest.raises(RuntimeError, match="broke"):
        gp.prune(model, "flaky", 0.9, rounds=3, between=between, optimizer=optimizer)
    assert len(calls) == 2
    assert_same(before, everything_of(model, optimizer))
    after = gp.current_masks(model)
    assert after.keys() == masks_before.keys()
    assert all(torch.equal(after[n], masks_before[n]) for n in after)
    # The restored optimiser still works, and carries no hook left over from the failed run.
    trained_a_little(model, mlp_batches)


def test_generator_batches_with_several_rounds_raise_before_any_change(mlp, mlp_batches):
    before = copy.deepcopy(mlp.state_dict())
    with pytest.raises(ValueError, match="list of .* or a DataLoader"):
        gp.prune(mlp, "taylor", 0.9, (b for b in mlp_batches), rounds=3)
    assert all(torch.equal(v, before[k]) for k, v in mlp.state_dict().items())
    assert gp.current_masks(mlp) == {}
    masks = gp.prune(mlp, "taylor", 0.5, (b for b in mlp_batches), rounds=1)
    assert count_pruned(masks) == round(0.5 * sum(m.numel() for m in masks.values()))


def test_integer_scores_rank_over_several_rounds(mlp, custom_criterion):
    custom_criterion(
        "rank", lambda ctx: {n: (w.abs() * 1e4).long() for n, w in ctx.weights.items()}
    )
    masks = gp.prune(mlp, "rank", 0.9, rounds=3)
    total = sum(m.numel() for m in masks.values())
    assert count_pruned(masks) == round(0.9 * total)


def test_unrankable_scores_raise_before_any_change(mlp, custom_criterion):
    custom_criterion("flags", lambda ctx: {n: w > 0 for n, w in ctx.weights.items()})
    before = copy.deepcopy(mlp.state_dict())
    with pytest.raises(ValueError, match="cannot be ranked"):
        gp.prune(mlp, "flags", 0.5)
    assert all(torch.equal(v, before[k]) for k, v in mlp.state_dict().items())
    assert gp.current_masks(mlp) == {}


def collapsing_mlp():
    """20-30-5: at init the classifier's |w| (bound 1/√30) lie under the first layer's top 10%."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(20, 30), torch.nn.ReLU(), torch.nn.Linear(30, 5))


def test_min_density_stops_global_magnitude_emptying_the_classifier():
    plain = gp.prune(collapsing_mlp(), "magnitude", 0.9)
    assert not plain["2.weight"].any(), "the failure min_density guards against"
    guarded = gp.prune(collapsing_mlp(), "magnitude", 0.9, min_density=0.05)
    assert int(guarded["2.weight"].sum()) >= 0.05 * 150
    assert count_pruned(guarded) == round(0.9 * 750)  # the exact count still holds
    with pytest.raises(ValueError, match="at most"):
        gp.prune(collapsing_mlp(), "magnitude", 0.9, min_density=0.2)


def test_exclude_keeps_the_classifier_dense():
    model = collapsing_mlp()
    masks = gp.prune(model, "magnitude", 0.9, exclude="2.*")
    assert masks["2.weight"].all()
    assert count_pruned(masks) == round(0.9 * 600)  # sparsity counts the other layers
    with pytest.raises(ValueError, match="matches no prunable weight"):
        gp.prune(collapsing_mlp(), "magnitude", 0.9, exclude="classifier")
