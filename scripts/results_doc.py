"""Rebuild the generated tables of docs/RESULTS.md from the CSVs they name.

    python scripts/results_doc.py [docs/RESULTS.md]

Each generated table of the document is marked with the CSVs it comes from::

    <!-- table: summary lenet_300_100 from results/lenet300/results.csv -->
    ...the table...
    <!-- /table -->

``<!-- table: transfer from results/transfer/runs.csv -->`` is the transfer experiment's
table (``gradprune_lite.experiment.results.transfer_table``).
``regenerate_doc`` rebuilds every marked block from its CSVs (paths relative to the
document's folder), with the published numbers of ``docs/results/published.csv`` beside
ours, and the document is written back in place. ``tests/test_results_doc.py`` checks that
the committed document equals its rebuild, so a changed CSV without a rebuilt document
fails there. The tables themselves are ``gradprune_lite.experiment.summary``'s and
``report``'s; this file only finds the marks and fills them.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path

from gradprune_lite.experiment.report import markdown_table
from gradprune_lite.experiment.results import (
    Published,
    published_numbers,
    read_transfer_runs,
    transfer_summary,
    transfer_table,
)
from gradprune_lite.experiment.rows import merge_rows, read_rows
from gradprune_lite.experiment.summary import (
    SUMMARY_SPARSITIES,
    error_table,
    matched_table,
    published_table,
    runs_table,
    summary_table,
)

DOCUMENT = Path(__file__).resolve().parents[1] / "docs" / "RESULTS.md"

_BLOCK = re.compile(
    r"(<!-- table: (?P<kind>\w+)(?: (?P<model>\w+))?(?: at (?P<at>[\d.,]+))? "
    r"from (?P<paths>[^>]+?) -->\n)(?P<body>.*?)(?P<end><!-- /table -->)",
    re.DOTALL,
)


def render_block(
    kind: str,
    runs: Sequence[tuple[str, Sequence[dict]]],
    model: str | None,
    at: str | None,
    published: Sequence[Published],
) -> str:
    """The markdown of one marked block of ``docs/RESULTS.md``.

    ``runs`` holds (name, rows) per CSV the marker names. Kind ``runs`` sets them side by
    side (``runs_table``); every other kind merges their rows into one table first.
    """
    sparsities = [float(s) / 100 for s in at.split(",")] if at else None
    if kind == "runs":  # each CSV its own run, never merged
        if not (model and sparsities):
            raise ValueError(
                "a 'runs' table needs a model and sparsities: <!-- table: runs M at 95,98 …"
            )
        return runs_table(runs, model, sparsities, published)
    rows = merge_rows([row for _, run_rows in runs for row in run_rows])
    if kind == "full":
        return markdown_table(rows)
    if model is None:
        raise ValueError(f"a '{kind}' table needs a model: <!-- table: {kind} lenet5 from ...")
    if kind == "summary":
        return summary_table(rows, model, sparsities or SUMMARY_SPARSITIES, published)
    if kind == "published":
        return published_table(rows, model, published)
    if kind == "matched":
        return matched_table(rows, model, published)
    if kind == "errors":
        if not sparsities:
            raise ValueError("an 'errors' table needs sparsities: <!-- table: errors M at 92,95 …")
        return error_table(rows, model, sparsities, published)
    raise ValueError(
        f"unknown table kind {kind!r}; use full, summary, published, matched, errors or runs."
    )


def regenerate_doc(
    text: str, base: str | Path, published: Sequence[Published] | None = None
) -> str:
    """``text`` with every marked table rebuilt from its CSVs (paths relative to ``base``).

    Marker: ``<!-- table: KIND [MODEL] [at 90,95] from a.csv[, b.csv] -->`` … ``<!-- /table -->``.
    KIND ``runs`` shows each CSV as its own run, named by its folder; ``transfer`` reads
    ``docs/results/transfer/runs.csv`` (the chosen-lr summary, ``transfer_table``); the
    others merge the CSVs' rows into one table (``render_block``). ``published``: the numbers set beside
    ours, by default ``docs/results/published.csv`` (required).
    """
    published = published_numbers() if published is None else tuple(published)

    def rebuild(match: re.Match) -> str:
        paths = [Path(base) / p.strip() for p in match["paths"].split(",")]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise ValueError(f"a table of the document names missing CSVs: {', '.join(missing)}.")
        if match["kind"] == "transfer":  # its own CSV layout (scripts/transfer_experiment.py)
            rows = [row for path in paths for row in read_transfer_runs(path)]
            return match.group(1) + transfer_table(transfer_summary(rows)) + match["end"]
        runs = [(path.parent.name, read_rows(path)) for path in paths]
        body = render_block(match["kind"], runs, match["model"], match["at"], published)
        return match.group(1) + body + match["end"]

    return _BLOCK.sub(rebuild, text)


def doc_blocks(text: str) -> list[tuple[str, str]]:
    """(marker line, body) of each marked table in ``text``, in order."""
    return [(m.group(1).strip(), m["body"]) for m in _BLOCK.finditer(text)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("doc", nargs="?", default=str(DOCUMENT), help="default: %(default)s")
    args = parser.parse_args(argv)
    doc = Path(args.doc)
    doc.write_text(regenerate_doc(doc.read_text(), doc.parent))
    print(f"rebuilt the marked tables of {doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
