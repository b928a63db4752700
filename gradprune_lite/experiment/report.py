"""Reporting rows: mean ± std over seeds, the markdown table, the plot, the written files.

``write_outputs`` turns the rows of a run (``run_comparison``) or of merged CSVs
(``read_rows``, ``merge_rows``) into ``results.csv``, ``results.md`` and ``results.png``.
The four-question summary built on the same rows is in ``summary``.
"""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from .rows import CSV_COLUMNS

#: The order modes are listed and plotted in (an unknown mode goes last).
MODE_ORDER = {"dense": 0, "init": 1, "after": 2, "iterative": 3}


def by_mode(mode: str, *rest) -> tuple:
    """Sort key: ``mode`` by ``MODE_ORDER`` (an unknown mode last), then ``rest``."""
    return (MODE_ORDER.get(mode, 9), mode, *rest)


def summarise(rows: Sequence[dict]) -> list[dict]:
    """Mean and std (over seeds) of each (model, mode, criterion, sparsity) group."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["model"], row["mode"], row["criterion"], float(row["sparsity"]))].append(row)
    summary = []
    for (model, mode, criterion, sparsity), members in groups.items():
        errors = [float(r["test_error"]) for r in members]
        summary.append(
            {
                "model": model,
                "mode": mode,
                "criterion": criterion,
                "sparsity": sparsity,
                "remaining": statistics.fmean(float(r["remaining"]) for r in members),
                "error_mean": statistics.fmean(errors),
                "error_std": statistics.stdev(errors) if len(errors) > 1 else 0.0,
                "macro_f1": statistics.fmean(float(r["macro_f1"]) for r in members),
                "seconds_per_epoch": statistics.fmean(
                    float(r["seconds_per_epoch"]) for r in members
                ),
                "sparse_bytes": statistics.fmean(float(r["sparse_bytes"]) for r in members),
                "dense_bytes": statistics.fmean(float(r["dense_bytes"]) for r in members),
                "seeds": len(members),
            }
        )
    return summary


def markdown_table(rows: Sequence[dict]) -> str:
    """Test error (%) as mean ± std over seeds: one line per model/mode/criterion."""
    summary = summarise(rows)
    sparsities = sorted({s["sparsity"] for s in summary if s["criterion"] != "dense"})
    header = ["model", "mode", "criterion"] + [f"{100 * s:g}%" for s in sparsities]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    cells: dict[tuple, dict] = defaultdict(dict)
    for s in summary:
        cells[(s["model"], s["mode"], s["criterion"])][s["sparsity"]] = s

    def error(cell: dict) -> str:  # one seed has no spread: no "± 0.00"
        if cell["seeds"] < 2:
            return f"{cell['error_mean']:.2f}"
        return f"{cell['error_mean']:.2f} ± {cell['error_std']:.2f}"

    for (model, mode, criterion), by_sparsity in cells.items():
        if criterion == "dense":
            values = [f"{error(by_sparsity[0.0])} (dense)"] + [""] * (len(sparsities) - 1)
        else:
            values = [error(by_sparsity[s]) if s in by_sparsity else "–" for s in sparsities]
        lines.append("| " + " | ".join([model, mode, criterion, *values]) + " |")
    seeds = max((s["seeds"] for s in summary), default=0)
    lines.append("")
    if seeds < 2:
        lines.append("Test error in %, one seed (so no ± spread); columns are sparsities.")
    else:
        lines.append(f"Test error in %, mean ± std over {seeds} seed(s); columns are sparsities.")
    return "\n".join(lines) + "\n"


def plot_results(rows: Sequence[dict]):
    """A matplotlib ``Figure``: test error against remaining weights, per criterion.

    One panel per (model, mode), modes in the order init, after, iterative; each
    criterion keeps its colour in every panel; both axes are logarithmic, so errors near
    the dense one (a dashed horizontal line) stay readable beside collapsed runs near 90%.
    One legend for all panels sits below them, outside the data. A criterion whose every
    point equals an earlier criterion's (taylor and snip: the same |w·ḡ| ranking, so the
    same masks) would be hidden under it: it is drawn dashed with open markers and its
    legend entry says "= the other".
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    summary = summarise(rows)
    panels = sorted(
        {(s["model"], s["mode"]) for s in summary if s["criterion"] != "dense"},
        key=lambda panel: (panel[0], *by_mode(panel[1])),
    )
    criteria = [c for c in dict.fromkeys(s["criterion"] for s in summary) if c != "dense"]
    colour = {criterion: f"C{i % 10}" for i, criterion in enumerate(criteria)}

    def curve(criterion):
        return sorted(
            (s["model"], s["mode"], s["remaining"], s["error_mean"], s["error_std"])
            for s in summary
            if s["criterion"] == criterion
        )

    same_as = {}  # criterion → the earlier criterion whose every point it repeats
    for i, criterion in enumerate(criteria):
        earlier = [c for c in criteria[:i] if c not in same_as and curve(c) == curve(criterion)]
        if earlier:
            same_as[criterion] = earlier[0]
    plain = FuncFormatter(lambda value, _: f"{value:g}")

    def some(digits):  # label the minor ticks that start with one of ``digits``
        return FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}".lstrip("0.")[:1] in digits else "")

    figure = Figure(figsize=(5.0 * max(1, len(panels)), 4.0), layout="constrained")
    axes = figure.subplots(1, max(1, len(panels)), squeeze=False)[0]
    for ax, (model, mode) in zip(axes, panels):
        for criterion in criteria:
            points = sorted(
                (
                    s
                    for s in summary
                    if (s["model"], s["mode"], s["criterion"]) == (model, mode, criterion)
                ),
                key=lambda s: s["remaining"],
            )
            if not points:
                continue
            hidden_under = same_as.get(criterion)
            ax.errorbar(
                [100 * p["remaining"] for p in points],
                [p["error_mean"] for p in points],
                yerr=[p["error_std"] for p in points],
                marker="o",
                markersize=9 if hidden_under else 6,
                markerfacecolor="none" if hidden_under else colour[criterion],
                linestyle=(0, (4, 3)) if hidden_under else "-",
                capsize=3,
                color=colour[criterion],
                label=f"{criterion} (= {hidden_under})" if hidden_under else criterion,
                zorder=3 if hidden_under else 2,
            )
        for s in summary:
            if s["model"] == model and s["criterion"] == "dense":
                ax.axhline(s["error_mean"], color="black", linestyle="--", label="dense")
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis, digits in ((ax.xaxis, "25"), (ax.yaxis, "2357")):  # 70: a label above 50
            axis.set_major_formatter(plain)
            axis.set_minor_formatter(some(digits))
        ax.set_xlabel("remaining weights (%)")
        ax.set_ylabel("test error (%), log scale")
        ax.set_title(f"{model}, prune {mode}")
        ax.grid(True, which="both", alpha=0.3)
    # One legend for every panel, below them: inside a panel it covered the curves.
    entries = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if entries:
        figure.legend(
            entries.values(),
            entries.keys(),
            loc="outside lower center",
            ncols=min(len(entries), 9),
            fontsize="small",
        )
    return figure


def write_outputs(rows: Sequence[dict], out: str | Path) -> dict[str, Path]:
    """Write ``results.csv``, ``results.md`` and ``results.png`` under ``out``.

    Returns ``{"csv": path, "markdown": path, "plot": path}``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": out / "results.csv",
        "markdown": out / "results.md",
        "plot": out / "results.png",
    }
    with open(paths["csv"], "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows({k: row[k] for k in CSV_COLUMNS} for row in rows)
    paths["markdown"].write_text(markdown_table(rows))
    plot_results(rows).savefig(paths["plot"], dpi=110)
    return paths
