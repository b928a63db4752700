"""Exercise 2: one global threshold found by selection, not by sorting."""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Callable

import numpy as np
import torch

from ...core.selection import global_masks, layerwise_masks
from ._common import CheckFailed, call, check_same_keys, self_check

_SORTS = [
    (torch, "sort"),
    (torch, "argsort"),
    (torch, "msort"),
    (torch.Tensor, "sort"),
    (torch.Tensor, "argsort"),
    (torch.Tensor, "msort"),
    (np, "sort"),
    (np, "argsort"),
    (builtins, "sorted"),
]


class _SortCalled(Exception):
    """Raised by a sorting function while the student's code runs under ``_no_sorting``."""


@contextlib.contextmanager
def _no_sorting():
    """While active, every sorting function in ``_SORTS`` raises ``_SortCalled``."""
    originals = [(owner, name, getattr(owner, name)) for owner, name in _SORTS]

    def forbid(label):
        def sorting(*args, **kwargs):
            raise _SortCalled(label)

        return sorting

    try:
        for owner, name, _ in originals:
            label = f"{getattr(owner, '__name__', owner)}.{name}"
            setattr(owner, name, forbid(label))
        yield
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


def _masks(global_threshold: Callable, scores, sparsity: float):
    try:
        with _no_sorting():
            return call(global_threshold, "global_threshold", scores, sparsity)
    except CheckFailed as failed:
        if isinstance(failed.__cause__, _SortCalled):
            raise CheckFailed(
                f"You sorted ({failed.__cause__} was called): find the k-th smallest score by "
                "selection, with torch.kthvalue."
            ) from None
        if sparsity == 0 and isinstance(failed.__cause__, RuntimeError):
            raise CheckFailed(
                "At sparsity 0, k = 0 and torch.kthvalue needs k >= 1: when k == 0, keep every "
                "weight."
            ) from None
        raise


@self_check
def check_global_threshold(global_threshold: Callable) -> bool:
    """Check ``global_threshold(scores, sparsity) -> dict name → bool mask`` (True = keep).

    One threshold over all layers, found by selection (``torch.kthvalue``): the check makes
    every sorting function (torch/numpy sort and argsort, ``sorted``) raise while it runs.
    Reference: ``gp.global_masks``.
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
