"""Exact k-th value selection over many tensors, and the masks built from it.

Ranking every parameter does not need a sort. We need one number, the k-th smallest
score t, and then a mask ``score > t`` (plus a deterministic tie-break at t).

``kth_smallest`` finds t exactly without concatenating the layers:

1. draw a small random sample of the scores and sort it (cheap);
2. read off a band [lo, hi] around the k/N quantile that holds the answer with
   overwhelming probability (a 4-sigma margin of the sample quantile);
3. in one sweep per layer count the scores below ``lo`` and gather those inside the band
   (about 1-2% of all scores);
4. select within the band. If the band missed (it is checked, never assumed), widen it
   and repeat; the answer is exact either way.

All sweeps are element-wise torch ops, which run on every CPU core and on CUDA alike;
on CUDA the small band is resolved with ``sort`` because ``kthvalue`` is slow there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from ._validate import check_scores, check_sparsity

#: Below this many scores in total, select directly on the concatenation.
SMALL_INPUT = 1 << 17
#: Size of the random sample that places the band.
SAMPLE_SIZE = 1 << 16
#: Half-width of the band, in standard deviations of the sample quantile.
BAND_SIGMAS = 4.0


def _select_in(values: torch.Tensor, k: int) -> torch.Tensor:
    """k-th smallest (1-based) of a flat tensor that is small enough to select directly."""
    if values.is_cuda:
        return values.sort().values[k - 1]
    return values.kthvalue(k).values


def _sample(tensors: Sequence[torch.Tensor], total: int, generator: torch.Generator):
    parts = []
    for t in tensors:
        n = t.numel()
        m = max(1, math.ceil(SAMPLE_SIZE * n / total))
        idx = torch.randint(n, (m,), generator=generator, device="cpu").to(t.device)
        parts.append(t.reshape(-1)[idx])
    return torch.cat(parts).sort().values


def kth_smallest(tensors: Sequence[torch.Tensor], k: int) -> torch.Tensor:
    """Return the k-th smallest value (1-based) among all elements of ``tensors``.

    Equals ``torch.cat([t.flatten() for t in tensors]).kthvalue(k).values`` exactly,
    ties, negative values and ±0 included, without forming that concatenation.

    Args:
        tensors: floating tensors of any shapes, all on one device, with no NaN.
        k: 1 <= k <= total number of elements.

    Returns:
        A 0-dim tensor on the tensors' device.
    """
    total = sum(t.numel() for t in tensors)
    if not 1 <= k <= total:
        raise ValueError(f"k must be in [1, {total}], got {k}.")
    if total <= SMALL_INPUT:
        return _select_in(torch.cat([t.reshape(-1) for t in tensors]), k)

    generator = torch.Generator().manual_seed(0x5EED)
    sample = _sample(tensors, total, generator)
    m = sample.numel()
    q = k / total
    margin = BAND_SIGMAS * math.sqrt(q * (1 - q) / m) + 2.0 / m
    lo_index, hi_index = math.floor((q - margin) * m), math.ceil((q + margin) * m)
    lo = sample[lo_index] if lo_index >= 0 else None
    hi = sample[hi_index] if hi_index < m else None
    while True:
        below, band = _count_below_and_band(tensors, lo, hi)
        rank = k - below
        if rank < 1:  # the answer lies under the band: widen downwards
            lo = None
        elif rank > band.numel():  # above it: widen upwards
            hi = None
        else:
            return _select_in(band, rank)


def _count_below_and_band(tensors, lo, hi) -> tuple[int, torch.Tensor]:
    """One sweep: how many values are < lo, and the values in [lo, hi] (None = unbounded)."""
    below = 0
    parts = []
    for t in tensors:
        flat = t.reshape(-1)
        if lo is None and hi is None:
            parts.append(flat)
            continue
        if lo is None:
            parts.append(flat[flat <= hi])
            continue
        under = flat < lo
        below += int(under.sum())
        if hi is None:
            parts.append(flat[~under])
        else:
            # under ⊂ (flat <= hi), so xor leaves exactly lo <= x <= hi.
            parts.append(flat[(flat <= hi).logical_xor_(under)])
    return below, torch.cat(parts)


def _masks_for_threshold(tensors: Mapping[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """Keep-masks that prune exactly the k lowest values, ties broken by position.

    Among values equal to the threshold, those earliest in (dict order, flat index)
    are pruned first, so the result is deterministic even for all-equal scores.
    """
    total = sum(t.numel() for t in tensors.values())
    if k == 0:
        return {name: torch.ones_like(t, dtype=torch.bool) for name, t in tensors.items()}
    if k == total:
        return {name: torch.zeros_like(t, dtype=torch.bool) for name, t in tensors.items()}
    threshold = kth_smallest(list(tensors.values()), k)
    masks = {name: t > threshold for name, t in tensors.items()}
    # Everything <= t is pruned now, which is at least k entries; the surplus are ties
    # at t, and the last of them (in dict order, flat index) are given back.
    surplus = sum(m.numel() - int(m.sum()) for m in masks.values()) - k
    if surplus == 0:
        return masks
    for name in reversed(list(tensors)):
        if surplus == 0:
            break
        flat = tensors[name].reshape(-1)
        equal = (flat == threshold).nonzero().squeeze(1)
        if equal.numel() == 0:
            continue
        keep_here = equal[-min(surplus, equal.numel()) :]
        masks[name].view(-1)[keep_here] = True
        surplus -= keep_here.numel()
    return masks


def _prepare(scores: Mapping[str, torch.Tensor], sparsity: float) -> tuple[dict, float]:
    sparsity = check_sparsity(sparsity)
    check_scores(scores)
    return {name: s.detach() for name, s in scores.items()}, sparsity


def global_masks(scores: Mapping[str, torch.Tensor], sparsity: float) -> dict[str, torch.Tensor]:
    """One threshold for all layers: prune the ``round(sparsity·N)`` lowest scores overall.

    Args:
        scores: dict name → tensor shaped like the weight; higher means keep.
        sparsity: fraction of all N entries to prune, in [0, 1].

    Returns:
        dict name → bool tensor shaped like the score (True = keep), on the score's device.
        Exactly ``round(sparsity·N)`` entries are False. Ties at the threshold are pruned
        in order of (dict order, flat index). On magnitude scores the result equals
        ``torch.nn.utils.prune.global_unstructured(..., L1Unstructured, amount=sparsity)``.
    """
    tensors, sparsity = _prepare(scores, sparsity)
    total = sum(t.numel() for t in tensors.values())
    return _masks_for_threshold(tensors, round(sparsity * total))


def layerwise_masks(scores: Mapping[str, torch.Tensor], sparsity: float) -> dict[str, torch.Tensor]:
    """One threshold per layer: prune ``round(sparsity·n_i)`` lowest scores of each layer.

    Args and Returns as in ``global_masks``; every layer ends with the same sparsity.
    """
    tensors, sparsity = _prepare(scores, sparsity)
    masks = {}
    for name, t in tensors.items():
        masks.update(_masks_for_threshold({name: t}, round(sparsity * t.numel())))
    return masks
