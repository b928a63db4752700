"""Exact k-th value selection over many tensors, and the masks built from it.

Ranking every parameter does not need a sort. We need one number, the k-th smallest
score t, and then a mask ``score > t`` (plus a deterministic tie-break at t).

``kth_smallest`` finds t exactly without concatenating the layers:

1. draw a small random sample of the scores and sort it (cheap);
2. read off a band [lo, hi] around the k/N quantile that holds the answer with
   overwhelming probability (a 4-sigma margin of the sample quantile);
3. in one sweep count the scores below ``lo`` and gather those inside the band
   (about 1-2% of all scores);
4. select within the band. If the band missed (it is checked, never assumed), widen it
   and repeat; the answer is exact either way.

The sweep is the only full pass. On CPU, with the optional numba extra
(``gradprune-lite[fast]``), it is a small compiled kernel that reads each score once
(``_band_kernel``); without numba, and on CUDA, it is a few element-wise
torch ops over cache-sized chunks. On CUDA the small band is resolved with ``sort``
because ``kthvalue`` is slow there. The sweep also yields how many scores are <= t, so
building masks needs just one more pass (``score > t``) and no counting.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from . import _band_kernel
from ._validate import (
    check_exclude,
    check_min_density,
    check_scores,
    check_sparsity,
    excluded_names,
)

#: Below this many scores in total, select directly on the concatenation.
SMALL_INPUT = 1 << 17
#: Size of the random sample that places the band.
SAMPLE_SIZE = 1 << 16
#: Half-width of the band, in standard deviations of the sample quantile.
BAND_SIGMAS = 4.0
#: Elements per step of the pure-torch sweep: its bool temporaries stay in cache.
TORCH_CHUNK = 1 << 20
_SEED = 0x5EED


def _select_in(values: torch.Tensor, k: int) -> torch.Tensor:
    """k-th smallest (1-based) of a flat tensor that is small enough to select directly."""
    if values.is_cuda:
        return values.sort().values[k - 1]
    return values.kthvalue(k).values


def _band_indices(k: int, total: int, m: int) -> tuple[int, int]:
    """Positions in a sorted sample of size m that bracket the k-th of ``total`` values."""
    q = k / total
    margin = BAND_SIGMAS * math.sqrt(q * (1 - q) / m) + 2.0 / m
    return math.floor((q - margin) * m), math.ceil((q + margin) * m)


def _sample_sizes(tensors: Sequence, total: int) -> list[int]:
    """Sample size per tensor, proportional to its size; at least 1 unless it is empty.

    The whole sample is ``total / 64`` up to ``SAMPLE_SIZE``: sorting the sample costs
    m·log m and selecting in the band ~N/√m, so a smaller input wants a smaller sample.
    """
    m = min(SAMPLE_SIZE, max(1, total // 64))
    return [math.ceil(m * _numel(t) / total) for t in tensors]


def _numel(t) -> int:
    return t.numel() if isinstance(t, torch.Tensor) else t.size


def _locate_torch(tensors: Sequence[torch.Tensor], k: int, total: int):
    """``_locate`` with torch ops only; any device, and a fixed number of host syncs.

    Two per sweep, whatever the number of layers: one reads the counts below and inside
    the band of every chunk (so the band's size is known before it is gathered, and a
    missed band is widened without gathering), one reads how many values are <= t and
    how many equal t in each chunk. Gathers use those known sizes (``nonzero_static``),
    so no per-layer boolean gather waits for the device.
    """
    generator = torch.Generator().manual_seed(_SEED)
    flats = [t.reshape(-1) for t in tensors]
    sizes = _sample_sizes(flats, total)
    # One copy of all the sample indices to the device, not one per layer.
    drawn = [
        torch.randint(max(flat.numel(), 1), (m,), generator=generator)
        for flat, m in zip(flats, sizes)
    ]
    drawn = torch.cat(drawn).to(flats[0].device).split(sizes)
    sample = torch.cat([flat[idx] for flat, idx in zip(flats, drawn) if idx.numel()])
    sample = sample.sort().values
    lo_index, hi_index = _band_indices(k, total, sample.numel())
    lo = sample[lo_index] if lo_index >= 0 else None
    hi = sample[hi_index] if hi_index < sample.numel() else None
    while True:
        below, chunks, gathered = _torch_count_below_and_band(flats, lo, hi)
        band_size = sum(size for *_, size in chunks)
        rank = k - below
        if rank < 1:  # the answer lies under the band: widen downwards
            lo = None
        elif rank > band_size:  # above it: widen upwards
            hi = None
        else:
            parts = gathered or [
                _band_values(flats[i], a, b, lo, hi, n) for i, a, b, n in chunks if n
            ]
            band = torch.cat(parts)
            value = _select_in(band, rank)
            where = [chunk[:3] for chunk in chunks if chunk[3]]
            counts = _host_ints(
                torch.stack(
                    [torch.count_nonzero(band <= value)]
                    + [torch.count_nonzero(part == value) for part in parts]
                )
            )
            ties = [(*w, n) for w, n in zip(where, counts[1:]) if n]
            return value, below + counts[0], ties


def _host_ints(counts: torch.Tensor) -> list[int]:
    """A 1-D integer tensor as Python ints: the one host sync of a step, visible as such."""
    return counts.tolist()


def _in_band(chunk: torch.Tensor, lo, hi, below_lo=None) -> torch.Tensor:
    """Bool mask of lo <= x <= hi (None = unbounded); ``below_lo``: x < lo, if known."""
    if lo is None:
        return chunk <= hi
    below_lo = chunk < lo if below_lo is None else below_lo
    if hi is None:
        return ~below_lo
    # (x < lo) ⊂ (x <= hi), so xor leaves exactly lo <= x <= hi.
    return (chunk <= hi).logical_xor_(below_lo)


def _positions(mask: torch.Tensor, count: int) -> torch.Tensor:
    """Flat indices of the ``count`` True entries of a 1-D bool mask, in order.

    ``nonzero_static`` is told the size, so it need not wait for the device to learn it
    (CPU and CUDA); other devices fall back to ``nonzero``, one sync per call.
    """
    if mask.device.type in ("cpu", "cuda"):
        return torch.nonzero_static(mask, size=count).squeeze(1)
    return mask.nonzero().squeeze(1)


def _band_values(flat, start: int, stop: int, lo, hi, count: int) -> torch.Tensor:
    """The ``count`` values of flat[start:stop] inside [lo, hi], in order."""
    chunk = flat[start:stop]
    if lo is None and hi is None:
        return chunk
    return chunk[_positions(_in_band(chunk, lo, hi), count)]


def _syncs_are_free(device: torch.device) -> bool:
    """On the CPU a host read waits for nothing, so a boolean gather costs no stall."""
    return device.type == "cpu"


def _torch_count_below_and_band(flats, lo, hi):
    """One sweep: how many values are < lo, and where the values in [lo, hi] lie.

    Returns ``(below, chunks, gathered)``: chunks ``(tensor index, start, stop, how many
    band values flat[start:stop] holds)``, their counts read in one host sync. On the CPU
    the band values of the chunks that hold any are ``gathered`` in the same pass (a
    boolean gather waits for nothing there; gathering later would cost a second pass,
    about 40% more time); elsewhere ``gathered`` is empty and ``_band_values`` gathers
    them, once their sizes are known, without a sync per chunk.
    """
    if lo is None and hi is None:
        return 0, [(i, 0, flat.numel(), flat.numel()) for i, flat in enumerate(flats)], []
    eager = _syncs_are_free(flats[0].device)
    where, counts, gathered = [], [], []
    zero = flats[0].new_zeros((), dtype=torch.int64)
    for index, flat in enumerate(flats):
        # On CUDA one launch per op over the whole tensor is fastest.
        step = TORCH_CHUNK if flat.device.type == "cpu" else max(flat.numel(), 1)
        for start in range(0, flat.numel(), step):
            chunk = flat[start : start + step]
            where.append((index, start, start + chunk.numel()))
            below_lo = None if lo is None else chunk < lo
            # count_nonzero, not sum: a bool sum widens to int64 and is ~20x slower.
            under = zero if below_lo is None else torch.count_nonzero(below_lo)
            inside = _in_band(chunk, lo, hi, below_lo)
            if eager:
                gathered.append(chunk[inside])
                size = zero.new_tensor(gathered[-1].numel())
            else:
                size = torch.count_nonzero(inside)
            counts.append(torch.stack([under, size]))
    values = _host_ints(torch.stack(counts).reshape(-1))
    below = sum(values[0::2])
    gathered = [part for part, n in zip(gathered, values[1::2]) if n]
    return below, [(*w, n) for w, n in zip(where, values[1::2])], gathered


def _locate_compiled(tensors: Sequence[torch.Tensor], k: int, total: int):
    """``_locate`` through the numba sweep; CPU float only."""
    arrays = [t.detach().reshape(-1).numpy() for t in tensors]
    rng = np.random.default_rng(_SEED)
    sample = np.sort(
        np.concatenate(
            [
                a[rng.integers(0, a.size, m)]
                for a, m in zip(arrays, _sample_sizes(arrays, total))
                if m
            ]
        )
    )
    lo_index, hi_index = _band_indices(k, total, sample.size)
    lo = float(sample[lo_index]) if lo_index >= 0 else -math.inf
    hi = float(sample[hi_index]) if hi_index < sample.size else math.inf
    while True:
        below, parts = _band_kernel.count_below_and_band(arrays, lo, hi)
        band = np.concatenate([values for *_, values in parts])
        rank = k - below
        if rank < 1:
            lo = -math.inf
        elif rank > band.size:
            hi = math.inf
        else:
            value = np.partition(band, rank - 1)[rank - 1]
            at_most = below + int(np.count_nonzero(band <= value))
            equal = [int(np.count_nonzero(part[3] == value)) for part in parts]
            ties = [(*part[:3], n) for part, n in zip(parts, equal) if n]
            return torch.tensor(value, dtype=tensors[0].dtype), at_most, ties


def _locate(tensors: Sequence[torch.Tensor], k: int):
    """The k-th smallest value, how many values are <= it, and where its copies lie.

    For inputs above ``SMALL_INPUT`` (smaller ones are selected on their concatenation).

    Returns:
        (value as a 0-dim tensor, count of values <= value, segments): ``segments`` is a
        list of ``(tensor index, start, stop, copies)`` flat ranges, in order, that
        together hold every entry equal to the value, with how many each holds. The sweep
        knows which of its chunks found the value, so ties at the threshold are later
        looked for there only, not in whole tensors.
    """
    total = sum(t.numel() for t in tensors)
    if _band_kernel.available(tensors):
        return _locate_compiled(tensors, k, total)
    return _locate_torch(tensors, k, total)


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
    tensors = [t.detach() for t in tensors]
    total = sum(t.numel() for t in tensors)
    if not 1 <= k <= total:
        raise ValueError(f"k must be in [1, {total}], got {k}.")
    if total <= SMALL_INPUT:
        return _select_in(torch.cat([t.reshape(-1) for t in tensors]), k)
    return _locate(tensors, k)[0]


def _small_masks(tensors: Mapping[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """``_masks_for_threshold`` on the concatenation, with no host sync at all.

    The number of ties to give back stays on the device: among the entries equal to the
    threshold, the i-th from the end is kept when i <= (count <= t) − k.
    """
    flat = torch.cat([t.reshape(-1) for t in tensors.values()])
    value = _select_in(flat, k)
    surplus = torch.count_nonzero(flat <= value) - k
    equal = flat == value
    from_end = equal.flip(0).cumsum(0).flip(0)
    keep = (flat > value) | (equal & (from_end <= surplus))
    parts = keep.split([t.numel() for t in tensors.values()])
    return {name: part.view(t.shape) for (name, t), part in zip(tensors.items(), parts)}


def _masks_for_threshold(tensors: Mapping[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """Keep-masks that prune exactly the k lowest values, ties broken by position.

    Among values equal to the threshold, those earliest in (dict order, flat index)
    are pruned first, so the result is deterministic even for all-equal scores.
    Host syncs: none up to ``SMALL_INPUT`` values, two per sweep above (``_locate_torch``).
    """
    total = sum(t.numel() for t in tensors.values())
    if k == 0:
        return {name: torch.ones_like(t, dtype=torch.bool) for name, t in tensors.items()}
    if k == total:
        return {name: torch.zeros_like(t, dtype=torch.bool) for name, t in tensors.items()}
    if total <= SMALL_INPUT:
        return _small_masks(tensors, k)
    names = list(tensors)
    threshold, at_most, tie_segments = _locate(list(tensors.values()), k)
    threshold = threshold.to(next(iter(tensors.values())).device)
    masks = {name: t > threshold for name, t in tensors.items()}
    # Everything <= t is pruned now, which is at least k entries; the surplus are ties
    # at t, and the last of them (in dict order, flat index) are given back. Only the
    # segments where the sweep met t are searched, and their counts are known.
    surplus = at_most - k
    for index, start, stop, copies in reversed(tie_segments):
        if surplus == 0:
            break
        name = names[index]
        segment = tensors[name].reshape(-1)[start:stop]
        equal = _positions(segment == threshold, copies) + start
        keep_here = equal[copies - min(surplus, copies) :]
        masks[name].view(-1)[keep_here] = True
        surplus -= keep_here.numel()
    return masks


def _all_finite(scores: Mapping[str, torch.Tensor]) -> bool:
    """Fast pre-check: min and max propagate NaN and show ±inf, with no full-size temporary.

    Each layer is checked in its own dtype (no float64, which MPS lacks), and the layers'
    verdicts reach the host together: one sync, however many layers.
    """
    verdicts = []
    for tensor in scores.values():
        if not isinstance(tensor, torch.Tensor) or tensor.dtype == torch.bool:
            return False
        if tensor.is_complex():
            return False
        if tensor.is_floating_point() and tensor.numel():
            verdicts.append(torch.isfinite(torch.stack(torch.aminmax(tensor.detach()))).all())
    return not verdicts or bool(torch.stack(verdicts).all())


def _prepare(scores: Mapping[str, torch.Tensor], sparsity: float, exclude, min_density):
    """Validated inputs: (scores to rank, dense names, sparsity, min_density)."""
    sparsity = check_sparsity(sparsity)
    min_density = check_min_density(min_density)
    patterns = check_exclude(exclude)
    if not scores or not _all_finite(scores):
        check_scores(scores)  # raises with the message that explains the problem
    dense = excluded_names(scores, patterns)
    ranked = {name: s.detach() for name, s in scores.items() if name not in dense}
    return ranked, dense, sparsity, min_density


def _most_prunable(n: int, min_density: float) -> int:
    """How many of a layer's n entries may go while ceil(min_density·n) stay."""
    # round() first: 0.1 * 150 is 15.000000000000002 in floats, and its ceiling is not 16.
    return n - math.ceil(round(min_density * n, 9))


