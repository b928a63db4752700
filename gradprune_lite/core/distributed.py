"""Several processes (DDP): sum the statistics of every rank before scores are formed.

Under ``torch.distributed`` (DistributedDataParallel, ``torchrun``) each rank sees its own
shard of the data. Scores formed from one shard differ from rank to rank, so the masks
would differ and the ranks' models drift apart. Every data-driven statistic of
gradprune-lite is a *sum over samples* divided by a *count* (ḡ = Σ g_n / N,
E[g²] = Σ g_n² / N, the Fisher blocks Σ g_n g_nᵀ / N, GraSP's Σ ∇ℓ_n and Σ H_n g), so
summing the sums and the counts over ranks, before the division, gives every rank the
statistic of all ranks' data together. Every rank then computes the same scores from the
same numbers, and ``global_masks`` (deterministic, exact) the same masks.

``all_reduce_sums`` is the one place where that happens; ``gradient_stats``, ``grasp`` and
the curvature of ``obs`` call it where their sums are final. Without an initialised
process group it does nothing and costs nothing, so single-process code is unchanged.
Errors that depend on all ranks' data (no samples, a weight no gradient reached) are raised
after the reduction, on every rank alike; an error that one rank raises before it (a bad
batch on that rank) leaves the others waiting in the collective until torch.distributed's
timeout ends them, as with any collective.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True inside an initialised process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sums(tensors: Sequence[torch.Tensor], counts: Sequence[int] = ()) -> list[int]:
    """Sum ``tensors`` in place, and ``counts``, over all ranks of the default process group.

    Contract: every rank calls this at the same point with the same number of tensors, in
    the same order, of the same shapes and dtypes (a rank whose shard gave a tensor no
    contribution passes zeros, never leaves it out), and the same number of counts; the
    ranks' models hold the same weights (DDP broadcasts them when it wraps the model).
    The reduction is one ``all_reduce(SUM)`` per tensor (no copy of the statistics is made)
    and one for all the counts together, as int64, so counts stay exact.

    Args:
        tensors: floating tensors on the device the process group serves (CUDA for nccl,
            CPU or CUDA for gloo); each is overwritten with its sum over ranks.
        counts: integers to sum over ranks (samples seen, flags such as "this rank's data
            reached this weight").

    Returns:
        the counts summed over ranks, as Python ints (one host sync, only under a process
        group). Without an initialised process group of more than one rank: ``counts``
        unchanged and ``tensors`` untouched, with no communication and no sync.

    Every rank receives the same reduced bits (ring and tree all-reduce hand one result to
    all ranks), so the scores, and the masks selected from them, are identical on every
    rank. Against one process that sums all the data itself, the sums differ only by the
    order of float additions (a few ulps), which can swap the order of scores that are
    equal to a few ulps at the threshold; ``tests/test_distributed.py`` counts them.
    """
    counts = [int(c) for c in counts]
    if not is_distributed():
        return counts
    handles = [dist.all_reduce(t, op=dist.ReduceOp.SUM, async_op=True) for t in tensors]
    reduced = counts
    if counts:
        device = tensors[0].device if tensors else _count_device()
        summed = torch.tensor(counts, dtype=torch.int64, device=device)
        dist.all_reduce(summed, op=dist.ReduceOp.SUM)
        reduced = summed.tolist()
    for handle in handles:
        handle.wait()
    return reduced


def _count_device() -> torch.device:
    """Where a collective of this backend may live: CUDA for nccl, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_named_sums(
    sums: Sequence[dict[str, torch.Tensor]],
    names: Sequence[str],
    count: int,
    zeros: Callable[[str], torch.Tensor],
) -> int:
    """``all_reduce_sums`` for dicts name → sum that a rank may have filled only in part.

    A rank whose shard never reached weight ``name`` has no entry for it; it sums zeros
    (``zeros(name)``) instead, so that every rank reduces the same list. Afterwards an entry
    is dropped again only if no rank's data reached it, so the caller's "no gradient
    reached …" check sees all ranks' data.

    Args:
        sums: dicts sharing their keys (e.g. Σ g and Σ g²), changed in place.
        names: every name any rank may hold, in one order shared by all ranks.
        count: this rank's sample count.
        zeros: name → a zero tensor shaped, typed and placed like that name's sums.

    Returns:
        the sample count over all ranks (``count`` itself without a process group).
    """
    if not is_distributed():
        return count
    present = [name in sums[0] for name in names]
    for name, held in zip(names, present):
        if not held:
            for entries in sums:
                entries[name] = zeros(name)
    tensors = [entries[name] for name in names for entries in sums]
    total, *reached = all_reduce_sums(tensors, [count, *map(int, present)])
    for name, ranks_reaching in zip(names, reached):
        if ranks_reaching == 0:
            for entries in sums:
                del entries[name]
    return total
