"""Watch what the student's code runs, so a check judges the method by what happened.

Two records, taken only while the student's function runs:

- every torch operator that reached the dispatcher (``aten`` name and the shapes of its
  results), from a ``TorchDispatchMode``. Composite functions show what they are made of:
  ``torch.argsort``, ``torch.msort`` and ``torch.quantile`` all appear as ``aten.sort``, so a
  check needs no list of Python names to know that a sort ran. Autograd's backward pass runs
  on the calling thread for CPU tensors and carries the mode with it, so the gradients'
  operators are recorded too; so are the physical, batched tensors inside ``torch.func.vmap``.
- optionally, every built-in (C) function called from Python code (``sys.setprofile``), for
  the ways out of torch: ``sorted``, ``list.sort``, NumPy's ``ndarray.sort`` (calls made
  by torch's own Python code are left out).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from ._common import call

# Built-ins called by torch's own Python code (its internals may sort a list of names) are
# torch's business, not the student's; its operators are recorded by the dispatch mode.
_TORCH_DIR = str(Path(torch.__file__).resolve().parent)


@dataclass
class Trace:
    """What ran. ``ops``: (aten operator name, shapes of its tensor results), in order;
    ``python``: qualified names of built-in functions called from Python (when watched)."""

    ops: list[tuple[str, tuple[tuple[int, ...], ...]]] = field(default_factory=list)
    python: list[str] = field(default_factory=list)

    def ran(self, names) -> list[str]:
        """The operator and function names in ``names`` that ran, first-seen order."""
        seen = [op for op, _ in self.ops if op in names] + [f for f in self.python if f in names]
        return list(dict.fromkeys(seen))

    def shapes(self) -> Iterator[tuple[int, ...]]:
        """Every result shape of every operator, in order (repeats included)."""
        for _, shapes in self.ops:
            yield from shapes


class _OperatorRecorder(TorchDispatchMode):
    def __init__(self, trace: Trace):
        super().__init__()
        self.trace = trace

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        shapes = tuple(tuple(t.shape) for t in tree_leaves(result) if isinstance(t, torch.Tensor))
        self.trace.ops.append((func.overloadpacket.__name__, shapes))
        return result


@contextlib.contextmanager
def watching(python: bool = False) -> Iterator[Trace]:
    """Record the torch operators (and, with ``python``, built-in calls) run in the block."""
    trace = Trace()
    previous = sys.getprofile()

    def profile(frame, event, arg):
        if event == "c_call" and not frame.f_code.co_filename.startswith(_TORCH_DIR):
            trace.python.append(getattr(arg, "__qualname__", getattr(arg, "__name__", "?")))

    with _OperatorRecorder(trace):
        # The first operator under a dispatch mode imports parts of torch (and sympy), whose
        # own sorted() calls are not the student's: run one before the profiler starts.
        torch.zeros(1).add_(1)
        trace.ops.clear()
        try:
            if python:
                sys.setprofile(profile)
            yield trace
        finally:
            if python:
                sys.setprofile(previous)


def watched_call(function: Callable, name: str, *args, python: bool = False):
    """``call(function, name, *args)`` under ``watching``; returns (result, trace)."""
    with watching(python) as trace:
        result = call(function, name, *args)
    return result, trace
