"""Optional compiled sweep for ``selection``: count below a band and gather the band, in one pass.

The pure-torch sweep needs about five full passes (two compares, a count, an xor and a
masked gather); this numba kernel reads every score once, on all CPU cores, and writes
only the few scores inside the band. It is used on CPU for float32/float64 when numba
imports; ``selection`` falls back to torch ops otherwise (and on CUDA), with the same
exact result.
"""

from __future__ import annotations

import os

import numpy as np
import torch

#: Set GRADPRUNE_PURE_TORCH=1 to skip the compiled kernel (tests use it to cover both paths).
DISABLED = os.environ.get("GRADPRUNE_PURE_TORCH", "") not in ("", "0")
#: Below this many elements one thread does the whole tensor (threads cost more than they save).
SERIAL_BELOW = 1 << 16

_kernel = None


def _compile():
    """Import numba and build the kernel on first use (import costs ~0.3 s; not at package import)."""
    import numba

    @numba.njit(nogil=True, cache=True)
    def sweep_range(values, lo, hi, start, stop, out):
        # Writes the band values of values[start:stop] to out[start:...]. Branch-free: the
        # "v < lo" test is a coin flip near the median, and a branch there mispredicts half
        # the time (measured ~8x slower). A serial function, because numba optimises the
        # loop body worse inside prange.
        below = 0
        j = start
        for i in range(start, stop):
            v = values[i]
            below += np.int32(v < lo)
            out[j] = v
            j += np.int32(v >= lo) & np.int32(v <= hi)
        return below, j - start

    @numba.njit(parallel=True, nogil=True, cache=True)
    def band_sweep(values, lo, hi, n_chunks, out):
        # out is the size of values but only the band's pages are ever touched.
        n = values.size
        chunk = (n + n_chunks - 1) // n_chunks
        below = np.zeros(n_chunks, np.int64)
        found = np.zeros(n_chunks, np.int64)
        for c in numba.prange(n_chunks):
            start = c * chunk
            b, f = sweep_range(values, lo, hi, start, min(start + chunk, n), out)
            below[c] = b
            found[c] = f
        return below, found

    return band_sweep, numba


def available(tensors) -> bool:
    """True when the compiled sweep can serve these tensors (CPU, one float32/float64 dtype)."""
    global _kernel
    if DISABLED or not tensors:
        return False
    dtype = tensors[0].dtype
    if dtype not in (torch.float32, torch.float64):
        return False
    if any(t.device.type != "cpu" or t.dtype != dtype for t in tensors):
        return False
    if _kernel is None:
        try:
            _kernel = _compile()
        except ImportError:
            _kernel = False
    return bool(_kernel)


def count_below_and_band(arrays: list[np.ndarray], lo: float, hi: float) -> tuple[int, np.ndarray]:
    """How many values are < lo, and the values in [lo, hi], over flat numpy arrays.

    lo and hi may be ±inf for an unbounded side (scores hold no NaN, checked earlier).
    """
    band_sweep, numba = _kernel
    threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(threads)
    below = 0
    parts = []
    for values in arrays:
        lo_v, hi_v = values.dtype.type(lo), values.dtype.type(hi)
        n_chunks = 1 if values.size < SERIAL_BELOW else 4 * threads
        out = np.empty_like(values)
        counts, found = band_sweep(values, lo_v, hi_v, n_chunks, out)
        below += int(counts.sum())
        chunk = -(-values.size // n_chunks)
        parts.extend(out[c * chunk : c * chunk + int(f)] for c, f in enumerate(found) if f)
    band = np.concatenate(parts) if parts else np.empty(0, dtype=arrays[0].dtype)
    return below, band
