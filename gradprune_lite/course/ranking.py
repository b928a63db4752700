"""Ranking comparisons for notebook 02: rank correlation of criteria, the cost of scoring
by each criterion, and the speed of selecting the kept weights."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune as torch_prune

from ..core.criteria import score
from ..core.selection import global_masks
from ..core.stability import ranks, spearman

__all__ = [
    "backward_pass_seconds",
    "rank_correlations",
    "ranking_timings",
    "ranks",
    "scoring_timings",
    "spearman",
]


def rank_correlations(flat: Mapping[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """All pairwise Spearman correlations: ``result[a][b]`` for flat score tensors."""
    rank_of = {name: ranks(v) for name, v in flat.items()}
    centred = {name: r - r.mean() for name, r in rank_of.items()}
    norm = {name: r.norm() for name, r in centred.items()}
    return {
        a: {b: float((centred[a] * centred[b]).sum() / (norm[a] * norm[b])) for b in flat}
        for a in flat
    }


def scoring_timings(
    model: nn.Module, criteria: Sequence[str], batches, repeats: int = 3, **options
) -> dict[str, float]:
    """Seconds (best of ``repeats``) for ``gp.score(model, criterion, batches)`` per criterion.

    This is the cost a criterion adds before any selection: a data-free criterion reads the
    weights, ``gradient``/``taylor``/``fisher`` need one recorded forward/backward pass per
    batch, ``grasp`` two passes plus a Hessian-gradient product, ``synflow`` one pass of a
    float32 |w| copy (float64 on the CPU only if it overflows). ``batches`` is materialised once so every criterion sees the same data, and
    the criteria take turns within each repeat so that a change in machine load affects
    them alike.
    """
    batches = list(batches)
    best = dict.fromkeys(criteria, float("inf"))
    for _ in range(repeats):
        for criterion in criteria:
            start = time.perf_counter()
            score(model, criterion, batches, **options)
            best[criterion] = min(best[criterion], time.perf_counter() - start)
    return best


def backward_pass_seconds(model: nn.Module, batches, repeats: int = 3) -> float:
    """Seconds (best of ``repeats``) of one cross-entropy forward/backward pass over ``batches``.

    The yardstick for ``scoring_timings``: a gradient criterion cannot cost less than this
    pass, so its cost reads best as a multiple of it. The model's ``.grad`` fields are left
    as they were (cleared when they were empty).
    """
    batches = list(batches)
    params = [p for p in model.parameters() if p.requires_grad]
    saved = [None if p.grad is None else p.grad.clone() for p in params]

    def one_pass():
        for inputs, targets in batches:
            F.cross_entropy(model(inputs), targets).backward()

    try:
        return _best_of(one_pass, repeats)
    finally:
        for p, grad in zip(params, saved):
            p.grad = grad


def _best_of(function, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def ranking_timings(
    sizes: Sequence[int], sparsity: float = 0.9, repeats: int = 3, seed: int = 0
) -> dict[int, dict[str, float]]:
    """Seconds (best of ``repeats``) to build global masks over ``size`` random scores.

    Three ways: ``full sort`` (concatenate, sort, read the threshold), ``gp selection``
    (``gp.global_masks``) and ``torch global_unstructured`` (L1 on two Linear layers
    holding the scores as weights). The scores are split over two layers, 3:1.
    """
    generator = torch.Generator().manual_seed(seed)
    result = {}
    for size in sizes:
        first = (3 * size // 4) // 1000
        shapes = {"a": (first, 1000), "b": ((size - first * 1000) // 1000, 1000)}
        scores = {n: torch.rand(s, generator=generator) for n, s in shapes.items()}

        def full_sort(scores=scores):
            flat = torch.cat([s.flatten() for s in scores.values()])
            k = round(sparsity * flat.numel())
            threshold = flat.sort().values[k - 1]
            return {n: s > threshold for n, s in scores.items()}

        layers = []
        for s in scores.values():
            layer = nn.Linear(1, 1, bias=False)
            layer.weight = nn.Parameter(s.clone())
            layers.append(layer)

        def torch_global(layers=layers):
            torch_prune.global_unstructured(
                [(m, "weight") for m in layers], torch_prune.L1Unstructured, amount=sparsity
            )
            for m in layers:
                torch_prune.remove(m, "weight")

        result[size] = {
            "full sort": _best_of(full_sort, repeats),
            "gp selection": _best_of(lambda scores=scores: global_masks(scores, sparsity), repeats),
            "torch global_unstructured": _best_of(torch_global, repeats),
        }
    return result
