"""The results log: one CSV row per (model, mode, criterion, sparsity, seed).

The schema (``CSV_COLUMNS``), the identity of a row (``run_key``: the protocol's hash, then
the grid point), the resumable log that ``run_comparison`` appends each finished row to,
and reading and merging CSVs back. Nothing here trains, evaluates or draws.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

CSV_COLUMNS = (
    "model",
    "mode",
    "criterion",
    "sparsity",
    "seed",
    "remaining",
    "validation_error",
    "test_error",
    "macro_precision",
    "worst_class_precision",
    "macro_recall",
    "macro_f1",
    "seconds_per_epoch",
    "sparse_bytes",
    "dense_bytes",
    "nonzero_params",
    "train_epochs",
    "data",
    "train_fingerprint",
    "validation_fingerprint",
    "test_fingerprint",
    "run_key",
)
#: Columns that hold counts: read back as int (NaN where missing).
INT_COLUMNS = ("seed", "sparse_bytes", "dense_bytes", "nonzero_params", "train_epochs")
#: Columns that hold text; every other column is a number.
TEXT_COLUMNS = (
    "model",
    "mode",
    "criterion",
    "data",
    "train_fingerprint",
    "validation_fingerprint",
    "test_fingerprint",
    "run_key",
)


def protocol_key(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


def run_key(
    protocol: str, model: str, mode: str, criterion: str, sparsity, seed, defaults=None
) -> str:
    """The identity of one row: protocol hash (budget, options, data, release), then the
    grid point, then the criterion's option defaults (``defaults_key``)."""
    point = f"{protocol}/{model}/{mode}/{criterion}/{float(sparsity):g}/seed{int(seed)}"
    return point + defaults_key(criterion, defaults)


#: The release whose run keys carry neither the release nor the criteria's defaults.
LEGACY_VERSION = "0.1.0"
_DATA = {"loss_fn": None, "sample_dim": 0, "reduction": None, "max_elements": None}
#: Each built-in criterion's option defaults in 0.1.0. A row whose key has no defaults part
#: was computed under these; a criterion whose defaults still equal them keeps such keys,
#: so the rows committed under docs/results stay reusable until a default changes.
LEGACY_DEFAULTS = {
    "random": {"seed": 0},
    "magnitude": {},
    "gradient": _DATA,
    "taylor": _DATA,
    "snip": _DATA,
    "fisher": _DATA,
    "grasp": {"loss_fn": None, "temperature": 200.0, "sample_dim": 0, "reduction": None},
    "synflow": {"input_shape": None},
    "obs": {
        "block_size": 64,
        "damping": 0.1,
        "samples": None,
        "steps": 8,
        "curvature": "empirical",
        "allocation": "magnitude",
        "seed": 0,
        "loss_fn": None,
    },
}


def defaults_key(criterion: str, defaults) -> str:
    """The part of a run key that pins ``criterion``'s option defaults.

    ``defaults``: the criterion's option → default mapping (``gp.CRITERIA.record(name)
    .options``; None when undeclared). Empty for the dense rows and for a built-in whose
    defaults are those of 0.1.0 (``LEGACY_DEFAULTS``); otherwise ``/defaults-<hash>``, so
    a row computed under other defaults has another key and is never reused for this one.
    """
    if criterion == "dense":
        return ""
    text = json.dumps(None if defaults is None else dict(defaults), sort_keys=True, default=repr)
    legacy = LEGACY_DEFAULTS.get(criterion)
    if legacy is not None and json.dumps(legacy, sort_keys=True) == text:
        return ""
    return "/defaults-" + hashlib.sha256(text.encode()).hexdigest()[:8]


def open_row_log(path: str | Path, protocol: str) -> dict[str, dict]:
    """The rows already in ``path`` by run key, after creating it or repairing its tail.

    A run killed while writing can leave half a line at the end; it is cut off, so that
    row runs again.
    """
    path = Path(path)
    header = ",".join(CSV_COLUMNS) + "\n"
    if not path.is_file() or path.stat().st_size == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header)
        return {}
    text = path.read_text()
    if not text.startswith(header):
        raise ValueError(
            f"{path} was not written by this version of compare (its columns differ); "
            "give another --out folder (results_csv), or move the file away."
        )
    if not text.endswith("\n"):
        path.write_text(text[: text.rfind("\n") + 1])
    rows = read_rows(path)
    others = sorted({r["run_key"].split("/")[0] for r in rows} - {protocol})
    if others:
        raise ValueError(
            f"{path} holds rows of another protocol ({', '.join(others)}; this run is "
            f"{protocol}): a different budget, option, data set or gradprune-lite release. "
            "One file holds one protocol, so give another --out folder (results_csv) or "
            "move the file away."
        )
    return {row["run_key"]: row for row in rows}


def stale_rows(rows: Sequence[dict], keys: Sequence[str]) -> list[str]:
    """Keys in ``rows`` at one of ``keys``' grid points but under other criterion defaults.

    Such a row is not reused (its key differs), and it cannot stay beside the fresh one in
    one file (two rows for one point), so ``run_comparison`` refuses to start instead.
    """

    def point(key: str) -> str:
        return key.split("/defaults-")[0]

    wanted = {point(k): k for k in keys}
    return sorted(
        r["run_key"]
        for r in rows
        if point(r["run_key"]) in wanted and r["run_key"] != wanted[point(r["run_key"])]
    )


def append_row(path: str | Path, row: dict) -> None:
    """Append one finished row to the CSV and push it to disk before the next job starts."""
    with open(path, "a", newline="") as handle:
        csv.DictWriter(handle, fieldnames=CSV_COLUMNS).writerow({k: row[k] for k in CSV_COLUMNS})
        handle.flush()
        os.fsync(handle.fileno())


def _same_value(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)


def merge_rows(rows: Sequence[dict]) -> list[dict]:
    """``rows`` of several CSVs with each (model, mode, criterion, sparsity, seed) once.

    Runs that share a dense reference each carry its row: copies with the same run key
    (same protocol; only the measured seconds may differ) or with identical values
    collapse to the first. Two other rows for the same point come from different
    protocols, which one table must not mix, so they are an error.
    """
    merged: dict[tuple, dict] = {}
    for row in rows:
        point = (row["model"], row["mode"], row["criterion"], float(row["sparsity"]))
        point += (int(float(row["seed"])),)
        kept = merged.setdefault(point, row)
        same_run = bool(row.get("run_key")) and kept.get("run_key") == row.get("run_key")
        if not same_run and not all(_same_value(kept.get(k), row.get(k)) for k in CSV_COLUMNS):
            raise ValueError(
                f"two rows disagree for {point} (model, mode, criterion, sparsity, seed): they "
                "come from different protocols or data; report them separately."
            )
    return list(merged.values())


def read_rows(path: str | Path) -> list[dict]:
    """Rows back from a ``results.csv`` (numbers as floats), e.g. to merge several runs.

    Counts (``INT_COLUMNS``) read as int, other numbers as float. A column the file lacks
    (a CSV written before the column existed) reads as NaN, or as "" for text; an empty
    numeric cell reads as NaN.
    """
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key in CSV_COLUMNS:
            value = row.get(key) or ""
            if key in TEXT_COLUMNS:
                row[key] = value
            elif not value:
                row[key] = math.nan
            else:
                row[key] = int(float(value)) if key in INT_COLUMNS else float(value)
    return rows
