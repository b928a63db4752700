"""Criteria: each score checked against its formula on independently computed parts."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradprune_lite as gp

BUILT_IN = {"random", "magnitude", "gradient", "taylor", "snip", "fisher", "grasp", "synflow"}


def batch_gradient(model, batches):
    """Mean gradient over all samples, by plain autograd (independent of our hooks)."""
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    model = copy.deepcopy(model)
    F.cross_entropy(model(x), y).backward()
    return {n: p.grad for n, p in model.named_parameters()}


def test_registry_holds_the_built_in_criteria():
    assert BUILT_IN <= set(gp.CRITERIA)


@pytest.mark.parametrize("criterion", sorted(BUILT_IN))
def test_every_criterion_scores_every_prunable_weight(criterion, cnn, cnn_batches):
    scores = gp.score(cnn, criterion, cnn_batches)
    weights = gp.prunable_weights(cnn)
    assert list(scores) == list(weights)
    for name, s in scores.items():
        assert s.shape == weights[name].shape
        assert s.dtype == weights[name].dtype
        assert torch.isfinite(s).all()


def test_formulas(mlp, mlp_batches):
    g = batch_gradient(mlp, mlp_batches)
    stats = gp.gradient_stats(mlp, mlp_batches)
    for name, w in gp.prunable_weights(mlp).items():
        w = w.detach()
        torch.testing.assert_close(gp.score(mlp, "magnitude")[name], w.abs())
        torch.testing.assert_close(gp.score(mlp, "gradient", mlp_batches)[name], g[name].abs())
        torch.testing.assert_close(
            gp.score(mlp, "taylor", mlp_batches)[name], (w * g[name]).abs(), rtol=1e-4, atol=1e-8
        )
        torch.testing.assert_close(
            gp.score(mlp, "fisher", mlp_batches)[name], 0.5 * w.square() * stats[name].sq_mean
        )


def test_snip_is_normalised_taylor(mlp, mlp_batches):
    snip = gp.score(mlp, "snip", mlp_batches)
    taylor = gp.score(mlp, "taylor", mlp_batches)
    total = sum(float(s.sum()) for s in snip.values())
    assert total == pytest.approx(1.0, rel=1e-5)
    ratio = [snip[n] / taylor[n].clamp(min=1e-30) for n in snip]
    nonzero = torch.cat([r[taylor[n] > 0] for r, n in zip(ratio, snip)])
    torch.testing.assert_close(nonzero, torch.full_like(nonzero, float(nonzero[0])))


def test_grasp_matches_hessian_gradient_product(mlp, mlp_batches):
    """w ⊙ Hg with Hg from torch.autograd.functional.hvp on the temperature-scaled loss."""
    x = torch.cat([b[0] for b in mlp_batches])
    y = torch.cat([b[1] for b in mlp_batches])
    names = list(gp.prunable_weights(mlp))
    params = dict(mlp.named_parameters())
    base = {n: p.detach() for n, p in params.items()}

    def loss(*ws):
        p = dict(base, **dict(zip(names, ws)))
        return F.cross_entropy(torch.func.functional_call(mlp, p, (x,)) / 200.0, y)

    ws = tuple(base[n] for n in names)
    g = torch.autograd.grad(loss(*[w.requires_grad_() for w in ws]), ws)
    ws = tuple(w.detach() for w in ws)
    _, hg = torch.autograd.functional.hvp(loss, ws, g)
    scores = gp.score(mlp, "grasp", [(x, y)])
    for name, w, h in zip(names, ws, hg):
        torch.testing.assert_close(scores[name], w * h, rtol=1e-3, atol=1e-9)


def test_synflow_is_data_free_and_leaves_the_model_alone(mlp):
    before = copy.deepcopy(mlp.state_dict())
    scores = gp.score(mlp, "synflow", input_shape=(1, 8, 8))
    for k, v in mlp.state_dict().items():
        assert torch.equal(v, before[k])
    # Reference: R = 1ᵀ |W3| relu(|W1| x + |b1|) + ... for all-ones x, differentiated by hand.
    probe = copy.deepcopy(mlp).double()
    with torch.no_grad():
        for p in probe.parameters():
            p.abs_()
    probe(torch.ones(1, 1, 8, 8, dtype=torch.float64)).sum().backward()
    raw = {n: (p * p.grad).abs().detach() for n, p in probe.named_parameters() if n in scores}
    scale = max(float(r.max()) for r in raw.values())
    for name, r in raw.items():
        torch.testing.assert_close(scores[name], (r / scale).float())


def test_synflow_takes_the_input_shape_from_batches(mlp, mlp_batches):
    a = gp.score(mlp, "synflow", mlp_batches)
    b = gp.score(mlp, "synflow", input_shape=(1, 8, 8))
    for name in a:
        torch.testing.assert_close(a[name], b[name])


def test_random_is_seeded(mlp):
    a, b = gp.score(mlp, "random", seed=1), gp.score(mlp, "random", seed=1)
    c = gp.score(mlp, "random", seed=2)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not all(torch.equal(a[n], c[n]) for n in a)


def test_random_is_independent_of_a_model_seeded_alike():
    """Seeding both with 0 must not make the 'random' baseline follow the initial weights."""
    torch.manual_seed(0)
    model = nn.Linear(500, 400)
    w = model.weight.detach().flatten()
    r = gp.score(model, "random", seed=0)["weight"].flatten()
    centred_w, centred_r = w - w.mean(), r - r.mean()
    correlation = float((centred_w * centred_r).sum() / (centred_w.norm() * centred_r.norm()))
    assert abs(correlation) < 0.02  # 200,000 pairs: independent draws give |r| ≈ 0.002


def test_register_criterion_as_decorator_and_call(mlp, mlp_batches):
    @gp.register_criterion("test_snr")
    def snr(ctx):
        return {name: s.snr for name, s in ctx.stats.items()}

    gp.register_criterion(
        "test_neg_magnitude", lambda ctx: {n: -w.abs() for n, w in ctx.weights.items()}
    )
    try:
        scores = gp.score(mlp, "test_snr", mlp_batches)
        stats = gp.gradient_stats(mlp, mlp_batches)
        torch.testing.assert_close(scores["1.weight"], stats["1.weight"].snr)
        neg = gp.score(mlp, "test_neg_magnitude")
        assert (neg["1.weight"] <= 0).all()
    finally:
        gp.CRITERIA.pop("test_snr")
        gp.CRITERIA.pop("test_neg_magnitude")


def test_unknown_criterion_lists_valid_names(mlp):
    with pytest.raises(ValueError, match="valid names are .*magnitude"):
        gp.score(mlp, "magnitud")


@pytest.mark.parametrize("criterion", ["gradient", "taylor", "snip", "fisher", "grasp"])
def test_data_criteria_need_batches(criterion, mlp):
    with pytest.raises(ValueError, match="needs data|no samples"):
        gp.score(mlp, criterion)
    with pytest.raises(ValueError, match="no samples"):
        gp.score(mlp, criterion, [])


def test_synflow_without_shape_or_data_raises(mlp):
    with pytest.raises(ValueError, match="input_shape"):
        gp.score(mlp, "synflow")


def test_no_prunable_layers():
    with pytest.raises(ValueError, match="no prunable layers"):
        gp.score(nn.Sequential(nn.ReLU()), "magnitude")


def test_a_criterion_that_misses_a_layer_is_a_clear_error():
    @gp.register_criterion("first_layer_only")
    def first_layer_only(ctx):
        name = next(iter(ctx.weights))
        return {name: ctx.weights[name].abs()}

    model = gp.models.lenet_300_100(seed=0)
    try:
        with pytest.raises(ValueError, match=r"no score tensor for \['fc2.weight', 'fc3.weight'\]"):
            gp.score(model, "first_layer_only")
        before = copy.deepcopy(model.state_dict())
        with pytest.raises(ValueError, match="no score tensor"):
            gp.prune(model, "first_layer_only", 0.5)
        assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    finally:
        del gp.CRITERIA["first_layer_only"]
