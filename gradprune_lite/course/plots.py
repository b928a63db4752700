"""Small figures for the notebooks and the explorer widget.

Every function returns a ``matplotlib.figure.Figure`` built without pyplot, so a notebook
shows it once (as a cell's last value) and nothing is left open in pyplot's figure list.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import torch
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator

#: Line styles and markers cycled through by ``curves``, so that two lines that coincide
#: (taylor and snip rank identically) stay distinguishable.
LINE_STYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*")


def legend_outside(ax, **options) -> None:
    """Put the legend to the right of the axes, where it cannot cover data."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, **options)


def plain_log_ticks(axis) -> None:
    """Label a log axis 1, 2, 5, 10, 20, 50 … in plain numbers instead of 2×10⁰ and 10¹."""
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(FuncFormatter(lambda value, _: ""))


def images(named: Mapping[str, torch.Tensor], cmap: str = "viridis", width: float = 3.2) -> Figure:
    """One image per entry (each a 2-D tensor, e.g. 28×28), side by side with colour bars."""
    fig = Figure(figsize=(width * len(named), width))
    axes = fig.subplots(1, len(named), squeeze=False)[0]
    for ax, (title, image) in zip(axes, named.items()):
        shown = ax.imshow(image.detach().cpu().float().numpy(), cmap=cmap)
        ax.set_title(title, fontsize=10)
        ax.set_axis_off()
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def grouped_bars(
    groups: Mapping[str, Mapping[str, float]], ylabel: str, title: str = "", percent: bool = True
) -> Figure:
    """Bars per category (x axis), one colour per group: ``groups[group][category] = value``."""
    fig = Figure(figsize=(7, 3.2))
    ax = fig.subplots()
    categories = list(next(iter(groups.values())))
    width = 0.8 / len(groups)
    for i, (group, values) in enumerate(groups.items()):
        heights = [values[c] * (100 if percent else 1) for c in categories]
        ax.bar([x + i * width for x in range(len(categories))], heights, width, label=group)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(categories))], categories)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    legend_outside(ax, fontsize=8)
    fig.tight_layout()
    return fig


def curves(
    x: Sequence[float],
    ys: Mapping[str, Sequence[float]],
    xlabel: str,
    ylabel: str,
    title: str = "",
    logx: bool = False,
    logy: bool = False,
) -> Figure:
    """Line chart, one line per entry of ``ys`` (each as long as ``x``), each with its own
    line style and marker; the legend sits outside the axes, log axes read in plain numbers."""
    fig = Figure(figsize=(6.5, 3.6))
    ax = fig.subplots()
    for i, (label, values) in enumerate(ys.items()):
        ax.plot(
            x,
            values,
            label=label,
            linestyle=LINE_STYLES[i % len(LINE_STYLES)],
            marker=MARKERS[i % len(MARKERS)],
            markersize=5,
            alpha=0.85,
        )
    if logx:
        ax.set_xscale("log")
        plain_log_ticks(ax.xaxis)
    if logy:
        ax.set_yscale("log")
        plain_log_ticks(ax.yaxis)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    legend_outside(ax, fontsize=8)
    fig.tight_layout()
    return fig


def confusion(matrix: torch.Tensor, title: str = "confusion matrix") -> Figure:
    """A 10×10 confusion matrix (rows true class, columns predicted) with counts written in."""
    fig = Figure(figsize=(4.8, 4.2))
    ax = fig.subplots()
    values = matrix.cpu().numpy()
    ax.imshow(values, cmap="Blues")
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            color = "white" if values[i, j] > values.max() / 2 else "black"
            ax.text(j, i, str(values[i, j]), ha="center", va="center", fontsize=7, color=color)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_xticks(range(values.shape[1]))
    ax.set_yticks(range(values.shape[0]))
    ax.set_title(title)
    fig.tight_layout()
    return fig


def explorer_curve(
    levels: Sequence[float],
    lines: Mapping[str, Mapping[str, Sequence[float]]],
    cursor: float,
    points: Mapping[str, float] | None = None,
) -> Figure:
    """Test error against sparsity for the explorer, with a cursor at the slider.

    Args:
        levels: sparsities in [0, 1) (x axis, shown in %).
        lines: ``lines[label] = {"mean": [...], "low": [...], "high": [...]}``, errors in %
            at each level; ``low``..``high`` is drawn as a band (the spread over resampled
            scoring batches), ``mean`` as the line.
        cursor: the slider's sparsity, one of ``levels`` (a vertical line).
        points: optional ``label → error`` drawn as stars at the cursor (fine-tuned points).
    """
    fig = Figure(figsize=(7.0, 2.5))
    ax = fig.subplots()
    # The axes stay put whatever the legend holds (its fine-tuned points come and go), with
    # room on the right for its longest label.
    fixed_axes(fig, left=0.6, right=2.0, bottom=0.55, top=0.1)
    # The levels crowd near 100%, so they are spaced evenly and labelled with their values.
    x = list(range(len(levels)))
    at_cursor = min(x, key=lambda i: abs(levels[i] - cursor)) if levels else 0
    for i, (label, line) in enumerate(lines.items()):
        color = f"C{i}"
        ax.fill_between(x, line["low"], line["high"], color=color, alpha=0.25, linewidth=0)
        ax.plot(
            x,
            line["mean"],
            color=color,
            linestyle=LINE_STYLES[i % len(LINE_STYLES)],
            marker=MARKERS[i % len(MARKERS)],
            markersize=4,
            label=label,
        )
    for i, (label, error) in enumerate((points or {}).items()):
        ax.plot(
            [at_cursor],
            [error],
            marker="*",
            markersize=12,
            color=f"C{i}",
            markeredgecolor="black",
            linestyle="none",
            label=label,
        )
    ax.axvline(at_cursor, color="black", linewidth=1, label=f"slider: {cursor:.1%}")
    ax.set_yscale("log")
    plain_log_ticks(ax.yaxis)
    ax.set_xticks(x, [f"{100 * s:g}" for s in levels])
    ax.tick_params(axis="x", labelsize=8)
    ax.set_xlabel("sparsity (% of weights removed), dense at the left")
    ax.set_ylabel("test error (%)")
    ax.grid(alpha=0.3)
    legend_outside(ax, fontsize=8)
    return fig


