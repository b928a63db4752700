"""Masks that hold through training, keep state_dict keys, and reject bad input cleanly."""

from __future__ import annotations

import copy
import gc
import pickle
import subprocess
import sys
import weakref

import pytest
import torch
import torch.nn.functional as F
from torch.optim import optimizer as optimizer_module

import gradprune_lite as gp
from gradprune_lite.core import _hold


def half_masks(model):
    return gp.global_masks(gp.score(model, "magnitude"), 0.5)


def train_steps(model, optimizer, batches, steps=5):
    for _ in range(steps):
        for x, y in batches:
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()


def pruned_entries(model, masks):
    weights = gp.prunable_weights(model)
    return torch.cat([weights[n].detach()[~m] for n, m in masks.items()])


def test_apply_masks_zeroes_exactly_the_pruned_weights(mlp):
    masks = half_masks(mlp)
    before = {n: w.detach().clone() for n, w in gp.prunable_weights(mlp).items()}
    gp.apply_masks(mlp, masks)
    for name, w in gp.prunable_weights(mlp).items():
        assert torch.equal(w.detach(), before[name] * masks[name])
    assert gp.sparsity(mlp) == pytest.approx(0.5, abs=1e-3)


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-3),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
        lambda p: torch.optim.Adam(p, lr=1e-2),
        lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
    ],
    ids=["sgd-momentum-wd", "sgd-nesterov", "adam", "adamw"],
)
def test_pruned_weights_stay_zero_in_a_users_loop(make_optimizer, mlp, mlp_batches):
    optimizer = make_optimizer(mlp.parameters())
    train_steps(mlp, optimizer, mlp_batches, steps=2)  # optimiser state exists before pruning
    masks = half_masks(mlp)
    gp.apply_masks(mlp, masks, optimizer)
    train_steps(mlp, optimizer, mlp_batches)
    assert (pruned_entries(mlp, masks) == 0).all()
    for param, state in optimizer.state.items():
        for value in state.values():
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                for name, w in gp.prunable_weights(mlp).items():
                    if w is param:
                        assert (value[~masks[name]] == 0).all()


def test_without_the_fix_momentum_revives_pruned_weights(mlp, mlp_batches):
    """The failure the optimiser hook exists for: naive zeroing does not hold."""
    optimizer = torch.optim.SGD(mlp.parameters(), lr=0.1, momentum=0.9)
    train_steps(mlp, optimizer, mlp_batches, steps=2)
    masks = half_masks(mlp)
    with torch.no_grad():
        for name, w in gp.prunable_weights(mlp).items():
            w.mul_(masks[name])
    train_steps(mlp, optimizer, mlp_batches, steps=1)
    assert (pruned_entries(mlp, masks) != 0).any()


def test_state_dict_keeps_dense_keys_and_loads_strictly_into_a_fresh_dense_model(
    mlp, mlp_factory, tmp_path
):
    """The contract: dense keys (strict loading anywhere), masks as packed bits in metadata."""
    dense_keys = list(mlp.state_dict())
    gp.apply_masks(mlp, half_masks(mlp))
    state = mlp.state_dict()
    assert list(state) == dense_keys
    assert set(state._metadata["1"]) >= {"weight_keep"}
    torch.save(state, tmp_path / "plain.pt")
    loaded = torch.load(tmp_path / "plain.pt", weights_only=True)
    fresh = mlp_factory()
    fresh.load_state_dict(loaded, strict=True)  # plain torch: weights, no masks
    assert gp.sparsity(fresh) == pytest.approx(gp.sparsity(mlp))
    assert gp.current_masks(fresh) == {}


