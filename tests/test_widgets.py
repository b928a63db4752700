"""The sparsity explorer: driven by setting widget values, as a user's clicks would."""

import struct
import time

import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg

import gradprune_lite as gp

TOTAL = 266_200  # prunable weights of LeNet-300-100
SCORE_SAMPLES = 200
DRAWS = 3


@pytest.fixture(scope="module")
def explorer():
    torch.set_num_threads(2)
    train = gp.mnist("train", verbose=False).take(600)
    test = gp.mnist("test", verbose=False).take(300)
    model = gp.models.lenet_300_100(seed=0)
    gp.fit(model, train, epochs=1, lr=0.05, seed=0, progress=False)
    return gp.widgets.sparsity_explorer(
        model,
        train,
        test,
        criteria=("magnitude", "taylor", "random"),
        score_samples=SCORE_SAMPLES,
        draws=DRAWS,
        finetune_samples=200,
    )


@pytest.fixture
def at_start(explorer):
    """Every test starts from, and returns to, A = magnitude, B = taylor, dense, no tuning."""
    explorer.criterion_a.value, explorer.criterion_b.value = "magnitude", "taylor"
    explorer.finetune.value, explorer.slider.value = False, 0.0
    yield explorer
    explorer.criterion_a.value, explorer.criterion_b.value = "magnitude", "taylor"
    explorer.finetune.value, explorer.slider.value = False, 0.0


def pictures(explorer):
    return {
        "curve": explorer.curve_image.value,
        "masks": explorer.mask_image.value,
        "layers": explorer.layer_image.value,
    }


def row(explorer, label):
    """The readout's row for criterion ``label`` ("A" or "B")."""
    return next(r for r in explorer.readout.value.split("<br>") if r.startswith(f"<b>{label}:"))


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_starts_dense_with_both_criteria_and_everything_kept(at_start):
    e = at_start
    assert e.slider.value == 0.0 and e.slider.options[0][1] == 0.0
    for label in "AB":
        assert f"{TOTAL:,}</b> of {TOTAL:,}" in row(e, label)
    assert "<b>1.000</b>" in e.readout.value  # two dense masks keep the same weights
    for data in pictures(e).values():
        png_size(data)


def test_slider_changes_counts_curve_cursor_masks_and_layer_bars(at_start):
    e = at_start
    before = pictures(e)
    e.slider.value = 0.9
    expected = round(0.1 * TOTAL)  # gp.global_masks prunes exactly round(s·N)
    assert f"<b>{expected:,}</b> of {TOTAL:,} weights left" in row(e, "A")
    assert f"<b>{expected:,}</b> of {TOTAL:,} weights left" in row(e, "B")
    after = pictures(e)
    assert all(after[k] != before[k] for k in before), "a picture ignored the slider"


def test_readout_accuracy_matches_an_independent_evaluation(at_start):
    e = at_start
    e.slider.value = 0.95
    pruned = gp.models.lenet_300_100()
    pruned.load_state_dict(e.model.state_dict())
    gp.apply_masks(pruned, gp.global_masks(gp.score(pruned, "magnitude"), 0.95))
    accuracy = gp.evaluate(pruned, e.test).accuracy
    assert f"accuracy <b>{accuracy:.2%}</b>" in row(e, "A")


def test_overlap_is_the_jaccard_of_independently_computed_masks(at_start):
    e = at_start
    e.slider.value = 0.9
    draw_0 = e.score_draws[0]
    a = gp.global_masks(gp.score(e.model, "magnitude"), 0.9)
    b = gp.global_masks(gp.score(e.model, "taylor", draw_0), 0.9)
    expected = gp.mask_overlap(a, b)
    assert 0 < expected < 1
    assert f"<b>{expected:.3f}</b>" in e.readout.value
    assert e.overlap(0.9) == pytest.approx(expected)


def test_criterion_b_changes_its_row_overlap_curve_masks_and_bars_not_a(at_start):
    e = at_start
    e.slider.value = 0.98
    row_a, row_b, overlap, before = row(e, "A"), row(e, "B"), e.overlap(0.98), pictures(e)
    e.criterion_b.value = "random"
    assert row(e, "A") == row_a
    assert row(e, "B") != row_b and "<b>B: random</b>" in e.readout.value
    assert e.overlap(0.98) != overlap
    after = pictures(e)
    assert all(after[k] != before[k] for k in before)


