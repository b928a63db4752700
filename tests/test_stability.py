"""gp.ranking_stability: disjoint draws, the references, and its input checks."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import gradprune_lite as gp
from conftest import small_mlp
from gradprune_lite.core.stability import (
    random_overlap_expected,
    ranks,
    spearman,
    t_quantile,
)


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(5)
    return torch.randn(120, 1, 8, 8, generator=g), torch.randint(0, 10, (120,), generator=g)


def test_draws_are_disjoint_and_of_the_requested_size(mlp, data):
    result = gp.ranking_stability(mlp, "taylor", data, 0.9, n_draws=3, samples_per_draw=40)
    assert [len(d) for d in result.draws] == [40, 40, 40]
    for a, b in itertools.combinations(result.draws, 2):
        assert not set(a.tolist()) & set(b.tolist())
    assert result.overlaps.shape == (1, 3) and result.rank_correlations.shape == (1, 3)


def test_overlap_is_that_of_masks_scored_on_each_draw_alone(mlp, data):
    x, y = data
    result = gp.ranking_stability(mlp, "fisher", data, 0.8, samples_per_draw=50, batch_size=16)
    masks = [gp.global_masks(gp.score(mlp, "fisher", [(x[d], y[d])]), 0.8) for d in result.draws]
    assert result.overlap == pytest.approx(gp.mask_overlap(*masks), abs=1e-6)
    # the gradient criteria depend on the draw, so two draws do not give one mask
    assert result.overlap < 1.0


def test_magnitude_is_perfectly_stable_and_reported_as_reference(mlp, data):
    result = gp.ranking_stability(mlp, "magnitude", data, 0.9, n_draws=3, samples_per_draw=30)
    assert torch.equal(result.overlaps, torch.ones(1, 3, dtype=torch.float64))
    assert torch.allclose(result.rank_correlations, torch.ones(1, 3, dtype=torch.float64))
    assert result.magnitude_overlap == 1.0
    bare = gp.ranking_stability(mlp, "magnitude", data, 0.9, samples_per_draw=30, references=False)
    assert math.isnan(bare.magnitude_overlap) and math.isnan(bare.random_overlap)


@pytest.mark.parametrize("sparsity", [0.5, 0.9, 0.95])
def test_random_overlap_matches_its_expectation(sparsity):
    # Two independent random masks each keep p = 1 − s of N weights; they share ≈ p²N
    # (a hypergeometric count with spread ≈ p(1 − p)√N), so Jaccard ≈ p²N / (2pN − p²N)
    # = (1 − s)/(1 + s), with spread ≈ (1 − p) / ((2 − p)√N) per pair.
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(200, 200))
    x, y = torch.randn(20, 200), torch.randint(0, 200, (20,))
    result = gp.ranking_stability(model, "random", (x, y), sparsity, n_draws=3, samples_per_draw=5)
    expected, p, n = (1 - sparsity) / (1 + sparsity), 1 - sparsity, 40_000
    assert result.random_expected == pytest.approx(expected)
    tolerance = 5 * (1 - p) / ((2 - p) * n**0.5)
    assert result.overlap == pytest.approx(expected, abs=tolerance)
    assert result.random_overlap == pytest.approx(expected, abs=tolerance)
    assert abs(result.rank_correlation) < 0.02


def test_random_expectation_against_a_direct_simulation():
    sparsity, n = 0.9, 200_000
    kept = round((1 - sparsity) * n)
    g = torch.Generator().manual_seed(0)
    a = torch.zeros(n, dtype=torch.bool)
    b = torch.zeros(n, dtype=torch.bool)
    a[torch.randperm(n, generator=g)[:kept]] = True
    b[torch.randperm(n, generator=g)[:kept]] = True
    simulated = (a & b).sum().item() / (a | b).sum().item()
    assert random_overlap_expected(sparsity) == pytest.approx(simulated, abs=0.005)


def test_several_models_are_compared_within_and_across():
    first, flipped, other = small_mlp(), small_mlp(), small_mlp()
    with torch.no_grad():
        for w in gp.prunable_weights(flipped).values():
            w.neg_()  # the same magnitudes, so the same magnitude mask
        for w in gp.prunable_weights(other).values():
            w.copy_(torch.randn_like(w))
    g = torch.Generator().manual_seed(5)
    data = torch.randn(60, 1, 8, 8, generator=g), torch.randint(0, 10, (60,), generator=g)
    models = [first, flipped, other]
    result = gp.ranking_stability(models, "magnitude", data, 0.5, n_draws=2, samples_per_draw=30)
    assert result.overlaps.shape == (3, 1) and result.across_models.shape == (3,)
    first_flipped, first_other, flipped_other = result.across_models.tolist()
    assert first_flipped == 1.0
    assert first_other < 0.6 and flipped_other == first_other
    different = [small_mlp(), gp.models.lenet_300_100(seed=0)]
    with pytest.raises(ValueError, match="one architecture"):
        gp.ranking_stability(different, "magnitude", data, 0.5, samples_per_draw=30)


def test_spearman_against_an_independent_reference():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(500, generator=g)
    b = a + torch.randn(500, generator=g)
    b[:100] = 0.0  # ties get their average rank
    # Spearman = Pearson of average ranks; scipy-free reference with pairwise comparisons
    rank_a = (a[:, None] > a[None, :]).sum(1) + 0.5 * ((a[:, None] == a[None, :]).sum(1) - 1)
    rank_b = (b[:, None] > b[None, :]).sum(1) + 0.5 * ((b[:, None] == b[None, :]).sum(1) - 1)
    assert torch.allclose(ranks(a), rank_a.double()) and torch.allclose(ranks(b), rank_b.double())
    reference = torch.corrcoef(torch.stack([rank_a.double(), rank_b.double()]))[0, 1].item()
    assert spearman(a, b) == pytest.approx(reference, abs=1e-9)
    assert spearman(a, torch.zeros(500)) == 0.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_draws": 3, "samples_per_draw": 50}, "need 150 samples"),
        ({"n_draws": 1}, "n_draws"),
        ({"samples_per_draw": 0}, "samples_per_draw"),
        ({"sparsity": 1.0}, "strictly between"),
        ({"sparsity": 95}, "0.95, not 95"),
        ({"criterion": "nope"}, "unknown criterion"),
        ({"scope": "per-layer"}, "scope"),
    ],
)
def test_bad_input_raises_before_scoring(mlp, data, kwargs, message):
    x, y = data
    args = {"criterion": "taylor", "sparsity": 0.9, "samples_per_draw": 40, **kwargs}
    criterion, sparsity = args.pop("criterion"), args.pop("sparsity")
    with pytest.raises(ValueError, match=message):
        gp.ranking_stability(mlp, criterion, (x, y), sparsity, **args)


def test_bad_data_raises(mlp, data):
    x, y = data
    with pytest.raises(ValueError, match="one target per input"):
        gp.ranking_stability(mlp, "taylor", (x, y[:-1]), 0.9, samples_per_draw=10)
    with pytest.raises(ValueError, match="gp.Digits or a pair"):
        gp.ranking_stability(mlp, "taylor", x, 0.9, samples_per_draw=10)


def test_accepts_digits(mlp):
    digits = gp.Digits(torch.randn(40, 1, 8, 8), torch.randint(0, 10, (40,)), "random", False)
    result = gp.ranking_stability(mlp, "gradient", digits, 0.7, samples_per_draw=20)
    assert 0.0 < result.overlap <= 1.0
    assert "gradient at 70%" in str(result)


def test_several_sparsities_come_from_one_scoring_and_match_single_calls(mlp, data):
    both = gp.ranking_stability(mlp, "taylor", data, [0.5, 0.9], samples_per_draw=40)
    assert list(both) == [0.5, 0.9]
    for sparsity, result in both.items():
        alone = gp.ranking_stability(mlp, "taylor", data, sparsity, samples_per_draw=40)
        assert result.sparsity == sparsity
        assert torch.equal(result.overlaps, alone.overlaps)
        assert result.random_overlap == alone.random_overlap
    with pytest.raises(ValueError, match="empty"):
        gp.ranking_stability(mlp, "taylor", data, [], samples_per_draw=40)


def test_independent_pairs_are_disjoint_within_and_drawn_afresh_for_each_pair(mlp, data):
    x, y = data
    result = gp.ranking_stability(mlp, "fisher", data, 0.8, n_pairs=4, samples_per_draw=50)
    assert result.independent_pairs and len(result.draws) == 8
    assert result.overlaps.shape == (1, 4) and result.rank_correlations.shape == (1, 4)
    firsts = {tuple(sorted(result.draws[2 * p].tolist())) for p in range(4)}
    assert len(firsts) == 4  # every pair has its own split
    for p in range(4):
        a, b = result.draws[2 * p], result.draws[2 * p + 1]
        assert len(a) == 50 == len(b) and not set(a.tolist()) & set(b.tolist())
        masks = [gp.global_masks(gp.score(mlp, "fisher", [(x[d], y[d])]), 0.8) for d in (a, b)]
        assert result.overlaps[0, p].item() == pytest.approx(gp.mask_overlap(*masks), abs=1e-6)
    mean, low, high = result.overlap_interval()
    assert low < mean < high and mean == pytest.approx(result.overlap)
    assert "independent pairs" in str(result) and "95% CI" in str(result)
    bare = gp.ranking_stability(
        mlp, "fisher", data, 0.8, n_pairs=4, samples_per_draw=50, correlations=False
    )
    assert torch.equal(bare.overlaps, result.overlaps)
    assert bool(bare.rank_correlations.isnan().all())


def test_an_interval_needs_independent_pairs(mlp, data):
    shared = gp.ranking_stability(mlp, "taylor", data, 0.9, n_draws=3, samples_per_draw=40)
    with pytest.raises(ValueError, match="n_pairs"):
        shared.overlap_interval()
    for kwargs in ({"n_pairs": 0}, {"n_pairs": 3, "n_draws": 3}):
        with pytest.raises(ValueError, match="n_pairs"):
            gp.ranking_stability(mlp, "taylor", data, 0.9, samples_per_draw=40, **kwargs)


@pytest.mark.parametrize(
    "probability, df, table",
    [
        (0.975, 1, 12.706),
        (0.975, 4, 2.776),
        (0.975, 9, 2.262),
        (0.975, 30, 2.042),
        (0.95, 10, 1.812),
    ],
)
def test_t_quantile_against_printed_tables(probability, df, table):
    assert t_quantile(probability, df) == pytest.approx(table, abs=1e-3)


def test_mean_interval_covers_the_true_mean_at_its_confidence():
    # 4,000 samples of 5 normal values: a 95% t interval must cover the mean about 95% of
    # the time (binomial sd 0.34%); a normal-quantile interval would cover about 88%.
    g = torch.Generator().manual_seed(0)
    samples = torch.randn(4000, 5, generator=g, dtype=torch.float64)
    t = t_quantile(0.975, 4)
    half = t * samples.std(1) / 5**0.5
    covered = ((samples.mean(1) - half < 0) & (0 < samples.mean(1) + half)).double().mean()
    assert covered.item() == pytest.approx(0.95, abs=0.015)
    mean, low, high = gp.mean_interval(samples[0])
    assert mean == pytest.approx(samples[0].mean().item())
    assert (high - low) / 2 == pytest.approx(half[0].item())
    with pytest.raises(ValueError, match="at least two"):
        gp.mean_interval([0.3])
    with pytest.raises(ValueError, match="confidence"):
        gp.mean_interval([0.3, 0.4], confidence=95)