def test_load_state_dict_restores_exactly_the_saved_masks(mlp, mlp_batches, mlp_factory, tmp_path):
    """Item 2: a plain state_dict checkpoint resumes with its masks, kept zeros included."""
    masks = half_masks(mlp)
    gp.apply_masks(mlp, masks)
    with torch.no_grad():  # a kept weight that is exactly zero must stay a kept weight
        kept_at = masks["1.weight"].flatten().nonzero()[0, 0]
        mlp[1].weight.view(-1)[kept_at] = 0.0
    torch.save(mlp.state_dict(), tmp_path / "plain.pt")
    fresh = mlp_factory()
    gp.load_state_dict(fresh, torch.load(tmp_path / "plain.pt", weights_only=True))
    restored = gp.current_masks(fresh)
    assert restored.keys() == masks.keys()
    assert all(torch.equal(restored[n], masks[n]) for n in masks)
    optimizer = torch.optim.Adam(fresh.parameters(), lr=1e-2)  # created after the resume
    train_steps(fresh, optimizer, mlp_batches, steps=3)
    assert (pruned_entries(fresh, masks) == 0).all()
    assert fresh[1].weight.view(-1)[kept_at] != 0  # the kept zero trained on


def test_load_state_dict_of_a_dense_checkpoint_removes_masks(mlp, mlp_factory):
    dense_state = mlp_factory().state_dict()
    gp.apply_masks(mlp, half_masks(mlp))
    gp.load_state_dict(mlp, dense_state)
    assert gp.current_masks(mlp) == {}
    assert all(torch.equal(v, dense_state[k]) for k, v in mlp.state_dict().items())


def test_load_state_dict_refuses_a_misfit_and_changes_nothing(mlp, mlp_factory):
    gp.apply_masks(mlp, half_masks(mlp))
    state = mlp.state_dict()
    other = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU())
    other.add_module("3", torch.nn.Linear(16, 10))
    before = copy.deepcopy(other.state_dict())
    with pytest.raises(ValueError, match="shape|fit"):
        gp.load_state_dict(other, state)
    assert all(torch.equal(v, before[k]) for k, v in other.state_dict().items())
    assert gp.current_masks(other) == {}
    plain = dict(state)  # metadata lost: warned, loads without masks
    fresh = mlp_factory()
    with pytest.warns(UserWarning, match="no metadata"):
        gp.load_state_dict(fresh, plain)
    assert gp.current_masks(fresh) == {}


def make_optimizers():
    return {
        "sgd-momentum-wd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-3),
        "adam": lambda p: torch.optim.Adam(p, lr=1e-2),
        "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
        "adafactor": lambda p: torch.optim.Adafactor(p, lr=1e-2),
        "rmsprop": lambda p: torch.optim.RMSprop(p, lr=1e-2, momentum=0.5),
    }


@pytest.mark.parametrize("name", list(make_optimizers()))
def test_an_optimizer_created_after_pruning_cannot_revive_weights(name, mlp, mlp_batches):
    """Item 1: a resumed run or a trainer builds its own optimiser after pruning."""
    masks = half_masks(mlp)
    gp.apply_masks(mlp, masks)
    optimizer = make_optimizers()[name](mlp.parameters())
    train_steps(mlp, optimizer, mlp_batches, steps=3)
    assert (pruned_entries(mlp, masks) == 0).all()
    copied = copy.deepcopy(optimizer)  # a deep-copied optimiser steps the same parameters
    train_steps(mlp, copied, mlp_batches, steps=1)
    assert (pruned_entries(mlp, masks) == 0).all()


def test_a_deep_copy_trained_with_its_own_optimizer_keeps_its_masks(mlp, mlp_batches):
    """Item 1: copy.deepcopy(model) carries its masks and holds them with no call of ours."""
    masks = half_masks(mlp)
    gp.apply_masks(mlp, masks)
    clone = copy.deepcopy(mlp)
    assert set(gp.current_masks(clone)) == set(masks)
    x, y = mlp_batches[0]
    F.cross_entropy(clone(x), y).backward()  # its very first gradients are masked already
    assert all((w.grad[~masks[n]] == 0).all() for n, w in gp.prunable_weights(clone).items())
    optimizer = torch.optim.SGD(clone.parameters(), lr=0.5, momentum=0.9)
    train_steps(clone, optimizer, mlp_batches)
    assert (pruned_entries(clone, masks) == 0).all()
    assert gp.sparsity(clone) == pytest.approx(gp.sparsity(mlp))
    assert not torch.equal(clone[1].weight, mlp[1].weight)  # it did train, on its own


