"""Notebook 07's views of the committed results: figures, a readout and a small explorer.

Everything here reads a summary made by ``experiment.results`` (the one reader of
``docs/results``) and draws it; nothing is measured here.

* ``budget_figure(summary)``: the transfer experiment, one panel per fine-tuning budget,
  test error against sparsity (mean ± sd over seeds) with the dense error beside; static,
  so readers on GitHub or nbviewer see it too. ``scripts/transfer_figure.py`` saves it for
  ``docs/RESULTS.md``.
* ``regimes_figure(regimes)``: the three regimes side by side, as bars with seed spreads.
* ``readout(summary, budget, sparsity)``: each method's error at one point, in words.
* ``transfer_explorer(summary)``: a sparsity slider and budget buttons over the same
  results (ipywidgets); tests drive it by setting ``explorer.slider.value``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from matplotlib.figure import Figure

from ..experiment.results import TRANSFER_BUDGETS, TRANSFER_METHODS, TransferCell
from . import plots

Summary = Mapping[tuple[str, str, float], TransferCell]
#: The pruned methods, with a style each (GMP and one-shot magnitude share a colour).
STYLES = {
    "magnitude": {"color": "tab:gray", "linestyle": ":", "marker": "o"},
    "gmp": {"color": "tab:gray", "linestyle": "-", "marker": "s"},
    "movement": {"color": "tab:red", "linestyle": "-", "marker": "^"},
    "taylor": {"color": "tab:blue", "linestyle": "--", "marker": "v"},
}
LABELS = {
    "magnitude": "magnitude, one-shot",
    "gmp": "GMP (magnitude, gradual)",
    "movement": "movement (gradual)",
    "taylor": "taylor (gradual)",
}


def epochs_text(epochs: int) -> str:
    """'1 epoch', '3 epochs'."""
    return f"{epochs} epoch{'' if epochs == 1 else 's'}"


def budgets_in(summary: Summary) -> list[str]:
    """The budgets present, least fine-tuning first."""
    return [b for b in TRANSFER_BUDGETS if any(key[0] == b for key in summary)]


def sparsities_in(summary: Summary) -> list[float]:
    """The pruned sparsities present, ascending (dense's 0 left out)."""
    return sorted({s for _, _, s in summary if s > 0})


def _check_point(summary: Summary, budget: str, sparsity: float) -> None:
    if budget not in budgets_in(summary):
        raise ValueError(f"budget must be one of {budgets_in(summary)}, got {budget!r}.")
    if sparsity not in sparsities_in(summary):
        raise ValueError(
            f"sparsity must be one of {sparsities_in(summary)} (the measured ones), got "
            f"{sparsity!r}."
        )


def budget_figure(
    summary: Summary, cursor: float | None = None, budgets: Sequence[str] | None = None
) -> Figure:
    """Test error (%, log scale) against sparsity, one panel per budget, mean ± sd.

    The sparsities are evenly spaced on the x axis (50% to 99%: the high end is where the
    methods differ). The dense fine-tuned error of each budget is a black line with its
    ±sd band; ``cursor`` (a sparsity) draws a vertical line at it.
    """
    budgets = list(budgets or budgets_in(summary))
    single = len(budgets) == 1
    fig = Figure(figsize=(7.6, 3.8) if single else (4.2 * len(budgets) + 0.6, 4.2))
    axes = fig.subplots(1, len(budgets), squeeze=False, sharey=True)[0]
    levels = sparsities_in(summary)
    for ax, budget in zip(axes, budgets):
        dense = summary.get((budget, "dense", 0.0))
        if dense is not None:
            ax.axhline(dense.mean, color="black", linewidth=1, label="dense, fine-tuned (± sd)")
            if not math.isnan(dense.sd):
                low, high = dense.mean - dense.sd, dense.mean + dense.sd
                ax.axhspan(low, high, color="black", alpha=0.1, linewidth=0)
        for method in (m for m in TRANSFER_METHODS if m != "dense"):
            shown = [
                (i, summary[(budget, method, s)])
                for i, s in enumerate(levels)
                if (budget, method, s) in summary
            ]
            if not shown:
                continue
            ax.errorbar(
                [i for i, _ in shown],
                [c.mean for _, c in shown],
                yerr=[0.0 if math.isnan(c.sd) else c.sd for _, c in shown],
                capsize=3,
                label=LABELS[method],
                **STYLES[method],
            )
        if cursor is not None:
            ax.axvline(levels.index(cursor), color="tab:green", linewidth=1)
        epochs = next(c.epochs for key, c in summary.items() if key[0] == budget)
        ax.set_title(f"{budget}: {epochs_text(epochs)} of fine-tuning")
        ax.set_xticks(range(len(levels)))
        ax.set_xticklabels([f"{100 * s:g}" for s in levels])
        ax.set_xlabel("sparsity of fc1 and fc2 (%)")
        ax.set_yscale("log")
        plots.plain_log_ticks(ax.yaxis)
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel("test error, digits 5-9 (%, log scale)")
    seeds = max(len(c.errors) for c in summary.values())
    if single:
        plots.legend_outside(axes[0], fontsize=8, title=f"mean ± sd, {seeds} seeds")
        plots.fixed_axes(fig, left=0.8, right=3.0, bottom=0.6, top=0.4)
        return fig
    # One legend below the panels, outside every panel's data.
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.suptitle(f"Pruning while fine-tuning a pretrained LeNet-300-100 (mean ± sd, {seeds} seeds)")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def regimes_figure(
    regimes: Mapping[str, Mapping[str, Sequence[float]]],
    dense: Mapping[str, Sequence[float]] | None = None,
) -> Figure:
    """Bars of mean test error (± sd over seeds), one panel per regime, linear from 0.

    ``regimes``: panel title → {method label: test errors (%) per seed}; ``dense``: panel
    title → the dense network's errors there, drawn as a first, white bar. Each panel has
    its own scale, since the regimes' errors differ by orders of magnitude. Magnitude-based
    methods are grey, gradient-based ones red.
    """
    dense = dense or {}
    fig = Figure(figsize=(3.7 * len(regimes), 3.7))
    axes = fig.subplots(1, len(regimes), squeeze=False)[0]
    for ax, (title, methods) in zip(axes, regimes.items()):
        bars = ({"dense": dense[title]} if title in dense else {}) | dict(methods)
        names = list(bars)
        means = [sum(e) / len(e) for e in bars.values()]
        spreads = [_sd(e) for e in bars.values()]
        colors = [
            "white"
            if name == "dense"
            else "tab:gray"
            if name.lower().startswith(("magnitude", "gmp"))
            else "tab:red"
            for name in names
        ]
        ax.bar(range(len(names)), means, yerr=spreads, capsize=4, color=colors, edgecolor="black")
        for i, (mean, spread) in enumerate(zip(means, spreads)):
            ax.annotate(f"{mean:.2f}", (i, mean + spread), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, fontsize=8)
        ax.set_ylim(0, 1.15 * max(m + s for m, s in zip(means, spreads)))
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("test error (%)")
    fig.tight_layout()
    return fig


def _sd(errors: Sequence[float]) -> float:
    if len(errors) < 2:
        return 0.0
    mean = sum(errors) / len(errors)
    return math.sqrt(sum((e - mean) ** 2 for e in errors) / (len(errors) - 1))


def readout(summary: Summary, budget: str, sparsity: float) -> str:
    """Each method's test error at (budget, sparsity), lowest first, dense beside; one line each.

    Raises:
        ValueError: a budget or sparsity the summary does not hold.
    """
    _check_point(summary, budget, sparsity)
    dense = summary[(budget, "dense", 0.0)]
    cells = [
        summary[(budget, m, sparsity)]
        for m in TRANSFER_METHODS
        if m != "dense" and (budget, m, sparsity) in summary
    ]
    lines = [
        f"{budget} budget ({epochs_text(dense.epochs)}), {100 * sparsity:g}% of fc1 and fc2 "
        f"pruned: "
        f"test error %, mean ± sd over {len(dense.errors)} seeds",
        f"  {'dense (not pruned)':<26} {dense.text()}",
    ]
    for cell in sorted(cells, key=lambda c: c.mean):
        capped = "  (every seed chose the grid's largest lr)" if cell.at_grid_top else ""
        lines.append(f"  {LABELS[cell.method]:<26} {cell.text()}{capped}")
    return "\n".join(lines)


@dataclass
class TransferExplorer:
    """The explorer's widgets; ``box`` is what a notebook displays."""

    summary: Summary
    slider: Any
    budget: Any
    text: Any
    image: Any
    box: Any
    _png: dict = field(default_factory=dict)

    def update(self, *_) -> None:
        """Redraw for the current slider and budget (pictures cached per point)."""
        point = (self.budget.value, self.slider.value)
        self.text.value = readout(self.summary, *point)
        if point not in self._png:
            figure = budget_figure(self.summary, cursor=point[1], budgets=[point[0]])
            self._png[point] = plots.png_bytes(figure)
        self.image.value = self._png[point]


def transfer_explorer(summary: Summary, budget: str = "light", sparsity: float = 0.99):
    """A sparsity slider and budget buttons over the committed transfer results.

    Returns a ``TransferExplorer``; display ``explorer.box``. Setting
    ``explorer.slider.value`` or ``explorer.budget.value`` updates ``explorer.text.value``
    (``readout``) and the picture.
    """
    import ipywidgets as w

    _check_point(summary, budget, sparsity)
    slider = w.SelectionSlider(
        options=[(f"{100 * s:g}%", s) for s in sparsities_in(summary)],
        value=sparsity,
        description="sparsity",
    )
    buttons = w.ToggleButtons(options=budgets_in(summary), value=budget, description="budget")
    text = w.Textarea(layout=w.Layout(width="640px", height="130px"), disabled=True)
    image = w.Image(format="png")
    box = w.VBox([w.HBox([slider, buttons]), text, image])
    explorer = TransferExplorer(summary, slider, buttons, text, image, box)
    slider.observe(explorer.update, names="value")
    buttons.observe(explorer.update, names="value")
    explorer.update()
    return explorer
