"""Scoring has no side effects, is deterministic, and works under no_grad/inference_mode."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
import torch.nn.functional as F
from func_reference import assert_stats_match, per_sample_reference
from torch import nn

import gradprune_lite as gp

DATA_CRITERIA = ["gradient", "taylor", "snip", "fisher", "grasp"]


def bn_dropout_net():
    """Conv → BatchNorm → ReLU → Dropout → Linear: state that training mode would change."""
    torch.manual_seed(10)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(4 * 5 * 5, 3),
    )


@pytest.fixture
def bn_batches():
    g = torch.Generator().manual_seed(11)
    x = torch.randn(10, 2, 5, 5, generator=g)
    return [(x, torch.randint(0, 3, (10,), generator=g))]


@pytest.mark.parametrize("criterion", [*DATA_CRITERIA, "synflow"])
def test_scoring_leaves_buffers_modes_and_flags_as_they_were(criterion, bn_batches):
    model = bn_dropout_net().train()
    model[1].running_mean.normal_()  # not the defaults, so a reset would show
    model[0].bias.requires_grad_(False)
    before = copy.deepcopy(model.state_dict())
    gp.score(model, criterion, bn_batches)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(module.training for module in model.modules())
    assert [p.requires_grad for p in model.parameters()] == [True, False, True, True, True, True]
    assert all(p.grad is None for p in model.parameters())


def test_scores_are_taken_in_eval_mode_and_are_deterministic(bn_batches):
    """Dropout in train mode would draw new masks each call; scoring in eval mode does not."""
    model = bn_dropout_net().train()
    first = gp.global_masks(gp.score(model, "taylor", bn_batches), 0.9)
    second = gp.global_masks(gp.score(model, "taylor", bn_batches), 0.9)
    assert gp.mask_overlap(first, second) == 1.0
    stats = gp.gradient_stats(model, bn_batches)
    assert_stats_match(stats, per_sample_reference(model, bn_batches))  # reference: eval mode


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
@pytest.mark.parametrize("criterion", [*DATA_CRITERIA, "synflow"])
def test_scoring_works_under_no_grad_and_inference_mode(mode, criterion, bn_batches):
    model = bn_dropout_net()
    expected = gp.score(model, criterion, bn_batches)
    with mode():
        x, y = (t.clone() for t in bn_batches[0])  # inference tensors under inference_mode
        got = gp.score(model, criterion, [(x, y)])
    for name in expected:
        torch.testing.assert_close(got[name], expected[name])


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
def test_per_sample_gradients_under_no_grad_and_inference_mode(mode, mlp, mlp_batches):
    reference = per_sample_reference(mlp, mlp_batches)
    with mode():
        chunks = list(gp.per_sample_gradients(mlp, mlp_batches))
    for name in reference:
        if name.endswith("weight"):
            got = torch.cat([c for n, c in chunks if n == name])
            torch.testing.assert_close(got, reference[name], rtol=1e-4, atol=1e-6)


def test_misspelt_option_lists_the_valid_names(mlp, mlp_batches):
    with pytest.raises(ValueError, match=r"\['temprature'\].*'loss_fn'.*'temperature'"):
        gp.score(mlp, "grasp", mlp_batches, temprature=1.0)
    with pytest.raises(ValueError, match=r"'taylor' does not take the option\(s\) \['seed'\]"):
        gp.score(mlp, "taylor", mlp_batches, seed=1)
    with pytest.raises(ValueError, match="its options are none"):
        gp.score(mlp, "magnitude", loss_fn=F.cross_entropy)


def test_declared_options_of_a_registered_criterion(mlp):
    gp.register_criterion("test_scaled", lambda ctx: ctx.weights, options=("scale",))
    gp.register_criterion("test_open", lambda ctx: ctx.weights)
    try:
        gp.score(mlp, "test_scaled", scale=2.0)
        with pytest.raises(ValueError, match=r"\['scal'\]; its options are \['scale'\]"):
            gp.score(mlp, "test_scaled", scal=2.0)
        gp.score(mlp, "test_open", anything=1)  # undeclared options are passed through
    finally:
        for name in ("test_scaled", "test_open"):
            gp.CRITERIA.pop(name)  # the record goes, options and all


def grasp_reference(model, x, y, loss_fn, temperature=200.0):
    """w ⊙ Hg from torch.autograd.functional.hvp on loss_fn(model(x) / T, y)."""
    names = list(gp.prunable_weights(model))
    base = {n: p.detach() for n, p in model.named_parameters()}

    def loss(*ws):
        out = torch.func.functional_call(model, dict(base, **dict(zip(names, ws))), (x,))
        return loss_fn(out / temperature, y)

    ws = tuple(base[n] for n in names)
    leaves = [w.clone().requires_grad_() for w in ws]
    g = torch.autograd.grad(loss(*leaves), leaves)
    _, hg = torch.autograd.functional.hvp(loss, ws, g)
    return {n: w * h for n, w, h in zip(names, ws, hg)}


def test_grasp_uses_loss_fn(mlp, mlp_batches):
    x = torch.cat([b[0] for b in mlp_batches])
    y = torch.cat([b[1] for b in mlp_batches])

    def smoothed(out, target):
        return F.cross_entropy(out, target, label_smoothing=0.3)

    def smoothed_sum(out, target):
        return F.cross_entropy(out, target, label_smoothing=0.3, reduction="sum")

    expected = grasp_reference(mlp, x, y, smoothed, temperature=5.0)
    plain = gp.score(mlp, "grasp", mlp_batches, temperature=5.0)
    for loss_fn in (smoothed, smoothed_sum):
        got = gp.score(mlp, "grasp", mlp_batches, loss_fn=loss_fn, temperature=5.0)
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], rtol=1e-3, atol=1e-9)
    assert not torch.allclose(plain["3.weight"], expected["3.weight"], rtol=1e-2)


def test_bfloat16_statistics_accumulate_in_float32(mlp, mlp_batches):
    model = copy.deepcopy(mlp).to(torch.bfloat16)
    batches = [(x.to(torch.bfloat16), y) for x, y in mlp_batches]
    stats = gp.gradient_stats(model, batches)
    reference = per_sample_reference(model, batches)
    for name, s in stats.items():
        assert s.mean.dtype == s.sq_mean.dtype == torch.float32
        g = reference[name].double()  # each sample's bf16 gradient, summed in float64
        error = float((s.sq_mean - g.square().mean(0)).norm() / g.square().mean(0).norm())
        assert error < 0.02, (name, error)
    scores = gp.score(model, "random")
    assert all(s.dtype == torch.bfloat16 for s in scores.values())


# --- Exactness in every dtype, and losses that are not a mean of per-sample losses --------


class BatchMixing(nn.Module):
    """Subtracts 2% of the batch mean: every sample's output depends on the others."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        h = torch.relu(self.fc1(x.flatten(1)))
        return self.fc2(h - 0.02 * h.mean(0, keepdim=True))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_samples_that_interact_are_caught_in_every_dtype(dtype, mlp_batches):
    """2% of mixing is far above float32 round-off and far below bf16's (eps 2⁻⁸)."""
    torch.manual_seed(0)
    model = BatchMixing().to(dtype)
    before = copy.deepcopy(model.state_dict())
    batches = [(x.to(dtype), y) for x, y in mlp_batches]
    with pytest.raises(ValueError, match="computed alone differs"):
        gp.gradient_stats(model, batches)
    after = model.state_dict()
    assert all(after[k].dtype == v.dtype and torch.equal(after[k], v) for k, v in before.items())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_independent_samples_pass_the_check_in_low_precision(dtype, mlp, mlp_batches):
    model = copy.deepcopy(mlp).to(dtype)
    before = copy.deepcopy(model.state_dict())
    stats = gp.gradient_stats(model, [(x.to(dtype), y) for x, y in mlp_batches])
    assert all(s.count == 24 for s in stats.values())
    after = model.state_dict()
    assert all(after[k].dtype == v.dtype and torch.equal(after[k], v) for k, v in before.items())
    assert all(p.dtype == dtype for p in model.parameters())


