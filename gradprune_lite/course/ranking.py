"""Ranking comparisons for notebook 02: rank correlation of criteria, and ranking speed."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from ..core.selection import global_masks


def ranks(values: torch.Tensor) -> torch.Tensor:
    """Rank (0 … n−1, as float64) of every element of a 1-D tensor; ties in index order."""
    order = values.argsort(stable=True)
    result = torch.empty_like(order, dtype=torch.float64)
    result[order] = torch.arange(len(values), dtype=torch.float64)
    return result


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two equally long 1-D tensors (Pearson of the ranks)."""
    if a.shape != b.shape or a.dim() != 1:
        raise ValueError(f"spearman needs two 1-D tensors of one length, got {a.shape}, {b.shape}.")
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def rank_correlations(flat: Mapping[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """All pairwise Spearman correlations: ``result[a][b]`` for flat score tensors."""
    rank_of = {name: ranks(v) for name, v in flat.items()}
    centred = {name: r - r.mean() for name, r in rank_of.items()}
    norm = {name: r.norm() for name, r in centred.items()}
    return {
        a: {b: float((centred[a] * centred[b]).sum() / (norm[a] * norm[b])) for b in flat}
        for a in flat
    }


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