def test_an_unpickled_model_holds_its_masks(mlp, mlp_batches):
    masks = half_masks(mlp)
    gp.apply_masks(mlp, masks)
    twin = pickle.loads(pickle.dumps(mlp))
    optimizer = torch.optim.Adam(twin.parameters(), lr=1e-2)
    train_steps(twin, optimizer, mlp_batches, steps=2)
    assert (pruned_entries(twin, masks) == 0).all()
    assert all((w.grad[~masks[n]] == 0).all() for n, w in gp.prunable_weights(twin).items())


def test_a_parameter_replaced_by_an_assigning_load_is_held(mlp, mlp_batches):
    masks = half_masks(mlp)
    gp.apply_masks(mlp, masks)
    state = {k: v.clone() for k, v in mlp.state_dict().items()}
    mlp.load_state_dict(state, assign=True)  # new Parameter objects
    optimizer = torch.optim.SGD(mlp.parameters(), lr=0.5, momentum=0.9)
    train_steps(mlp, optimizer, mlp_batches, steps=2)
    assert (pruned_entries(mlp, masks) == 0).all()


def test_clipping_weight_decay_and_bf16_autocast_keep_zeros(mlp, mlp_batches):
    masks = half_masks(mlp)
    gp.apply_masks(mlp, masks)
    optimizer = torch.optim.AdamW(mlp.parameters(), lr=1e-2, weight_decay=0.5)
    for _ in range(3):
        for x, y in mlp_batches:
            optimizer.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = F.cross_entropy(mlp(x), y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(mlp.parameters(), 0.1)
            optimizer.step()
    assert (pruned_entries(mlp, masks) == 0).all()


def test_gradients_at_pruned_entries_are_zero_after_backward(mlp, mlp_batches):
    """Item 3: so clip_grad_norm_ sees only the kept entries."""
    masks = half_masks(mlp)
    reference = copy.deepcopy(mlp)  # no masks: its gradient, masked by hand, is the truth
    gp.apply_masks(mlp, masks)
    with torch.no_grad():
        for name, w in gp.prunable_weights(reference).items():
            w.mul_(masks[name])
    x, y = mlp_batches[0]
    for model in (mlp, reference):
        F.cross_entropy(model(x), y).backward()
    weights, expected = gp.prunable_weights(mlp), gp.prunable_weights(reference)
    for name, mask in masks.items():
        assert (weights[name].grad[~mask] == 0).all()
        assert torch.equal(weights[name].grad, expected[name].grad * mask)
        assert (expected[name].grad[~mask] != 0).any()  # there was something to mask
    norm = torch.nn.utils.clip_grad_norm_(mlp.parameters(), float("inf"), norm_type=2)
    grads = [p.grad for p in reference.parameters()]
    for grad, mask in zip(grads[::2], masks.values()):
        grad.mul_(mask)
    torch.testing.assert_close(
        norm, torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads]))
    )


def test_adafactor_matches_a_gradient_masked_run(mlp, mlp_batches):
    """Item 3: factored second moments see zeros at pruned entries, as in a masked run."""
    masks = half_masks(mlp)
    reference = copy.deepcopy(mlp)
    gp.apply_masks(mlp, masks)
    weights = gp.prunable_weights(reference)
    with torch.no_grad():
        for name, w in weights.items():
            w.mul_(masks[name])
    ours = torch.optim.Adafactor(mlp.parameters(), lr=1e-2)
    theirs = torch.optim.Adafactor(reference.parameters(), lr=1e-2)
    for _ in range(5):
        for x, y in mlp_batches:
            for model, optimizer in ((mlp, ours), (reference, theirs)):
                optimizer.zero_grad()
                F.cross_entropy(model(x), y).backward()
                if model is reference:
                    for name, w in weights.items():
                        w.grad.mul_(masks[name])
                optimizer.step()
    for name, w in gp.prunable_weights(mlp).items():
        assert torch.equal(w, weights[name])


def test_masks_combine_so_pruned_stays_pruned(mlp):
    first = half_masks(mlp)
    gp.apply_masks(mlp, first)
    everything = {n: torch.ones_like(m) for n, m in first.items()}
    gp.apply_masks(mlp, everything)
    for name, mask in gp.current_masks(mlp).items():
        assert torch.equal(mask, first[name])


