"""Notebook 07's views: the figures draw the summary's numbers, the explorer follows its controls."""

from __future__ import annotations

import math

import pytest

from gradprune_lite.course import transfer_view as view
from gradprune_lite.experiment.results import TransferCell, transfer_summary


def cell(budget, method, sparsity, errors, epochs=1, lrs=None, grid=(0.001, 0.005)):
    lrs = lrs or (max(grid),) * len(errors)
    return TransferCell(budget, method, sparsity, epochs, tuple(errors), tuple(lrs), grid)


@pytest.fixture
def summary():
    cells = [
        cell("light", "dense", 0.0, (6.0, 7.0)),
        cell("light", "magnitude", 0.9, (10.0, 12.0)),
        cell("light", "movement", 0.9, (7.0, 7.5), lrs=(0.001, 0.005)),
        cell("light", "magnitude", 0.99, (30.0, 28.0)),
        cell("light", "movement", 0.99, (9.0, 11.0)),
        cell("full", "dense", 0.0, (1.2, 1.4), epochs=8),
        cell("full", "magnitude", 0.9, (1.5, 1.6), epochs=8),
        cell("full", "movement", 0.9, (1.6, 1.8), epochs=8),
    ]
    return {(c.budget, c.method, c.sparsity): c for c in cells}


def test_budget_figure_draws_each_mean_at_its_sparsity_with_the_dense_line(summary):
    fig = view.budget_figure(summary)
    light, full = fig.axes
    assert light.get_title().startswith("light") and full.get_title().startswith("full: 8")
    dense_line = next(line for line in light.lines if line.get_label().startswith("dense"))
    assert dense_line.get_ydata()[0] == pytest.approx(6.5)
    curves = {c.get_label(): c for c in light.containers}
    movement = curves[view.LABELS["movement"]].lines[0]
    assert list(movement.get_xdata()) == [0, 1]  # the evenly spaced sparsities 90, 99
    assert list(movement.get_ydata()) == pytest.approx([7.25, 10.0])
    # full has no 99% point for either method: only what was measured is drawn.
    assert len(full.containers[0].lines[0].get_xdata()) == 1
    assert [t.get_text() for t in light.get_xticklabels()] == ["90", "99"]


def test_budget_figure_cursor_marks_the_chosen_sparsity(summary):
    fig = view.budget_figure(summary, cursor=0.99, budgets=["light"])
    (ax,) = fig.axes
    cursors = [line for line in ax.lines if line.get_color() == "tab:green"]
    assert len(cursors) == 1 and cursors[0].get_xdata()[0] == 1


def test_regimes_figure_bars_are_the_means_with_dense_first():
    fig = view.regimes_figure(
        {"one-shot": {"magnitude": [8.0, 10.0], "OBS": [6.0]}}, {"one-shot": [1.5, 1.7]}
    )
    (ax,) = fig.axes
    heights = [bar.get_height() for bar in ax.patches]
    assert heights == pytest.approx([1.6, 9.0, 6.0])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["dense", "magnitude", "OBS"]


def test_readout_orders_methods_by_mean_with_dense_and_the_grid_cap(summary):
    lines = view.readout(summary, "light", 0.9).splitlines()
    assert lines[1].split()[-3:] == ["6.50", "±", f"{math.sqrt(0.5):.2f}"]
    assert lines[2].lstrip().startswith("movement") and "largest lr" not in lines[2]
    assert lines[3].lstrip().startswith("magnitude") and "largest lr" in lines[3]
    with pytest.raises(ValueError, match="sparsity must be one of"):
        view.readout(summary, "light", 0.95)
    with pytest.raises(ValueError, match="budget must be one of"):
        view.readout(summary, "medium", 0.9)


def test_explorer_follows_the_slider_and_the_budget_buttons():
    pytest.importorskip("ipywidgets")
    summary = transfer_summary()
    explorer = view.transfer_explorer(summary, "light", 0.99)
    assert explorer.text.value == view.readout(summary, "light", 0.99)
    first = explorer.image.value
    explorer.slider.value = 0.5
    assert explorer.text.value == view.readout(summary, "light", 0.5)
    assert explorer.image.value != first
    explorer.budget.value = "full"
    assert explorer.text.value == view.readout(summary, "full", 0.5)
    explorer.budget.value, explorer.slider.value = "light", 0.99
    assert explorer.image.value == first  # the cached picture of that point
