"""Optional compiled sweep for ``selection``: count below a band and gather the band, in one pass.

The pure-torch sweep needs about five full passes (two compares, a count, an xor and a
masked gather); the numba kernels in ``_numba_sweep`` read every score once, on all CPU
cores, and write only the few scores inside the band. They serve CPU float32/float64 when
numba imports; ``selection`` falls back to torch ops otherwise (and on CUDA), with the same
exact result.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import torch

#: Set GRADPRUNE_PURE_TORCH=1 to skip the compiled kernel (tests use it to cover both paths).
DISABLED = os.environ.get("GRADPRUNE_PURE_TORCH", "") not in ("", "0")
#: Below this many elements one thread does the whole tensor (threads cost more than they save).
SERIAL_BELOW = 1 << 18

_kernels = None  # the _numba_sweep module once imported, False if numba is missing
# numba's default thread pool ("workqueue") aborts the process if two Python threads launch
# parallel kernels at once; a lock makes concurrent callers wait instead.
_PARALLEL_LOCK = threading.Lock()


def available(tensors) -> bool:
    """True when the compiled sweep can serve these tensors (CPU, one float32/float64 dtype)."""
    global _kernels
    if DISABLED or not tensors:
        return False
    dtype = tensors[0].dtype
    if dtype not in (torch.float32, torch.float64):
        return False
    if any(t.device.type != "cpu" or t.dtype != dtype for t in tensors):
        return False
    if _kernels is None:
        # Imported on first use: numba costs ~0.5 s to import, too much for `import gradprune_lite`.
        try:
            from . import _numba_sweep

            _kernels = _numba_sweep
        except ImportError:
            _kernels = False
    return bool(_kernels)


def count_below_and_band(
    arrays: list[np.ndarray], lo: float, hi: float
) -> tuple[int, list[tuple[int, int, int, np.ndarray]]]:
    """How many values are < lo, and the values in [lo, hi], over flat numpy arrays.

    lo and hi may be ±inf for an unbounded side (scores hold no NaN, checked earlier).

    Returns:
        (count below lo, parts): each part is ``(array index, start, stop, band values
        found in array[start:stop])``, in array then position order, so that a caller can
        later find where a given band value lies without scanning whole arrays.
    """
    import numba

    threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    below = 0
    parts = []
    for index, values in enumerate(arrays):
        lo_v, hi_v = values.dtype.type(lo), values.dtype.type(hi)
        out = np.empty_like(values)
        if values.size < SERIAL_BELOW:
            count, found = _kernels.sweep_range(values, lo_v, hi_v, 0, values.size, out)
            below += int(count)
            parts.append((index, 0, values.size, out[:found]))
            continue
        # Chunks even on one thread: they tell the caller where the band values lie.
        n_chunks = 8 * threads
        # Chunks handed out one at a time: on a shared machine a thread that loses its core
        # would otherwise hold back a fixed half of the work.
        with _PARALLEL_LOCK, numba.parallel_chunksize(1):
            numba.set_num_threads(threads)
            counts, found = _kernels.band_sweep(values, lo_v, hi_v, n_chunks, out)
        below += int(counts.sum())
        chunk = -(-values.size // n_chunks)
        for c, f in enumerate(found.tolist()):
            start = c * chunk
            parts.append((index, start, min(start + chunk, values.size), out[start : start + f]))
    return below, parts
