"""Masks that hold through training, keep state_dict keys, and reject bad input cleanly."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import gradprune_lite as gp


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


def test_state_dict_keys_strict_load_and_deepcopy(mlp, mlp_batches, mlp_factory):
    dense_keys = list(mlp.state_dict())
    gp.apply_masks(mlp, half_masks(mlp))
    assert list(mlp.state_dict()) == dense_keys
    fresh = mlp_factory()
    fresh.load_state_dict(mlp.state_dict(), strict=True)
    assert gp.sparsity(fresh) == pytest.approx(gp.sparsity(mlp))
    clone = copy.deepcopy(mlp)
    assert set(gp.current_masks(clone)) == set(gp.current_masks(mlp))
    optimizer = torch.optim.SGD(clone.parameters(), lr=0.5, momentum=0.9)
    gp.hold_masks(clone, optimizer)
    train_steps(clone, optimizer, mlp_batches)
    assert gp.sparsity(clone) == pytest.approx(gp.sparsity(mlp))


def test_masks_combine_so_pruned_stays_pruned(mlp):
    first = half_masks(mlp)
    gp.apply_masks(mlp, first)
    everything = {n: torch.ones_like(m) for n, m in first.items()}
    gp.apply_masks(mlp, everything)
    for name, mask in gp.current_masks(mlp).items():
        assert torch.equal(mask, first[name])


def test_hold_masks_registers_once(mlp, mlp_batches):
    optimizer = torch.optim.SGD(mlp.parameters(), lr=0.1)
    gp.apply_masks(mlp, half_masks(mlp), optimizer)
    gp.apply_masks(mlp, half_masks(mlp), optimizer)
    gp.hold_masks(mlp, optimizer)
    assert len(optimizer._optimizer_step_post_hooks) == 1


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
