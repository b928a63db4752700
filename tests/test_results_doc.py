"""docs/RESULTS.md cannot drift from its data: every marked table is what its CSVs give."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import gradprune_lite as gp
from gradprune_lite.experiment.rows import defaults_key, read_rows

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RESULTS = DOCS / "RESULTS.md"
_spec = importlib.util.spec_from_file_location("results_doc", ROOT / "scripts" / "results_doc.py")
results_doc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(results_doc)
doc_blocks, regenerate_doc = results_doc.doc_blocks, results_doc.regenerate_doc


def test_every_marked_table_equals_what_its_csvs_give():
    text = RESULTS.read_text()
    committed, fresh = doc_blocks(text), doc_blocks(regenerate_doc(text, DOCS))
    assert [marker for marker, _ in committed] == [marker for marker, _ in fresh]
    for (marker, body), (_, rebuilt) in zip(committed, fresh):
        assert body == rebuilt, (
            f"{marker} no longer matches its CSVs; rebuild the document with "
            "`python scripts/results_doc.py` (after `gradprune-lite report` for merged CSVs)."
        )


def test_the_document_marks_its_tables():
    markers = " ".join(marker for marker, _ in doc_blocks(RESULTS.read_text()))
    for table in (
        "summary lenet_300_100",
        "published lenet_300_100",
        "published lenet5",
        "errors lenet_300_100",
        "errors lenet5",
        "table: full",
        "table: transfer",
    ):
        assert table in markers
    assert all(body.strip() for _, body in doc_blocks(RESULTS.read_text()))


def test_a_changed_number_in_a_csv_shows_up_as_drift(tmp_path):
    copy = tmp_path / "docs"
    shutil.copytree(DOCS / "results", copy / "results")
    csv_path = copy / "results" / "lenet300" / "results.csv"
    lines = csv_path.read_text().splitlines(keepends=True)
    fields = lines[2].split(",")
    column = lines[0].split(",").index("test_error")
    fields[column] = str(float(fields[column]) + 1.0)  # one seed's error one point worse
    lines[2] = ",".join(fields)
    csv_path.write_text("".join(lines))
    text = RESULTS.read_text()
    assert regenerate_doc(text, copy) != text


def test_a_changed_transfer_run_shows_up_as_drift(tmp_path):
    copy = tmp_path / "docs"
    shutil.copytree(DOCS / "results", copy / "results")
    csv_path = copy / "results" / "transfer" / "runs.csv"
    lines = csv_path.read_text().splitlines(keepends=True)
    header = lines[0].strip().split(",")
    # Every run of seed 0, light, movement at 99% one point worse on test: whichever lr
    # validation chose, the table's mean moves.
    for i, line in enumerate(lines[1:], 1):
        fields = line.rstrip("\n").split(",")
        run = dict(zip(header, fields))
        if (run["seed"], run["budget"], run["method"], run["sparsity"]) == (
            "0",
            "light",
            "movement",
            "0.99",
        ):
            fields[header.index("test_error")] = f"{float(run['test_error']) + 1.0:.2f}"
            lines[i] = ",".join(fields) + "\n"
    csv_path.write_text("".join(lines))
    text = RESULTS.read_text()
    assert regenerate_doc(text, copy) != text


def test_no_committed_row_was_computed_under_other_criterion_defaults():
    """A row's run key pins its criterion's option defaults (rows.defaults_key): after a
    default changes, the rows computed under the old one are stale and must be rerun."""
    stale = []
    for path in sorted((DOCS / "results").rglob("results.csv")):
        for row in read_rows(path):
            key, criterion = row["run_key"], row["criterion"]
            if not key or criterion not in gp.CRITERIA:
                continue
            part = key[key.index("/defaults-") :] if "/defaults-" in key else ""
            if part != defaults_key(criterion, gp.CRITERIA.record(criterion).options):
                stale.append(f"{path.relative_to(DOCS)}: {key}")
    assert not stale, f"rows computed under other criterion defaults, rerun them: {stale[:3]}"
