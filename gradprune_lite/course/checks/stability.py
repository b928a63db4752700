"""Exercise 9: ranking stability, measured on disjoint draws with the Jaccard index, and
the confidence interval of a mean over independent pairs of draws."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ...core.stability import mean_interval, t_quantile
from ._common import call, check_tensor, self_check


def _masks(seed: int, keep: float = 0.3):
    generator = torch.Generator().manual_seed(seed)
    return {
        "fc1.weight": torch.rand(20, 30, generator=generator) < keep,
        "fc2.weight": torch.rand(5, 20, generator=generator) < 0.8,
    }


@self_check
def check_jaccard(jaccard: Callable) -> bool:
    """Check ``jaccard(masks_a, masks_b) -> float``: |kept ∩| / |kept ∪| pooled over all layers."""
    a, b = _masks(14), _masks(15)
    both = sum(int((a[n] & b[n]).sum()) for n in a)
    either = sum(int((a[n] | b[n]).sum()) for n in a)
    got = float(call(jaccard, "jaccard", a, b))
    if abs(got - both / either) < 1e-6:
        assert abs(float(call(jaccard, "jaccard", a, a)) - 1.0) < 1e-6, "jaccard(a, a) must be 1."
        return
    pruned_both = sum(int((~a[n] & ~b[n]).sum()) for n in a)
    pruned_either = sum(int((~a[n] | ~b[n]).sum()) for n in a)
    assert abs(got - pruned_both / pruned_either) > 1e-6, (
        "You compared the pruned sets; compare the kept sets (mask True)."
    )
    per_layer = sum(float((a[n] & b[n]).sum() / (a[n] | b[n]).sum()) for n in a) / len(a)
    assert abs(got - per_layer) > 1e-6, (
        "You averaged per-layer Jaccards; pool the counts over all layers first."
    )
    raise AssertionError(f"jaccard = {got:.4f}, expected |A∩B|/|A∪B| = {both / either:.4f}.")


def _adjacent_pairs(draw: torch.Tensor) -> int:
    """How many pairs (i, i + 1) of indices are both in ``draw``."""
    members = set(draw.tolist())
    return sum(1 + i in members for i in members)


@self_check
def check_disjoint_draws(disjoint_draws: Callable) -> bool:
    """Check ``disjoint_draws(n, total, seed) -> (first, second)``: two index tensors of n
    distinct indices in [0, total) with no index in common, reproducible from ``seed``,
    and random: measured over 40 seeds (n = 40 of total = 1,000), not only that seeds differ.

    - No runs, no even spacing: the number of neighbour pairs (i, i+1) inside one draw must
      be near what a uniform draw gives, n(n−1)/total = 1.56 per draw, 125 over the 80 draws:
      consecutive blocks give 39 per draw, every other index 0. Accepted: 40 to 400.
    - Spread: every tenth of [0, total) must be drawn at least half and at most twice as
      often as a uniform draw would (320 times in all; a uniform draw falls outside with
      probability far below 1e-9).
    - The second draw is not a shifted copy of the first (second − first constant).
    """
    first, second = call(disjoint_draws, "disjoint_draws", 40, 100, 0)
    first = check_tensor(torch.as_tensor(first), (40,), "the first draw")
    second = check_tensor(torch.as_tensor(second), (40,), "the second draw")
    joined = torch.cat([first, second])
    assert int(joined.min()) >= 0 and int(joined.max()) < 100, "Indices must lie in [0, total)."
    assert len(set(first.tolist())) == 40 == len(set(second.tolist())), (
        "A draw repeats an index: draw without replacement (torch.randperm)."
    )
    assert not set(first.tolist()) & set(second.tolist()), (
        "The two draws share digits: take both from one permutation, first n and next n."
    )
    again = call(disjoint_draws, "disjoint_draws", 40, 100, 0)
    assert torch.equal(torch.as_tensor(again[0]), first), "The same seed must give the same draws."
    other = call(disjoint_draws, "disjoint_draws", 40, 100, 1)
    assert not torch.equal(torch.as_tensor(other[0]), first), (
        "Another seed must give other draws: use torch.Generator().manual_seed(seed)."
    )
    n, total, seeds = 40, 1000, 40
    draws = []
    for seed in range(seeds):
        a, b = call(disjoint_draws, "disjoint_draws", n, total, seed)
        a, b = torch.as_tensor(a).reshape(-1).long(), torch.as_tensor(b).reshape(-1).long()
        assert len(a) == n == len(b) and not set(a.tolist()) & set(b.tolist()), (
            f"With n={n}, total={total}, seed={seed} the draws are not two disjoint sets of n."
        )
        draws += [a, b]
    pairs = sum(_adjacent_pairs(d) for d in draws)
    expected = len(draws) * n * (n - 1) / total
    assert pairs < 3.2 * expected, (
        f"Your draws crowd together ({pairs} neighbour pairs in {len(draws)} draws, about "
        f"{expected:.0f} if random): consecutive blocks are not a random sample."
    )
    assert pairs > 0.32 * expected, (
        f"Your draws are evenly spaced ({pairs} neighbour pairs in {len(draws)} draws, about "
        f"{expected:.0f} if random): draw at random, from one torch.randperm."
    )
    counts = torch.bincount(torch.cat(draws) * 10 // total, minlength=10)
    share = len(draws) * n / 10
    assert bool((counts >= share / 2).all() and (counts <= 2 * share).all()), (
        f"Some tenths of [0, total) are drawn far too rarely ({counts.tolist()}, about "
        f"{share:.0f} each if uniform): draw from all of [0, total)."
    )
    assert all(len(set((b - a).tolist())) > 1 for a, b in zip(draws[::2], draws[1::2])), (
        "The second draw is the first shifted by a constant: take the next n of one "
        "random permutation instead."
    )


@self_check
def check_mean_interval(student_interval: Callable) -> bool:
    """Check ``mean_interval(values) -> (mean, low, high)``: the mean of independent values
    and its two-sided 95% t interval, mean ± t(0.975, n − 1) · s / √n with the sample
    standard deviation s (n − 1 in its denominator). Compared with the library's
    ``gp.mean_interval`` on samples of 3, 5 and 10 values, to 0.1% of the half-width (so
    that a t read from a printed table passes); the usual slips are named."""
    generator = torch.Generator().manual_seed(9)
    for n in (3, 5, 10):
        values = (0.4 + 0.05 * torch.randn(n, generator=generator, dtype=torch.float64)).tolist()
        got = call(student_interval, "mean_interval", list(values))
        assert isinstance(got, (tuple, list)) and len(got) == 3, (
            "mean_interval must return three numbers: (mean, low, high)."
        )
        mean, low, high = (float(v) for v in got)
        want_mean, want_low, want_high = mean_interval(values)
        assert abs(mean - want_mean) < 1e-9, f"The mean of {n} values is wrong: {mean}."
        half, want_half = (high - low) / 2, (want_high - want_low) / 2
        assert abs((low + high) / 2 - want_mean) < 1e-9, "The interval must be centred on the mean."
        # A t from a printed table (3 decimals) is exact to about 1e-4 of the half-width.
        if abs(half - want_half) < 1e-3 * want_half:
            continue
        sd = float(torch.tensor(values, dtype=torch.float64).std())
        population = sd * math.sqrt((n - 1) / n)
        t = t_quantile(0.975, n - 1)
        assert abs(half - 1.96 * sd / math.sqrt(n)) > 1e-3 * want_half, (
            f"With {n} values use Student's t with {n - 1} degrees of freedom, not the normal 1.96."
        )
        assert abs(half - t * population / math.sqrt(n)) > 1e-3 * want_half, (
            "Use the sample standard deviation, with n − 1 in the denominator (torch's default)."
        )
        assert abs(half - t * sd) > 1e-3 * want_half, (
            "The interval is for the mean: divide the standard deviation by √n."
        )
        raise AssertionError(
            f"For {n} values the half-width is {half:.5f}; expected "
            f"t(0.975, {n - 1}) · s / √n = {want_half:.5f}."
        )