def test_criterion_a_changes_its_row_and_not_b(at_start):
    e = at_start
    e.slider.value = 0.98
    row_a, row_b = row(e, "A"), row(e, "B")
    e.criterion_a.value = "random"
    assert row(e, "A") != row_a and "<b>A: random</b>" in e.readout.value
    assert row(e, "B") == row_b


def test_finetune_changes_readout_and_curve_but_not_the_masks(at_start):
    e = at_start
    e.slider.value = 0.98
    before = pictures(e)
    e.finetune.value = True
    assert "+ fine-tune" in row(e, "A") and "+ fine-tune" in row(e, "B")
    assert ("magnitude", 0.98, True) in e.results and ("taylor", 0.98, True) in e.results
    after = pictures(e)
    assert after["curve"] != before["curve"]  # the fine-tuned points appear at the cursor
    assert after["masks"] == before["masks"] and after["layers"] == before["layers"]


def test_finetuned_accuracy_stands_beside_its_own_before(at_start):
    e = at_start
    e.slider.value = 0.98
    before = {c: e.result(c, 0.98, False).evaluation.accuracy for c in ("magnitude", "taylor")}
    e.finetune.value = True
    for label, criterion in (("A", "magnitude"), ("B", "taylor")):
        after = e.result(criterion, 0.98, True).evaluation.accuracy
        text = row(e, label)
        assert (
            f"accuracy <b>{after:.2%}</b> after fine-tuning, {before[criterion]:.2%} before" in text
        )


def test_readout_gives_one_error_where_every_scoring_draw_agrees(at_start):
    e = at_start
    e.slider.value = 0.98
    magnitude, taylor = e.errors_over_draws("magnitude", 0.98), e.errors_over_draws("taylor", 0.98)
    assert len(set(magnitude)) == 1 and len(set(taylor)) > 1
    assert f"error {magnitude[0]:.2f}% on all {DRAWS} scoring draws" in row(e, "A")
    assert "–" not in row(e, "A")  # no "9.25–9.25%"
    assert f"error {min(taylor):.2f}–{max(taylor):.2f}% over {DRAWS} scoring draws" in row(e, "B")
    assert gp.widgets.error_spread([3.0]) == "error 3.00%"


def test_finetune_toggle_is_off_while_nothing_is_pruned(at_start):
    e = at_start
    dense_curve = e.curve_image.value
    assert e.finetune.disabled and "0%" in e.finetune.tooltip
    e.slider.value = 0.5
    assert not e.finetune.disabled
    e.finetune.value = True
    e.slider.value = 0.0  # turned on, then back to dense: the readout says why nothing changed
    assert e.finetune.disabled
    assert "dense: nothing to fine-tune" in row(e, "A") and "+ fine-tune" not in row(e, "A")
    assert e.curve_image.value == dense_curve  # no fine-tuned points on a dense network


def test_explorer_fits_a_laptop_window(explorer):
    """The pictures, in their rows, fit under the controls on a laptop's screen.

    Before, the three pictures were stacked (800 px) and the whole explorer measured about
    1,010 px in JupyterLab; now the masks and the layer bars share a row.
    """
    rows = []
    for child in explorer.box.children:
        images = [c for c in getattr(child, "children", (child,)) if hasattr(c, "format")]
        if images:
            sizes = [(int(i.layout.width[:-2]), int(i.layout.height[:-2])) for i in images]
            rows.append((sum(w for w, _ in sizes), max(h for _, h in sizes)))
    assert len(rows) == 2
    assert sum(h for _, h in rows) <= 480, rows
    assert max(w for w, _ in rows) <= 900, rows  # a 1,366 px screen with JupyterLab's side bar
    assert all(len(r) <= 200 for r in gp.widgets.readout_text(explorer).splitlines())


