"""course/ranking.py: rank correlations of criteria and the scoring-cost helper."""

import torch

import gradprune_lite as gp


def test_rank_correlations_match_pairwise_spearman():
    g = torch.Generator().manual_seed(0)
    flat = {"a": torch.randn(300, generator=g), "b": torch.randn(300, generator=g)}
    flat["c"] = flat["a"] * 3 + 1  # same order as a
    table = gp.ranking.rank_correlations(flat)
    assert abs(table["a"]["c"] - 1) < 1e-12
    assert abs(table["a"]["b"] - gp.ranking.spearman(flat["a"], flat["b"])) < 1e-12


def test_scoring_timings_times_every_criterion_on_the_same_batches(mlp, mlp_batches):
    batches = iter(mlp_batches)  # a one-shot iterator must serve every criterion
    timings = gp.ranking.scoring_timings(mlp, ["magnitude", "fisher"], batches, repeats=2)
    assert list(timings) == ["magnitude", "fisher"]
    assert all(0 < t < float("inf") for t in timings.values())


def test_backward_pass_seconds_leaves_the_gradients_as_they_were(mlp, mlp_batches):
    first = next(iter(mlp.parameters()))
    first.grad = torch.full_like(first, 7.0)
    seconds = gp.ranking.backward_pass_seconds(mlp, iter(mlp_batches), repeats=2)
    assert 0 < seconds < float("inf")
    assert torch.equal(first.grad, torch.full_like(first, 7.0))
    assert all(p.grad is None for p in list(mlp.parameters())[1:])