def test_hooks_are_registered_once_per_weight(mlp):
    optimizer = torch.optim.SGD(mlp.parameters(), lr=0.1)
    gp.apply_masks(mlp, half_masks(mlp), optimizer)
    gp.apply_masks(mlp, half_masks(mlp), optimizer)
    gp.hold_masks(mlp, optimizer)
    for w in gp.prunable_weights(mlp).values():
        assert len(w._post_accumulate_grad_hooks) == 1
    assert len(optimizer._optimizer_step_post_hooks) == 0  # nothing hangs on the optimiser
    assert sum(h is _hold._after_any_step for h in global_step_hooks().values()) == 1


def global_step_hooks():
    return optimizer_module._global_optimizer_post_hooks


def test_remove_masks_leaves_no_hook_and_no_reference(mlp_factory, mlp_batches):
    """Item 4: nothing of ours stays on the weights, the layers or the optimiser."""
    mlp = mlp_factory()  # not the fixture: pytest would keep a reference to that one
    optimizer = torch.optim.SGD(mlp.parameters(), lr=0.1, momentum=0.9)
    gp.apply_masks(mlp, half_masks(mlp), optimizer)
    train_steps(mlp, optimizer, mlp_batches, steps=1)
    gp.remove_masks(mlp)
    for w in gp.prunable_weights(mlp).values():
        assert not w._post_accumulate_grad_hooks
    for module in mlp.modules():
        assert not module._forward_pre_hooks and not module._state_dict_hooks
        assert not module._load_state_dict_post_hooks and _hold.MARKER not in module.__dict__
    assert len(optimizer._optimizer_step_post_hooks) == 0
    assert all(_hold._HELD.get(w) is None for w in gp.prunable_weights(mlp).values())
    # The process-wide step hooks go once nothing at all is held; a model another test keeps
    # alive (a fixture, a cache) legitimately keeps them, so check that only in that case.
    if not _hold._HELD and not _hold._PENDING:
        assert not any(h is _hold._after_any_step for h in global_step_hooks().values())
        pre_hooks = optimizer_module._global_optimizer_pre_hooks.values()
        assert not any(h is _hold._before_any_step for h in pre_hooks)
    model_ref, optimizer_ref = weakref.ref(mlp), weakref.ref(optimizer)
    del mlp
    gc.collect()
    assert model_ref() is None  # the optimiser is alive, and holds no link to the model
    del optimizer
    gc.collect()
    assert optimizer_ref() is None


def test_a_dropped_pruned_model_is_collected(mlp_factory, mlp_batches):
    mlp = mlp_factory()
    optimizer = torch.optim.SGD(mlp.parameters(), lr=0.1)
    gp.apply_masks(mlp, half_masks(mlp))
    train_steps(mlp, optimizer, mlp_batches, steps=1)
    model_ref = weakref.ref(mlp)
    del mlp, optimizer
    gc.collect()
    assert model_ref() is None


def test_enforce_masks_re_zeroes(mlp):
    masks = half_masks(mlp)
    gp.apply_masks(mlp, masks)
    with torch.no_grad():
        for w in gp.prunable_weights(mlp).values():
            w.add_(1.0)
    gp.enforce_masks(mlp)
    assert (pruned_entries(mlp, masks) == 0).all()


def test_remove_masks(mlp):
    gp.apply_masks(mlp, half_masks(mlp))
    gp.remove_masks(mlp)
    assert gp.current_masks(mlp) == {}


def test_sparsity_counts_only_prunable_weights(mlp):
    assert gp.sparsity(mlp) == 0.0
    with torch.no_grad():
        for p in mlp.parameters():
            if p.dim() == 1:
                p.zero_()
    assert gp.sparsity(mlp) == 0.0