class TiedOutsideTheCall(nn.Module):
    """fc2's weight is also used by F.linear outside its module: the torch.func fallback."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 16)
        self.fc2 = nn.Linear(16, 5)

    def forward(self, x):
        h = torch.relu(self.fc1(x.flatten(1)))
        return self.fc2(h) + 0.5 * F.linear(h, self.fc2.weight)


def class_batches(ignored=()):
    g = torch.Generator().manual_seed(12)
    x = torch.randn(12, 1, 8, 8, generator=g)
    y = torch.randint(0, 5, (12,), generator=g)
    y[list(ignored)] = -100
    return [(x[:7], y[:7]), (x[7:], y[7:])]


WEIGHT = torch.tensor([0.5, 2.0, 1.0, 3.0, 0.25])


@pytest.mark.parametrize(
    "model_type", [nn.Sequential, TiedOutsideTheCall], ids=["fast", "fallback"]
)
@pytest.mark.parametrize(
    "loss_fn",
    [
        nn.CrossEntropyLoss(weight=WEIGHT),
        nn.NLLLoss(weight=WEIGHT),
        functools.partial(F.cross_entropy, weight=WEIGHT),
    ],
    ids=["CrossEntropyLoss", "NLLLoss", "partial"],
)
def test_class_weights_with_mean_reduction_are_refused_naming_the_cause(model_type, loss_fn):
    model = small_classifier(model_type)
    with pytest.raises(ValueError, match=r"class weights \(weight=\) and reduction='mean'"):
        gp.gradient_stats(model, class_batches(), loss_fn)


@pytest.mark.parametrize(
    "model_type", [nn.Sequential, TiedOutsideTheCall], ids=["fast", "fallback"]
)
@pytest.mark.parametrize(
    "loss_fn", [F.cross_entropy, nn.CrossEntropyLoss()], ids=["function", "module"]
)
def test_ignored_targets_with_mean_reduction_are_refused_naming_the_cause(model_type, loss_fn):
    model = small_classifier(model_type)
    with pytest.raises(ValueError, match="ignore_index=-100 and the loss reduces by 'mean'"):
        gp.gradient_stats(model, class_batches(ignored=[0, 9]), loss_fn)


@pytest.mark.parametrize(
    "model_type", [nn.Sequential, TiedOutsideTheCall], ids=["fast", "fallback"]
)
@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_weighted_and_ignored_losses_summed_are_exact_on_both_paths(model_type, reduction):
    """Per-sample loss w_y·ℓ, 0 when ignored: checked against torch.func per sample."""
    model = small_classifier(model_type)
    batches = class_batches(ignored=[0, 9])
    loss_fn = nn.CrossEntropyLoss(weight=WEIGHT, reduction=reduction)
    stats = gp.gradient_stats(model, batches, loss_fn)
    per_sample = nn.CrossEntropyLoss(weight=WEIGHT, reduction="sum")
    reference = per_sample_reference(model, batches, per_sample)
    assert_stats_match(stats, {name: reference[name] for name in stats})
    first = next(iter(stats))
    assert float(reference[first][0].abs().max()) == 0  # sample 0 is ignored: no gradient


def small_classifier(model_type):
    torch.manual_seed(5)
    if model_type is nn.Sequential:
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 5))
    return TiedOutsideTheCall()


def test_float_labels_for_a_classification_loss_are_a_clear_error(mlp, mlp_batches):
    batches = [(x, y.float()) for x, y in mlp_batches]
    with pytest.raises(ValueError, match=r"targets are torch.float32 of shape \(10,\).*long\(\)"):
        gp.gradient_stats(mlp, batches)
    with pytest.raises(ValueError, match="targets.long()"):
        gp.score(mlp, "fisher", batches)


def test_one_pair_instead_of_a_list_of_batches_is_a_clear_error(mlp, mlp_batches):
    x, y = mlp_batches[0]
    message = r"batches=\[\(inputs, targets\)\] instead of batches=\(inputs, targets\)"
    with pytest.raises(ValueError, match=message):
        gp.gradient_stats(mlp, (x, y))
    with pytest.raises(ValueError, match=message):
        gp.score(mlp, "grasp", (x, y))
    with pytest.raises(ValueError, match=message):
        gp.score(mlp, "obs", [x, y])
    with pytest.raises(ValueError, match=message):
        gp.prune(copy.deepcopy(mlp), "obs", 0.5, (x, y))
    with pytest.raises(ValueError, match=message):
        gp.structured_prune(mlp, "taylor", 0.5, (x, y), example_inputs=x[:1])


def test_independence_is_checked_once_per_structure_and_again_when_it_changes(
    mlp, mlp_batches, monkeypatch
):
    from gradprune_lite.core import stats

    calls = []
    check = stats._check_first_sample_alone
    monkeypatch.setattr(stats, "_check_first_sample_alone", lambda *a: calls.append(1) or check(*a))
    model = copy.deepcopy(mlp)
    gp.gradient_stats(model, mlp_batches)
    gp.gradient_stats(model, mlp_batches)
    assert len(calls) == 1  # the same model, loss and sample shape: checked once
    gp.gradient_stats(model, mlp_batches, nn.CrossEntropyLoss())
    assert len(calls) == 2  # another loss: checked again
    model[-1] = nn.Sequential(Mix(), model[-1])  # a module that mixes samples is added
    with pytest.raises(ValueError, match="computed alone differs"):
        gp.gradient_stats(model, mlp_batches)


class Mix(nn.Module):
    def forward(self, h):
        return h - 0.02 * h.mean(0, keepdim=True)
