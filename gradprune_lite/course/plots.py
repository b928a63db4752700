"""Small figures for the notebooks and the explorer widget.

Every function returns a ``matplotlib.figure.Figure`` built without pyplot, so a notebook
shows it once (as a cell's last value) and nothing is left open in pyplot's figure list.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import torch
from matplotlib.figure import Figure


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
    ax.legend(fontsize=8)
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
    """Line chart with markers, one line per entry of ``ys`` (each as long as ``x``)."""
    fig = Figure(figsize=(6.5, 3.6))
    ax = fig.subplots()
    for label, values in ys.items():
        ax.plot(x, values, marker="o", label=label)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
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


def mask_and_precision(mask_image: torch.Tensor, precision: torch.Tensor, title: str) -> Figure:
    """Left: a 2-D keep-mask (e.g. fraction of fc1 rows kept per pixel, 28×28); right:
    per-class precision bars (10 values in 0..1)."""
    fig = Figure(figsize=(7, 3))
    left, right = fig.subplots(1, 2)
    left.imshow(mask_image.cpu().float().numpy(), cmap="gray", vmin=0, vmax=1)
    left.set_title("first layer: kept fraction per pixel", fontsize=9)
    left.set_axis_off()
    right.bar(range(len(precision)), precision.cpu().numpy() * 100, color="tab:blue")
    right.set_ylim(0, 100)
    right.set_xticks(range(len(precision)))
    right.set_xlabel("class")
    right.set_ylabel("precision (%)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def png_bytes(fig: Figure, dpi: int = 72) -> bytes:
    """Render ``fig`` with the Agg canvas to PNG bytes (for an ``ipywidgets.Image``)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