def test_mask_overlap_is_jaccard():
    a = {"w": torch.tensor([True, True, False, False])}
    b = {"w": torch.tensor([True, False, True, False])}
    assert gp.mask_overlap(a, b) == pytest.approx(1 / 3)
    assert gp.mask_overlap(a, a) == 1.0
    none = {"w": torch.zeros(4, dtype=torch.bool)}
    assert gp.mask_overlap(none, none) == 1.0
    with pytest.raises(ValueError, match="same parameters"):
        gp.mask_overlap(a, {"v": a["w"]})
    with pytest.raises(ValueError, match="shape"):
        gp.mask_overlap(a, {"w": torch.ones(5, dtype=torch.bool)})


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda m: m.update({"bad": m.pop("3.weight")}), "no prunable weight"),
        (lambda m: m.update(extra=torch.ones(2, dtype=torch.bool)), "no prunable weight"),
        (lambda m: m.update({"1.weight": torch.ones(3, 3, dtype=torch.bool)}), "shape"),
        (lambda m: m.update({"1.weight": torch.full((32, 64), 0.5)}), "bool"),
    ],
    ids=["renamed", "unknown", "shape", "non-binary"],
)
def test_bad_masks_raise_and_change_nothing(corrupt, message, mlp, mlp_batches):
    optimizer = torch.optim.SGD(mlp.parameters(), lr=0.1, momentum=0.9)
    train_steps(mlp, optimizer, mlp_batches, steps=1)
    before = copy.deepcopy(mlp.state_dict())
    state_before = copy.deepcopy(optimizer.state_dict())
    masks = half_masks(mlp)
    corrupt(masks)
    with pytest.raises(ValueError, match=message):
        gp.apply_masks(mlp, masks, optimizer)
    for k, v in mlp.state_dict().items():
        assert torch.equal(v, before[k])
    assert gp.current_masks(mlp) == {}
    assert len(optimizer._optimizer_step_post_hooks) == 0
    for pid, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            assert torch.equal(value, state_before["state"][pid][key])


def test_zero_one_float_masks_are_accepted(mlp):
    masks = {n: m.float() for n, m in half_masks(mlp).items()}
    gp.apply_masks(mlp, masks)
    assert all(m.dtype == torch.bool for m in gp.current_masks(mlp).values())


def test_masks_for_a_subset_of_layers_leave_the_others_dense(mlp):
    masks = half_masks(mlp)
    dense_before = gp.prunable_weights(mlp)["3.weight"].detach().clone()
    gp.apply_masks(mlp, {"1.weight": masks["1.weight"]})
    assert set(gp.current_masks(mlp)) == {"1.weight"}
    assert torch.equal(gp.prunable_weights(mlp)["3.weight"].detach(), dense_before)
    assert (pruned_entries(mlp, {"1.weight": masks["1.weight"]}) == 0).all()


def test_subset_masks_still_reject_unknown_names_and_wrong_shapes(mlp):
    with pytest.raises(ValueError, match="no prunable weight"):
        gp.apply_masks(mlp, {"1.weigth": torch.ones(32, 64, dtype=torch.bool)})
    with pytest.raises(ValueError, match="shape"):
        gp.apply_masks(mlp, {"3.weight": torch.ones(32, 64, dtype=torch.bool)})
    assert gp.current_masks(mlp) == {}


def test_apply_masks_exclude_leaves_matching_layers_unmasked(mlp):
    masks = half_masks(mlp)
    before = gp.prunable_weights(mlp)["3.weight"].detach().clone()
    gp.apply_masks(mlp, masks, exclude="3.*")
    assert set(gp.current_masks(mlp)) == {"1.weight"}
    assert torch.equal(gp.prunable_weights(mlp)["3.weight"].detach(), before)
    with pytest.raises(ValueError, match="matches no prunable weight"):
        gp.apply_masks(mlp, masks, exclude="3")


def test_apply_masks_min_density_refuses_and_changes_nothing(mlp):
    masks = gp.global_masks(gp.score(mlp, "magnitude"), 0.95)
    kept = {n: m.float().mean().item() for n, m in masks.items()}
    before = copy.deepcopy(mlp.state_dict())
    with pytest.raises(ValueError, match="min_density"):
        gp.apply_masks(mlp, masks, min_density=max(kept.values()) + 0.01)
    assert gp.current_masks(mlp) == {}
    assert all(torch.equal(v, before[k]) for k, v in mlp.state_dict().items())
    gp.apply_masks(mlp, masks, min_density=min(kept.values()))
    assert set(gp.current_masks(mlp)) == set(masks)


