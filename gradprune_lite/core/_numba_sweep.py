"""The numba kernels behind ``_band_kernel`` (imported only when numba is installed).

They live at module level so that numba's on-disk cache (``cache=True``) finds them again
in the next process instead of compiling anew (about 2 s).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(nogil=True, cache=True)
def sweep_range(values, lo, hi, start, stop, out):
    """Count values[start:stop] < lo; write those in [lo, hi] to out[start:...]; return both.

    Branch-free: the "v < lo" test is a coin flip near the median, and a branch there
    mispredicts half the time (measured ~8x slower). A serial function, because numba
    optimises the loop body worse inside ``prange``.
    """
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
    """``sweep_range`` over ``n_chunks`` equal chunks in parallel; per-chunk counts back.

    out is the size of values, but only the band's pages are ever touched.
    """
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
