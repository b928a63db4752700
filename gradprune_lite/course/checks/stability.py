"""Exercise 9: ranking stability, measured on disjoint draws with the Jaccard index."""

from __future__ import annotations

from collections.abc import Callable

import torch

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


@self_check
def check_disjoint_draws(disjoint_draws: Callable) -> bool:
    """Check ``disjoint_draws(n, total, seed) -> (first, second)``: two index tensors of n
    distinct indices in [0, total) with no index in common, reproducible from ``seed``."""
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
    assert not torch.equal(first, torch.arange(40)), "Draw at random, not the first n indices."