class SequenceModel(torch.nn.Module):
    """Embedding → Conv1d → GRU → Linear: the GRU's weights are not prunable."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(50, 8)
        self.conv = torch.nn.Conv1d(8, 8, 3)
        self.rnn = torch.nn.GRU(8, 8, batch_first=True)
        self.head = torch.nn.Linear(8, 4)

    def forward(self, tokens):
        hidden = self.conv(self.embed(tokens).transpose(1, 2)).transpose(1, 2)
        return self.head(self.rnn(hidden)[0][:, -1])


@pytest.mark.filterwarnings("ignore:gradprune-lite leaves")
def test_sparsity_report_is_truthful_beyond_linear_layers():
    model = SequenceModel()
    prunable = gp.prunable_weights(model)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.view(-1)[: p.numel() // 2] = 0  # half of every weight-bearing tensor
    report = gp.sparsity_report(model)
    assert set(report.covered) == set(prunable)
    weight_bearing = {n for n, p in model.named_parameters() if p.dim() >= 2}
    assert set(report.not_covered) == weight_bearing - set(prunable)
    assert set(report.not_covered) == {"rnn.weight_ih_l0", "rnn.weight_hh_l0"}
    everything = [p for p in model.parameters() if p.dim() >= 2]
    truth = sum(int((p == 0).sum()) for p in everything) / sum(p.numel() for p in everything)
    assert report.sparsity_all == pytest.approx(truth)
    covered = [prunable[n] for n in report.covered]
    assert gp.sparsity(model) == pytest.approx(
        sum(int((w == 0).sum()) for w in covered) / sum(w.numel() for w in covered)
    )
    for name in report.not_covered:
        assert name in str(report)


def test_sparsity_counts_a_tied_weight_once():
    enc, dec = torch.nn.Linear(6, 6, bias=False), torch.nn.Linear(6, 6, bias=False)
    other = torch.nn.Linear(6, 4, bias=False)
    dec.weight = enc.weight
    model = torch.nn.Sequential(enc, dec, other)
    with torch.no_grad():
        enc.weight.view(-1)[:18] = 0  # half of the shared 36
    truth = 18 / (36 + 24)
    assert gp.sparsity(model) == pytest.approx(truth)


class Wrapper(torch.nn.Module):
    """A wrapper with ``.module``, named as DDP and DataParallel name theirs."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x):
        return self.module(x)


def compiled(model):
    # The "eager" backend gives the real _orig_mod names and dynamo's tracing of our hooks
    # without a C++ toolchain; inductor took 150 s on this machine's shared CPU.
    return torch.compile(model, backend="eager")


@pytest.mark.parametrize("wrap", [Wrapper, compiled, lambda m: compiled(Wrapper(m))])
def test_wrapped_models_are_keyed_like_the_plain_model(wrap, mlp, mlp_factory, mlp_batches):
    """Item 5: torch.compile's '_orig_mod.' and DDP's 'module.' prefixes."""
    masks = half_masks(mlp)
    wrapped = wrap(mlp_factory())
    assert set(gp.score(wrapped, "magnitude")) == set(masks)
    assert set(gp.score(wrapped, "taylor", mlp_batches)) == set(masks)
    gp.apply_masks(wrapped, masks)
    assert set(gp.current_masks(wrapped)) == set(masks)
    optimizer = torch.optim.Adam(wrapped.parameters(), lr=1e-2)
    train_steps(wrapped, optimizer, mlp_batches, steps=2)
    assert (pruned_entries(wrapped, masks) == 0).all()
    fresh = mlp_factory()  # its checkpoint resumes into the plain model, masks included
    gp.load_state_dict(fresh, wrapped.state_dict())
    assert all(torch.equal(gp.current_masks(fresh)[n], m) for n, m in masks.items())


def test_masks_named_with_a_wrapper_prefix_fit_the_plain_model(mlp):
    masks = half_masks(mlp)
    gp.apply_masks(mlp, {f"_orig_mod.module.{n}": m for n, m in masks.items()})
    assert all(torch.equal(gp.current_masks(mlp)[n], m) for n, m in masks.items())
    with pytest.raises(ValueError, match="give each weight once"):
        gp.apply_masks(mlp, {"1.weight": masks["1.weight"], "module.1.weight": masks["1.weight"]})