def test_curve_plot_area_stays_put_when_fine_tuned_points_appear():
    levels = (0.0, 0.9, 0.99)
    line = {"mean": [2, 5, 40], "low": [2, 4, 30], "high": [2, 6, 50]}
    plain = gp.plots.explorer_curve(levels, {"A: magnitude": line}, 0.9)
    tuned = gp.plots.explorer_curve(
        levels,
        {"A: magnitude": line, "B: synflow": line},
        0.9,
        points={"A: magnitude + fine-tune": 4.0, "B: synflow + fine-tune": 3.0},
    )
    for fig in (plain, tuned):
        FigureCanvasAgg(fig).draw()
    assert plain.axes[0].get_position().bounds == tuned.axes[0].get_position().bounds
    renderer = FigureCanvasAgg(tuned).get_renderer()
    legend = tuned.axes[0].get_legend().get_window_extent(renderer)
    assert legend.x1 <= tuned.bbox.x1  # the longest label still fits in the picture


def test_a_layer_with_weights_left_never_reads_100():
    assert [gp.plots.percent_label(p) for p in (100.0, 99.96, 99.9996, 99.94, 0.04, 0.0)] == [
        "100",
        "99.96",
        ">99.999",
        "99.9",
        "0.04",
        "0",
    ]
    fig = gp.plots.layer_sparsity_bars({"A": {"fc1": 0.99996, "fc2": 1.0}})
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert labels == ["99.996", "100"]


def test_stability_band_comes_from_disjoint_scoring_draws(at_start):
    e = at_start
    assert len(e.score_draws) == DRAWS
    firsts = [draw[0][0][0] for draw in e.score_draws]
    assert torch.equal(firsts[1], e.train.images[SCORE_SAMPLES])  # draw 1 starts after draw 0
    assert not torch.equal(firsts[0], firsts[1])
    magnitude, taylor = e.curve("magnitude"), e.curve("taylor")
    assert magnitude["low"] == magnitude["high"]  # data-free: every draw gives the same mask
    assert all(lo <= m <= hi for lo, m, hi in zip(taylor["low"], taylor["mean"], taylor["high"]))
    assert any(hi > lo for lo, hi in zip(taylor["low"], taylor["high"]))


def test_per_layer_sparsity_adds_up_to_the_slider(at_start):
    e = at_start
    e.slider.value = 0.9
    result = e.result("magnitude", 0.9, False)
    pruned = sum(result.per_layer[n] * m.numel() for n, m in result.masks.items())
    assert pruned == pytest.approx(0.9 * TOTAL, abs=1)
    assert result.per_layer["fc1.weight"] != result.per_layer["fc3.weight"]


def test_pictures_are_shown_at_their_native_pixel_size(at_start):
    for widget in (at_start.curve_image, at_start.mask_image, at_start.layer_image):
        width, height = png_size(widget.value)
        assert widget.layout.width == f"{width}px" and widget.layout.height == f"{height}px"


def test_mask_picture_is_scaled_to_its_own_range():
    sparse = torch.zeros(300, 784, dtype=torch.bool)
    sparse[:3, :392] = True  # at most 1% of a pixel's weights kept
    image = gp.widgets.first_layer_image(sparse)
    fig = gp.plots.mask_images({"sparse": image, "dense": torch.ones(28, 28)})
    low, high = fig.axes[0].images[0].get_clim()
    assert (low, high) == (0.0, pytest.approx(0.01))  # not a fixed 0..1: the kept pixels show
    assert fig.axes[1].images[0].get_clim() == (0.0, 1.0)  # all kept: shown as full, not blank
    assert fig.axes[0].images[0].get_interpolation() == "nearest"


def test_curve_cursor_and_fine_tuned_points_sit_at_the_slider_level():
    levels = (0.0, 0.5, 0.9, 0.99)
    line = {"mean": [2, 3, 5, 40], "low": [2, 3, 4, 30], "high": [2, 3, 6, 50]}
    fig = gp.plots.explorer_curve(levels, {"A": line}, 0.9, points={"A tuned": 4.0})
    ax = fig.axes[0]
    cursor = next(ln for ln in ax.lines if ln.get_label().startswith("slider"))
    star = next(ln for ln in ax.lines if ln.get_marker() == "*")
    curve = next(ln for ln in ax.lines if ln.get_label() == "A")
    at_90 = list(curve.get_xdata())[levels.index(0.9)]
    assert list(cursor.get_xdata()) == [at_90, at_90] and list(star.get_xdata()) == [at_90]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "50", "90", "99"]