def _capped_masks(tensors: dict[str, torch.Tensor], k: int, caps: dict[str, int]) -> dict:
    """Prune exactly the k lowest entries overall, but at most caps[name] in each layer.

    Water-filling: take one global threshold; every layer that would lose more than its
    cap loses exactly its cap (its own lowest entries), and the rest of k is shared by
    the remaining layers with a new, higher threshold. A capped layer stays capped when
    the threshold rises, so at most one pass per layer is needed.
    """
    masks: dict[str, torch.Tensor] = {}
    pool = dict(tensors)
    while pool:
        trial = _masks_for_threshold(pool, k)
        # One host sync per pass for all layers' counts, not one per layer.
        kept = _host_ints(torch.stack([torch.count_nonzero(trial[name]) for name in pool]))
        over = [name for name, n in zip(pool, kept) if pool[name].numel() - n > caps[name]]
        if not over:
            masks.update(trial)
            break
        for name in over:
            masks.update(_masks_for_threshold({name: pool.pop(name)}, caps[name]))
            k -= caps[name]
    return {name: masks[name] for name in tensors}


def _infeasible(what: str, k: int, total: int, most: int, min_density: float) -> ValueError:
    return ValueError(
        f"{what} asks to prune {k} of {total} weights, but min_density={min_density} keeps "
        f"at least that fraction of every layer, so at most {most} can go "
        f"(sparsity <= {most / total:.4f}). Lower the sparsity or min_density, or exclude "
        "fewer layers."
    )


