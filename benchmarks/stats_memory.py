"""Measure the memory bound of gp.gradient_stats: the largest tensor it creates, and peak RSS.

    python benchmarks/stats_memory.py            # ImageNet-style stem, batch 16, 224×224

The largest tensor is read with a TorchDispatchMode that sees the output of every aten op
(the unfolded input, the per-sample gradients, any temporary einsum makes). The peak heap is
glibc's count of bytes in use (``mallinfo2``), sampled after every op, above what was held
before the call; a plain forward+backward of the same batch is measured the same way.
"""

from __future__ import annotations

import argparse
import ctypes

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import gradprune_lite as gp


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


_libc = ctypes.CDLL("libc.so.6")
_libc.mallinfo2.restype = _MallInfo2


def heap_bytes() -> int:
    """Bytes the C heap holds in use now (glibc): small blocks plus mmap-ed large ones."""
    info = _libc.mallinfo2()
    return info.uordblks + info.hblkhd


class LargestTensor(TorchDispatchMode):
    """The largest output (in elements) of any op run inside the mode, and the peak heap.

    The heap is sampled after every op, so ``peak_bytes`` is the most memory held at any op
    boundary above what was held on entry (temporaries inside one op are not seen).
    """

    def __init__(self):
        super().__init__()
        self.largest = 0
        self.op = ""
        self.start = heap_bytes()
        self.peak_bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.numel() > self.largest:
                self.largest, self.op = t.numel(), str(func)
        self.peak_bytes = max(self.peak_bytes, heap_bytes() - self.start)
        return out


def stem_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 64, 7, stride=2, padding=3),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    )


def stem_batch(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, 224, 224, generator=g), torch.randint(0, 10, (n,), generator=g)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, (x, y) = stem_model(), stem_batch(args.batch)
    with LargestTensor() as forward_only:
        F.cross_entropy(model(x), y).backward()
    with LargestTensor() as stats:
        gp.gradient_stats(model, [(x, y)])
    bound = getattr(gp.core.stats, "CHUNK_ELEMENTS", 16_000_000)
    print(
        f"stem Conv2d(3, 64, 7, stride 2, padding 3), batch {args.batch} × 3 × 224 × 224, float32"
    )
    print("| measure | forward+backward | gradient_stats | bound |")
    print("|---|---|---|---|")
    print(
        f"| largest tensor (M floats) | {forward_only.largest / 1e6:.1f} "
        f"({forward_only.op}) | {stats.largest / 1e6:.1f} ({stats.op}) | {bound / 1e6:.0f} |"
    )
    print(
        f"| peak heap above model and data (MB) | {forward_only.peak_bytes / 1e6:.0f} | "
        f"{stats.peak_bytes / 1e6:.0f} | {4 * bound / 1e6:.0f} per chunk tensor |"
    )


if __name__ == "__main__":
    main()