def layer_sparsity_bars(per_layer: Mapping[str, Mapping[str, float]]) -> Figure:
    """Horizontal bars of each layer's sparsity (%): ``per_layer[label][layer] = fraction``.

    Each bar is labelled with ``percent_label``, so a layer with weights left never reads
    100; the legend sits above the axes, which stay put whatever the labels say.
    """
    fig = Figure(figsize=(3.8, 2.3))
    ax = fig.subplots()
    fixed_axes(fig, left=0.95, right=0.1, bottom=0.5, top=0.35)
    labels = list(per_layer)
    layers = list(next(iter(per_layer.values())))
    height = 0.8 / len(labels)
    for i, label in enumerate(labels):
        positions = [y + (i - (len(labels) - 1) / 2) * height for y in range(len(layers))]
        values = [100 * per_layer[label][layer] for layer in layers]
        bars = ax.barh(positions, values, height, color=f"C{i}", label=label)
        ax.bar_label(bars, [percent_label(v) for v in values], fontsize=7, padding=2)
    ax.set_yticks(range(len(layers)), layers, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 125)
    ax.set_xticks([0, 20, 40, 60, 80, 100])
    ax.tick_params(axis="x", labelsize=8)
    ax.set_xlabel("sparsity of the layer (%)", fontsize=9)
    ax.legend(
        loc="lower left",
        bbox_to_anchor=(0.0, 1.02),
        ncol=len(labels),
        borderaxespad=0.0,
        fontsize=8,
        frameon=False,
    )
    return fig


def mask_images(named: Mapping[str, torch.Tensor]) -> Figure:
    """First-layer keep-mask pictures side by side (each 2-D, e.g. 28×28 kept fraction per
    pixel), each auto-scaled to its own range with a colour bar, pixels drawn as squares."""
    fig = Figure(figsize=(2.6 * len(named), 2.3))
    axes = fig.subplots(1, len(named), squeeze=False)[0]
    fig.subplots_adjust(left=0.09, right=0.89, bottom=0.17, top=0.88, wspace=0.75)
    for ax, (title, image) in zip(axes, named.items()):
        values = image.detach().cpu().float()
        low, high = float(values.min()), float(values.max())
        if high - low < 1e-9:  # flat (e.g. dense: all kept): show it on the full 0..1 scale
            low, high = min(low, 0.0), max(high, 1.0)
        shown = ax.imshow(
            values.numpy(), cmap="viridis", vmin=low, vmax=high, interpolation="nearest"
        )
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("pixel column", fontsize=8)
        ax.set_ylabel("pixel row", fontsize=8)
        ax.tick_params(labelsize=7)
        bar = fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
        bar.set_label("fraction kept", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    return fig


def percent_label(percent: float) -> str:
    """A percentage in as few decimals as tell it from 0 and 100: 99.96 is not "100.0".

    A layer bar reading 100.0 beside a mask that still shows kept pixels reads as a bug;
    only an exact 0 or 100 is printed as one.
    """
    if percent in (0.0, 100.0):
        return f"{percent:g}"
    for decimals in (1, 2, 3):
        text = f"{percent:.{decimals}f}"
        if float(text) not in (0.0, 100.0):
            return text
    return "<0.001" if percent < 50 else ">99.999"


def fixed_axes(fig: Figure, left: float, right: float, bottom: float, top: float) -> None:
    """Place ``fig``'s axes by margins in inches, the same whatever the legend or labels.

    ``tight_layout`` fits the axes around their legend, so a legend that grows (the
    explorer's fine-tuned points) moved and shrank the plot between two pictures.
    """
    width, height = fig.get_size_inches()
    fig.subplots_adjust(
        left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height
    )


def png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    """Render ``fig`` with the Agg canvas to PNG bytes (for an ``ipywidgets.Image``), at
    ``dpi`` pixels per inch: show it at ``pixel_size(fig, dpi)`` so that it is not rescaled."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def pixel_size(fig: Figure, dpi: int = 100) -> tuple[int, int]:
    """(width, height) in pixels of ``png_bytes(fig, dpi)``: its native display size."""
    width, height = fig.get_size_inches()
    return round(width * dpi), round(height * dpi)
