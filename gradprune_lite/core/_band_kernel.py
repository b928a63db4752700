"""Optional compiled sweep for ``selection``: count below a band and gather the band, in one pass.

The pure-torch sweep needs about five full passes (two compares, a count, an xor and a
masked gather); the numba kernel in ``_numba_sweep`` reads every score once and writes
only the few scores inside the band. It serves CPU float32/float64 when numba is
installed (``pip install gradprune-lite[fast]``); ``selection`` falls back to torch ops
otherwise (and on CUDA), with the same exact result.

The kernel runs on one thread, on purpose: on a quiet machine a second thread could save
at most half of a sweep (about 3 ms per 10M scores), but on a shared, loaded machine
numba's parallel launch waited for busy cores and took up to 50 times longer than the
serial loop (measured with the load average at 17: 132 ms against 2.8 ms for 5M scores).
"""

from __future__ import annotations

import os

import numpy as np
import torch

#: Set GRADPRUNE_PURE_TORCH=1 to skip the compiled kernel (tests use it to cover both paths).
DISABLED = os.environ.get("GRADPRUNE_PURE_TORCH", "") not in ("", "0")
#: Scores per sweep call. The caller learns which chunk met which band value, so ties at
#: the threshold are later searched in one chunk, not a whole tensor.
CHUNK = 1 << 18

_kernels = None  # the _numba_sweep module once imported, False if numba is missing


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
    below = 0
    parts = []
    for index, values in enumerate(arrays):
        lo_v, hi_v = values.dtype.type(lo), values.dtype.type(hi)
        # Only the band's pages of this buffer are ever written, so it costs little memory.
        out = np.empty_like(values)
        for start in range(0, values.size, CHUNK):
            stop = min(start + CHUNK, values.size)
            count, found = _kernels.sweep_range(values, lo_v, hi_v, start, stop, out)
            below += int(count)
            parts.append((index, start, stop, out[start : start + found]))
        if values.size == 0:
            parts.append((index, 0, 0, out))
    return below, parts
