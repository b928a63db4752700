"""The committed results: one reader for ``docs/results`` of the repository.

Notebooks, the CLI and ``scripts/results_doc.py`` read measured results and the published
numbers they are set beside from ``docs/results``, which is part of the repository, not of
an installed package. ``results_file`` finds it, in this order:

1. the folder named by ``$GRADPRUNE_RESULTS`` (a copy of ``docs/results``), if set;
2. ``docs/results`` of the source tree this package is loaded from (a clone, run in place
   or installed with ``pip install -e .``).

From an install without the repository (a wheel), it says in one line where it looked and
what to do. ``docs/results/published.csv`` holds the published test errors (one row per
paper and sparsity, with the paper's dense error), read by ``published_numbers``.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import NamedTuple

from .rows import merge_rows, read_rows

#: The environment variable that points at a copy of ``docs/results``.
RESULTS_ENV = "GRADPRUNE_RESULTS"
#: ``docs/results`` of the source tree this file lies in (absent in a wheel).
SOURCE_RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results"


class Published(NamedTuple):
    """One published test error (%) on MNIST, with the protocol that produced it."""

    model: str
    sparsity: float
    error: float
    method: str
    protocol: str
    dense_error: float  # the paper's dense error, NaN when it gives none


def results_file(relative: str = "summary/results.csv") -> Path:
    """The committed file ``docs/results/<relative>`` (see the module docstring).

    Raises:
        FileNotFoundError: in one line, naming where it looked and what to do.
    """
    chosen = os.environ.get(RESULTS_ENV)
    places = [Path(chosen)] if chosen else [SOURCE_RESULTS]
    for place in places:
        if (place / relative).is_file():
            return place / relative
    where = f"${RESULTS_ENV}={chosen}" if chosen else f"{SOURCE_RESULTS} (the source tree)"
    raise FileNotFoundError(
        f"docs/results/{relative} was not found in {where}: the committed results are part "
        f"of the repository, so run from a clone (git clone, then pip install -e .) or set "
        f"{RESULTS_ENV} to a copy of its docs/results folder."
    )


def committed_rows(relative: str = "summary/results.csv") -> list[dict]:
    """The rows of a committed ``results.csv``, merged (``merge_rows``) and typed."""
    return merge_rows(read_rows(results_file(relative)))


def published_numbers(required: bool = True) -> tuple[Published, ...]:
    """The published numbers of ``docs/results/published.csv``, in the file's order.

    Args:
        required: if False, an install without the repository gets an empty tuple (tables
            then show no published rows) instead of the ``FileNotFoundError``.
    """
    try:
        path = results_file("published.csv")
    except FileNotFoundError:
        if required:
            raise
        return ()
    with open(path, newline="") as handle:
        return tuple(
            Published(
                row["model"],
                float(row["sparsity"]),
                float(row["error"]),
                row["method"],
                row["protocol"],
                float(row["dense_error"]) if row["dense_error"] else math.nan,
            )
            for row in csv.DictReader(handle)
        )
