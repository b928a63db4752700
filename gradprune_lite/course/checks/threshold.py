"""Exercise 2: one global threshold found by selection, not by sorting."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ...core.selection import global_masks, layerwise_masks
from ._common import CheckFailed, check_same_keys, self_check
from ._watch import watched_call

# Operators and built-ins that sort, and what they are called by (why: see the docstring of
# check_global_threshold).
_SORTING = {
    "sort": "a sort ran (torch.sort, argsort, msort or torch.quantile)",
    "topk": "torch.topk ran (a partial sort of the k smallest)",
    "_unique2": "torch.unique ran (it sorts to find duplicates)",
    "_unique": "torch.unique ran (it sorts to find duplicates)",
    "unique_dim": "torch.unique ran (it sorts to find duplicates)",
    "sorted": "Python's sorted() ran",
    "list.sort": "list.sort() ran",
    "ndarray.sort": "a NumPy sort ran (np.sort or np.unique)",
    "ndarray.argsort": "np.argsort ran",
}


def _masks(global_threshold: Callable, scores, sparsity: float):
    try:
        result, trace = watched_call(
            global_threshold, "global_threshold", scores, sparsity, python=True
        )
    except CheckFailed as failed:
        if sparsity == 0 and isinstance(failed.__cause__, RuntimeError):
            raise CheckFailed(
                "At sparsity 0, k = 0 and torch.kthvalue needs k >= 1: when k == 0, keep every "
                "weight."
            ) from None
        raise
    sorting = trace.ran(_SORTING)
    assert not sorting, (
        f"You sorted: {_SORTING[sorting[0]]}; find the k-th smallest score by selection, "
        "with torch.kthvalue."
    )
    return result


@self_check
def check_global_threshold(global_threshold: Callable) -> bool:
    """Check ``global_threshold(scores, sparsity) -> dict name → bool mask`` (True = keep).

    One threshold over all layers, found by selection: the check records the operators (and
    built-in functions) the student's code runs, and rejects any that orders more than the
    one score the exercise needs. Reference: ``gp.global_masks``.

    Rejected, as measured in their dispatch traces:
    - ``aten.sort``: torch.sort, Tensor.sort, argsort, msort, and also torch.quantile and
      nanquantile, which sort their input internally;
    - ``aten.topk``: a partial sort, it returns the k smallest scores (ordered by default),
      k values to find one;
    - torch.unique (``aten._unique2``): it sorts to find duplicates;
    - the ways out of torch: ``sorted``, ``list.sort``, NumPy's ``ndarray.sort`` and
      ``argsort`` (np.sort, np.argsort and np.unique end in these).
    Allowed, because they select one order statistic without ordering the rest:
    ``torch.kthvalue`` (quickselect, the exercise's tool), ``torch.median`` (nth_element on
    CPU, though it only gives the middle score), ``np.partition``, and any selection
    written by hand (partition around a pivot, bisection on the threshold with counts).
    """
    generator = torch.Generator().manual_seed(1)
    # Layers with different score scales, so one threshold per layer gives another answer.
    scores = {
        "fc1.weight": torch.rand(30, 20, generator=generator),
        "fc2.weight": 3 * torch.rand(10, 30, generator=generator),
        "fc3.weight": 0.5 * torch.rand(4, 10, generator=generator),
    }
    total = sum(s.numel() for s in scores.values())
    # 0.5·940 and 0.9·940 are whole numbers; 0.37·940 = 347.8 rounds up, so int() differs.
    for sparsity in (0.0, 0.5, 0.9, 0.37, 1.0):
        expected = global_masks(scores, sparsity)
        result = _masks(global_threshold, scores, sparsity)
        check_same_keys(result, expected, "global_threshold")
        result = {name: m.bool() for name, m in result.items()}
        if all(torch.equal(result[n], expected[n]) for n in expected):
            continue
        pruned = sum(int((~m).sum()) for m in result.values())
        want = round(sparsity * total)
        assert sparsity != 0, f"At sparsity 0 nothing may be pruned; you pruned {pruned}."
        assert not all(torch.equal(result[n], ~expected[n]) for n in expected), (
            "You kept the lowest scores: True means keep, so keep score > t."
        )
        per_layer = layerwise_masks(scores, sparsity)
        assert not all(torch.equal(result[n], per_layer[n]) for n in expected), (
            "You used one threshold per layer: select the k-th smallest once, over all layers."
        )
        assert not (pruned == int(sparsity * total) != want), (
            f"At sparsity {sparsity} you pruned {pruned} = int({sparsity}·{total}); "
            f"k = round(sparsity·N) = {want}."
        )
        assert pruned != want + 1, (
            f"At sparsity {sparsity} you pruned {pruned}, one too many: prune score <= t, "
            "where t = kthvalue(k) is the k-th smallest (k counts from 1)."
        )
        assert pruned != want - 1, (
            f"At sparsity {sparsity} you pruned {pruned}, one too few: torch.kthvalue(k) is "
            "already the k-th smallest (k counts from 1), and the weight at t is pruned."
        )
        raise AssertionError(
            f"At sparsity {sparsity} you pruned {pruned} of {total}; expected {want} "
            "with one global threshold."
        )
