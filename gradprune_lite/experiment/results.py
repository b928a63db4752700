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
import statistics
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


# --- the transfer experiment (docs/results/transfer, scripts/transfer_experiment.py) -----

#: The budgets of the transfer experiment, least fine-tuning first.
TRANSFER_BUDGETS = ("light", "medium", "full")
#: Its methods in the order tables and figures show them.
TRANSFER_METHODS = ("dense", "magnitude", "gmp", "movement", "taylor")


class TransferCell(NamedTuple):
    """One (budget, method, sparsity) of the transfer experiment, over its seeds.

    ``errors``: test error (%) per seed at the learning rate that seed chose on validation
    (``lrs``); ``grid``: every learning rate tried at this budget; ``epochs``: the budget's
    fine-tuning epochs; ``weight_changes``: per seed, ‖w_end − w_0‖ / ‖w_0‖ over the
    surviving weights of fc1 and fc2 (how far fine-tuning moved the pretrained weights).
    """

    budget: str
    method: str
    sparsity: float
    epochs: int
    errors: tuple[float, ...]
    lrs: tuple[float, ...]
    grid: tuple[float, ...]
    weight_changes: tuple[float, ...] = ()

    @property
    def mean(self) -> float:
        return statistics.fmean(self.errors)

    @property
    def sd(self) -> float:
        """Sample standard deviation over the seeds (NaN for one seed)."""
        return statistics.stdev(self.errors) if len(self.errors) > 1 else math.nan

    @property
    def at_grid_top(self) -> bool:
        """Whether every seed chose the largest learning rate of the grid (a capped grid)."""
        return all(lr == max(self.grid) for lr in self.lrs)

    def text(self) -> str:
        """'6.46 ± 0.42' (or '6.46' for one seed)."""
        return f"{self.mean:.2f}" if math.isnan(self.sd) else f"{self.mean:.2f} ± {self.sd:.2f}"


def transfer_runs(relative: str = "transfer/runs.csv") -> list[dict]:
    """The rows of the committed ``docs/results/transfer/runs.csv``, typed, in order."""
    return read_transfer_runs(results_file(relative))


def read_transfer_runs(path: str | Path) -> list[dict]:
    """The rows of a transfer experiment's ``runs.csv`` at ``path``, typed, in order."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key in ("seed", "epochs"):
            row[key] = int(row[key])
        for key in (
            "sparsity",
            "lr",
            "val_error",
            "test_error",
            "achieved_sparsity",
            "weight_change",
        ):
            row[key] = float(row[key])
    return rows


def transfer_summary(rows: list[dict] | None = None) -> dict[tuple[str, str, float], TransferCell]:
    """(budget, method, sparsity) → ``TransferCell``, the learning rate chosen on validation.

    Per (seed, budget, method, sparsity) the row with the lowest validation error is kept
    (the first in the file on a tie, as ``scripts/transfer_experiment.py summary`` does);
    test error only reports. ``rows``: ``transfer_runs()`` by default.
    """
    rows = transfer_runs() if rows is None else rows
    chosen: dict[tuple, dict] = {}
    grids: dict[str, set[float]] = {}
    for row in rows:
        grids.setdefault(row["budget"], set()).add(row["lr"])
        run = (row["seed"], row["budget"], row["method"], row["sparsity"])
        if run not in chosen or row["val_error"] < chosen[run]["val_error"]:
            chosen[run] = row
    cells: dict[tuple[str, str, float], list[dict]] = {}
    for (_, budget, method, sparsity), row in sorted(chosen.items()):
        cells.setdefault((budget, method, sparsity), []).append(row)
    return {
        key: TransferCell(
            *key,
            epochs=members[0]["epochs"],
            errors=tuple(r["test_error"] for r in members),
            lrs=tuple(r["lr"] for r in members),
            grid=tuple(sorted(grids[key[0]])),
            weight_changes=tuple(r.get("weight_change", math.nan) for r in members),
        )
        for key, members in cells.items()
    }


def transfer_table(summary: dict[tuple[str, str, float], TransferCell]) -> str:
    """Markdown: one row per (budget, method), one column per sparsity, mean ± sd.

    The dense row's only entry is at 0%. Bold marks the lowest mean of each (budget,
    sparsity) among the pruned methods (a lowest mean, not a win beyond the spread); †
    marks an entry for which every seed chose the largest learning rate of its grid.
    """
    sparsities = sorted({s for _, _, s in summary})
    budgets = [b for b in TRANSFER_BUDGETS if any(k[0] == b for k in summary)]
    header = ["budget", "method"] + [f"{100 * s:g}%" for s in sparsities]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for budget in budgets:
        best = {
            s: min(
                (c.mean for (b, m, t), c in summary.items() if b == budget and t == s and s > 0),
                default=math.nan,
            )
            for s in sparsities
        }
        for method in TRANSFER_METHODS:
            row = [f"{budget}", method]
            for sparsity in sparsities:
                cell = summary.get((budget, method, sparsity))
                if cell is None:
                    row.append("–")
                    continue
                text = cell.text() + (" †" if cell.at_grid_top else "")
                row.append(f"**{text}**" if cell.mean == best[sparsity] else text)
            if any(v != "–" for v in row[2:]):
                epochs = next(c.epochs for (b, _, _), c in summary.items() if b == budget)
                row[0] = f"{budget} ({epochs} epoch{'s' if epochs > 1 else ''})"
                lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def oneshot_errors(method: str, sparsity: float) -> tuple[float, ...]:
    """Test errors (%) per seed of ``second_order/oneshot-test.csv`` (no fine-tuning)."""
    with open(results_file("second_order/oneshot-test.csv"), newline="") as handle:
        return tuple(
            float(row["error"])
            for row in csv.DictReader(handle)
            if row["method"] == method and math.isclose(float(row["sparsity"]), sparsity)
        )


def protocol_errors(
    model: str, mode: str, criterion: str, sparsity: float, relative: str = "summary/results.csv"
) -> tuple[float, ...]:
    """Test errors (%) per seed of one (model, mode, criterion, sparsity) of the protocol."""
    return tuple(
        float(row["test_error"])
        for row in committed_rows(relative)
        if row["model"] == model
        and row["mode"] == mode
        and row["criterion"] == criterion
        and math.isclose(float(row["sparsity"]), sparsity)
    )