def test_a_layer_called_module_beside_others_is_not_a_wrapper():
    model = torch.nn.Module()
    model.module = torch.nn.Linear(3, 3)
    model.head = torch.nn.Linear(3, 2)
    assert set(gp.prunable_weights(model)) == {"module.weight", "head.weight"}


def test_distributed_data_parallel_holds_masks(mlp, mlp_factory, mlp_batches, tmp_path):
    dist = pytest.importorskip("torch.distributed")
    if not dist.is_available():
        pytest.skip("torch.distributed is not built into this torch")
    dist.init_process_group(
        "gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1
    )
    try:
        masks = half_masks(mlp)
        ddp = torch.nn.parallel.DistributedDataParallel(mlp_factory())
        gp.apply_masks(ddp, masks)
        optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
        for x, y in mlp_batches:
            optimizer.zero_grad()
            F.cross_entropy(ddp(x), y).backward()
            for name, w in gp.prunable_weights(ddp).items():
                assert (w.grad[~masks[name]] == 0).all()
            optimizer.step()
        assert (pruned_entries(ddp, masks) == 0).all()
    finally:
        dist.destroy_process_group()


def sgd_subclass(params):
    class Noisy(torch.optim.SGD):  # not ours to trust: its step could do anything
        pass

    return Noisy(params, lr=0.1, momentum=0.9)


@pytest.mark.parametrize(
    "meddle",
    ["write-weights", "set-grad-by-hand", "clip", "subclass", "stale-state"],
)
def test_every_way_around_the_gradient_hook_is_still_caught(meddle, mlp, mlp_batches):
    """The step hook skips its multiply only when zeros are provable; each case here is not."""
    masks = half_masks(mlp)
    make = sgd_subclass if meddle == "subclass" else None
    optimizer = (make or (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)))(mlp.parameters())
    if meddle == "stale-state":
        train_steps(mlp, optimizer, mlp_batches, steps=1)  # momentum full before pruning
    gp.apply_masks(mlp, masks)
    train_steps(mlp, optimizer, mlp_batches, steps=1)
    weights = gp.prunable_weights(mlp)
    for x, y in mlp_batches:
        optimizer.zero_grad()
        F.cross_entropy(mlp(x), y).backward()
        if meddle == "write-weights":
            with torch.no_grad():
                weights["1.weight"].add_(1.0)
        if meddle == "set-grad-by-hand":  # as per-sample-gradient trainers do
            weights["1.weight"].grad = torch.ones_like(weights["1.weight"])
        if meddle == "clip":
            torch.nn.utils.clip_grad_norm_(mlp.parameters(), 1e-3)
        optimizer.step()
        assert (pruned_entries(mlp, masks) == 0).all()


@pytest.mark.parametrize("criterion", sorted(gp.CRITERIA))
def test_every_criterion_scores_a_wrapped_model_under_plain_names(
    criterion, mlp_factory, mlp_batches
):
    scores = gp.score(Wrapper(mlp_factory()), criterion, mlp_batches)
    assert set(scores) == {"1.weight", "3.weight"}


def test_the_global_step_hooks_go_when_nothing_is_held():
    """In a fresh process (no other test's model alive), releasing the last held layer
    removes torch's process-wide optimiser step hooks too."""
    code = """
import torch
from torch import nn
from torch.optim import optimizer as optimizer_module
import gradprune_lite as gp
from gradprune_lite.core import _hold

model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
masks = {name: torch.rand_like(w) > 0.5 for name, w in gp.prunable_weights(model).items()}
gp.apply_masks(model, masks)
hooks = lambda: list(optimizer_module._global_optimizer_post_hooks.values())
assert any(h is _hold._after_any_step for h in hooks())
gp.remove_masks(model)
assert not any(h is _hold._after_any_step for h in hooks())
pre = optimizer_module._global_optimizer_pre_hooks.values()
assert not any(h is _hold._before_any_step for h in pre)
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