def test_log_axis_ticks_read_as_plain_numbers():
    fig = gp.plots.curves([1, 2, 3], {"a": [1.5, 4.0, 30.0]}, "x", "y", logy=True)
    FigureCanvasAgg(fig).draw()
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels() if t.get_text()]
    assert labels and all("10^" not in t and "times" not in t for t in labels)
    assert {"2", "5", "10", "20"} <= set(labels)


def test_legend_lies_outside_the_axes():
    fig = gp.plots.curves([1, 2], {"a": [1, 2], "b": [2, 1]}, "x", "y")
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    legend = fig.axes[0].get_legend().get_window_extent(renderer)
    assert legend.x0 >= fig.axes[0].get_window_extent(renderer).x1


def test_model_is_never_modified(at_start):
    at_start.slider.value = 0.99
    assert gp.sparsity(at_start.model) == 0.0


def test_cached_moves_are_fast(at_start):
    e = at_start
    for control, value in ((e.slider, 0.8), (e.criterion_b, "random"), (e.finetune, True)):
        control.value = value  # first visit computes
    e.slider.value, e.criterion_b.value, e.finetune.value = 0.0, "taylor", False
    for control, value in ((e.slider, 0.8), (e.criterion_b, "random"), (e.finetune, True)):
        start = time.perf_counter()
        control.value = value  # every point and picture is cached: a look-up and a redraw
        assert time.perf_counter() - start < 1.0, f"{control.description} took over 1 s"


def test_widgets_carry_stable_css_classes(explorer):
    parts = {
        "gp-sparsity": explorer.slider,
        "gp-criterion-a": explorer.criterion_a,
        "gp-criterion-b": explorer.criterion_b,
        "gp-finetune": explorer.finetune,
        "gp-readout": explorer.readout,
        "gp-curve-image": explorer.curve_image,
        "gp-mask-image": explorer.mask_image,
        "gp-layer-bars": explorer.layer_image,
    }
    for css_class, widget in parts.items():
        assert css_class in widget._dom_classes


def test_slider_is_dense_at_the_left_and_dense_at_the_high_end(explorer):
    values = [value for _, value in explorer.slider.options]
    assert values == sorted(values) and values[0] == 0.0 and values[-1] >= 0.999
    assert sum(v >= 0.9 for v in values) >= 5


def test_bad_levels_and_draws_raise_clear_errors():
    model = gp.models.lenet_300_100(seed=0)
    digits = gp.mnist("test", verbose=False).take(100)
    with pytest.raises(ValueError, match="0.9 for 90%"):
        gp.widgets.sparsity_explorer(model, digits, digits, levels=(0.0, 90.0))
    with pytest.raises(ValueError, match="fewer draws or a smaller score_samples"):
        gp.widgets.sparsity_explorer(model, digits, digits, score_samples=50, draws=3)
    with pytest.raises(ValueError, match="positive integer"):
        gp.widgets.sparsity_explorer(model, digits, digits, draws=0)


def test_first_layer_image_is_the_kept_fraction_per_pixel():
    mask = torch.zeros(300, 784, dtype=torch.bool)
    mask[:150, 0] = True
    image = gp.widgets.first_layer_image(mask)
    assert image.shape == (28, 28)
    assert image[0, 0] == 0.5 and image.sum() == 0.5


def test_snapshot_shows_the_explorers_state_without_a_front_end(at_start):
    from IPython.display import HTML, Image

    at_start.slider.value = 0.95
    parts = gp.widgets.snapshot(at_start.box)
    images = [p.data for p in parts if isinstance(p, Image)]
    texts = [p.data for p in parts if isinstance(p, HTML)]
    assert images == list(pictures(at_start).values())  # curve, masks, layers, in order
    assert "<b>A</b>: magnitude" in texts[0] and "<b>sparsity</b>: 95.0%" in texts[0]
    assert at_start.readout.value in texts


def test_snapshot_of_a_plain_box_keeps_its_order():
    import ipywidgets as w
    from IPython.display import HTML

    readout = w.HTML("<b>3.2%</b> error")
    box = w.VBox([w.SelectionSlider(options=["a", "b"], value="b", description="pick"), readout])
    parts = gp.widgets.snapshot(box)
    assert [type(p) for p in parts] == [HTML, HTML]
    assert parts[0].data == "<b>pick</b>: b" and parts[1].data == readout.value