def global_masks(
    scores: Mapping[str, torch.Tensor],
    sparsity: float,
    *,
    exclude: str | Sequence[str] = (),
    min_density: float = 0.0,
) -> dict[str, torch.Tensor]:
    """One threshold for all layers: prune the ``round(sparsity·N)`` lowest scores overall.

    Args:
        scores: dict name → tensor shaped like the weight; higher means keep. Float or
            integer dtypes.
        sparsity: fraction of the N ranked entries (weights) to prune, in [0, 1] (a
            number: the string ``"0.9"`` and bools are refused). A fraction of weights,
            not of units: ``gp.structured_prune``'s ``amount`` counts neurons/channels.
        exclude: parameter-name patterns (fnmatch-style, matched against whole names:
            ``"fc3.weight"``, ``"classifier.*"``, ``"*.0.weight"``) whose layers stay dense.
            Their masks are all True and they are *not* counted in N, so the other layers
            lose ``round(sparsity·N)`` entries among themselves. A pattern that matches no
            name raises (it is almost always a typo).
        min_density: the smallest fraction of each (not excluded) layer that is kept, in
            [0, 1]; every layer keeps at least ``ceil(min_density·n_layer)`` entries. This
            guards against layer collapse: one global threshold can empty a whole layer
            whose scores are all small (a classifier, say), which disconnects the network.
            The exact count ``round(sparsity·N)`` is still pruned: layers that hit their floor stop
            there and the rest is taken from the other layers, lowest scores first.

    Returns:
        dict name → bool tensor shaped like the score (True = keep), on the score's device.
        Exactly ``round(sparsity·N)`` entries are False. The tie rule: with t the
        ``round(sparsity·N)``-th smallest score, every score below t is pruned, every score
        above t is kept, and the remaining count is pruned among the scores equal to t in
        order of (dict order, flat index): the first ones in ``scores``' order, and within
        a tensor the lowest flat indices. On magnitude scores, without ``exclude`` and
        ``min_density``,
        ``torch.nn.utils.prune.global_unstructured(..., L1Unstructured, amount=sparsity)``
        prunes the same count (both round with Python's ``round``) and the same entries
        below and above t; when several scores equal t, it may choose *different* tied
        entries, since its ``torch.topk`` picks among ties in no specified order. Without
        ties at t the two results are identical.

    Raises:
        ValueError: bad sparsity, min_density or pattern, non-finite or non-real scores,
            or when the floors make the exact count impossible (more than
            ``Σ (n_layer − ceil(min_density·n_layer))`` entries asked for).
    """
    tensors, dense, sparsity, min_density = _prepare(scores, sparsity, exclude, min_density)
    masks = {name: torch.ones_like(scores[name], dtype=torch.bool) for name in dense}
    if tensors:
        total = sum(t.numel() for t in tensors.values())
        k = round(sparsity * total)
        if min_density == 0.0:
            masks.update(_masks_for_threshold(tensors, k))
        else:
            caps = {name: _most_prunable(t.numel(), min_density) for name, t in tensors.items()}
            if k > sum(caps.values()):
                raise _infeasible("global_masks", k, total, sum(caps.values()), min_density)
            masks.update(_capped_masks(tensors, k, caps))
    return {name: masks[name] for name in scores}


def layerwise_masks(
    scores: Mapping[str, torch.Tensor],
    sparsity: float,
    *,
    exclude: str | Sequence[str] = (),
    min_density: float = 0.0,
) -> dict[str, torch.Tensor]:
    """One threshold per layer: prune ``round(sparsity·n_i)`` lowest scores of each layer.

    Args and Returns as in ``global_masks``; every layer not excluded ends with the same
    sparsity. ``min_density`` is only a check here (each layer already keeps
    ``1 − sparsity``): it raises when ``sparsity`` would leave a layer below it.
    """
    tensors, dense, sparsity, min_density = _prepare(scores, sparsity, exclude, min_density)
    masks = {name: torch.ones_like(scores[name], dtype=torch.bool) for name in dense}
    for name, t in tensors.items():
        k, most = round(sparsity * t.numel()), _most_prunable(t.numel(), min_density)
        if k > most:
            raise _infeasible(f"layerwise_masks on {name!r}", k, t.numel(), most, min_density)
    for name, t in tensors.items():
        masks.update(_masks_for_threshold({name: t}, round(sparsity * t.numel())))
    return {name: masks[name] for name in scores}
