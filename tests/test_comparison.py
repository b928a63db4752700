"""gp.run_comparison and its outputs, on a few hundred real digits."""

from __future__ import annotations

import dataclasses
import math

import pytest

import gradprune_lite as gp
from gradprune_lite.core.registry import declared_options
from gradprune_lite.experiment import comparison
from gradprune_lite.experiment.comparison import (
    epochs_per_round,
    markdown_table,
    read_rows,
    summarise,
)
from gradprune_lite.experiment.reference import fingerprint, split_validation
from gradprune_lite.experiment.rows import LEGACY_DEFAULTS, defaults_key


@pytest.fixture(scope="module")
def tiny(real_digits):
    """(train 550, validation 50, test 300) real digits."""
    pool, test = real_digits(600, 300)
    return (*split_validation(pool), test)


def test_modes_after_and_iterative_reach_the_target_sparsity(tiny, tmp_path):
    rows = gp.run_comparison(
        *tiny,
        criteria=["magnitude", "taylor"],
        sparsities=[0.9],
        modes=["after", "iterative"],
        rounds=2,
        epochs=1,
        finetune_epochs=2,
        score_samples=200,
        cache_dir=tmp_path,
        progress=False,
    )
    assert [r["criterion"] for r in rows] == ["dense", "magnitude", "taylor", "magnitude", "taylor"]
    assert rows[0]["remaining"] == 1.0
    for row in rows[1:]:
        assert row["remaining"] == pytest.approx(0.1, abs=1e-4)
    assert len(list(tmp_path.glob("lenet_300_100-seed0-*.pt"))) == 1


def test_every_mode_gets_the_same_training_budget(tiny, tmp_path):
    rows = gp.run_comparison(
        *tiny,
        criteria=["magnitude"],
        sparsities=[0.9],
        modes=["init", "after", "iterative"],
        rounds=2,
        epochs=2,
        finetune_epochs=3,
        cache_dir=tmp_path,
        progress=False,
    )
    assert [r["train_epochs"] for r in rows] == [2, 5, 5, 5]
    # seconds_per_epoch is a mean over the epochs each network trained after pruning.
    assert all(r["seconds_per_epoch"] > 0 for r in rows)


def test_dense_row_is_the_reference_of_gp_trained(tiny, tmp_path):
    train, validation, test = tiny
    (dense,) = gp.run_comparison(
        *tiny, criteria=[], sparsities=[0.5], epochs=1, cache_dir=tmp_path, progress=False
    )
    reference = gp.trained("lenet_300_100", 0, train=train, epochs=1, cache_dir=tmp_path)
    assert dense["test_error"] == gp.evaluate(reference, test).error
    assert dense["validation_error"] == gp.evaluate(reference, validation).error
    assert dense["worst_class_precision"] == float(gp.evaluate(reference, test).precision.min())
    assert dense["worst_class_precision"] < dense["macro_precision"]
    assert dense["nonzero_params"] == sum(int((p != 0).sum()) for p in reference.parameters())


def test_iterative_fine_tuning_splits_the_epochs_exactly():
    assert epochs_per_round(3, 3) == [1, 1, 1]
    assert epochs_per_round(4, 3) == [1, 1, 2]
    assert sum(epochs_per_round(10, 3)) == 10
    with pytest.raises(ValueError, match="finetune_epochs ≥ rounds"):
        epochs_per_round(2, 3)


def test_validation_split_is_the_one_of_gp_splits(real_digits):
    pool, _ = real_digits(60_000, 1)
    train, validation = split_validation(pool)
    reference_train, reference_validation, _ = gp.splits()
    assert fingerprint(train) == fingerprint(reference_train)
    assert fingerprint(validation) == fingerprint(reference_validation)


def test_rows_name_the_data_by_identity_not_by_folder(tiny, tmp_path):
    train, validation, test = tiny
    (dense,) = gp.run_comparison(
        *tiny, criteria=[], sparsities=[0.5], epochs=1, cache_dir=tmp_path, progress=False
    )
    kind = "shipped MNIST subset" if train.is_subset else "full MNIST"
    assert dense["data"] == f"{kind}: 550 training, 50 validation, 300 test digits"
    assert "/" not in dense["data"]
    assert dense["train_fingerprint"] == fingerprint(train)
    assert dense["validation_fingerprint"] == fingerprint(validation)
    assert dense["test_fingerprint"] == fingerprint(test)
    assert fingerprint(train.take(len(train) - 1)) != dense["train_fingerprint"]


def test_csv_written_before_a_column_existed_reads_it_as_missing(tmp_path):
    path = tmp_path / "old.csv"
    path.write_text("model,mode,criterion,sparsity,seed,test_error\nm,init,snip,0.9,0,1.5\n")
    (row,) = read_rows(path)
    assert row["test_error"] == 1.5 and row["criterion"] == "snip"
    assert math.isnan(row["macro_f1"]) and row["data"] == ""


def test_cached_dense_reference_is_reused(tiny, tmp_path):
    kwargs = dict(criteria=["random"], sparsities=[0.5], epochs=1, cache_dir=tmp_path)
    first = gp.run_comparison(*tiny, progress=False, **kwargs)
    written = {path: path.stat().st_mtime_ns for path in tmp_path.glob("*.pt")}
    second = gp.run_comparison(*tiny, progress=False, **kwargs)
    assert first[0]["test_error"] == second[0]["test_error"]
    assert {path: path.stat().st_mtime_ns for path in tmp_path.glob("*.pt")} == written
    assert len(written) == 1


class Interrupted(Exception):
    """Stands for Ctrl-C or a killed job in the resume test."""


def test_interrupted_run_resumes_without_redoing_finished_rows(tiny, tmp_path, monkeypatch):
    results_csv = tmp_path / "results.csv"
    kwargs = dict(
        criteria=["magnitude", "taylor"],
        sparsities=[0.9, 0.95],
        modes=["after"],
        epochs=1,
        finetune_epochs=1,
        cache_dir=tmp_path,
        progress=False,
        results_csv=results_csv,
    )
    real_prune, pruned = comparison.prune, []

    def prune_then_fail_on_the_third(net, criterion, sparsity, *args, **options):
        if len(pruned) == 2:
            raise Interrupted
        pruned.append((criterion, sparsity))
        return real_prune(net, criterion, sparsity, *args, **options)

    monkeypatch.setattr(comparison, "prune", prune_then_fail_on_the_third)
    with pytest.raises(Interrupted):
        gp.run_comparison(*tiny, **kwargs)
    finished = read_rows(results_csv)
    assert [(r["criterion"], r["sparsity"]) for r in finished] == [
        ("dense", 0.0),
        ("magnitude", 0.9),
        ("magnitude", 0.95),
    ]
    with open(results_csv, "a") as handle:
        handle.write("lenet_300_100,after,tay")  # half a row, as a kill mid-write leaves it

    pruned.clear()
    monkeypatch.setattr(
        comparison, "prune", lambda *a, **k: pruned.append(a[1:3]) or real_prune(*a, **k)
    )
    rows = gp.run_comparison(*tiny, **kwargs)
    assert pruned == [("taylor", 0.9), ("taylor", 0.95)]  # only the missing rows ran
    assert rows[:3] == finished  # the finished rows, read back unchanged
    on_disk = read_rows(results_csv)
    assert [r["run_key"] for r in on_disk] == [r["run_key"] for r in rows]
    assert len({r["run_key"] for r in on_disk}) == 5

    pruned.clear()
    assert gp.run_comparison(*tiny, **kwargs) == on_disk and pruned == []  # nothing left to do


def test_a_results_csv_of_another_protocol_is_refused(tiny, tmp_path):
    results_csv = tmp_path / "results.csv"
    kwargs = dict(criteria=[], sparsities=[0.5], cache_dir=tmp_path, progress=False)
    gp.run_comparison(*tiny, epochs=1, results_csv=results_csv, **kwargs)
    with pytest.raises(ValueError, match="another protocol"):
        gp.run_comparison(*tiny, epochs=2, results_csv=results_csv, **kwargs)


def test_a_criterion_registered_later_is_accepted_by_name(tiny, tmp_path, monkeypatch):
    monkeypatch.setitem(
        gp.CRITERIA,
        "negative_magnitude",
        lambda ctx: {name: -w.abs() for name, w in ctx.weights.items()},
    )
    assert "negative_magnitude" in comparison.default_criteria()
    rows = gp.run_comparison(
        *tiny,
        criteria=["negative_magnitude"],
        sparsities=[0.5],
        modes=["after"],
        epochs=1,
        finetune_epochs=0,
        cache_dir=tmp_path,
        progress=False,
    )
    assert rows[1]["criterion"] == "negative_magnitude"
    assert rows[1]["remaining"] == pytest.approx(0.5, abs=1e-3)


def hand_rows():
    base = {"model": "m", "mode": "init", "remaining": 0.1, "macro_f1": 0.9, "data": "hand"}
    base |= {"train_fingerprint": "0" * 16, "test_fingerprint": "1" * 16}
    base |= {"validation_fingerprint": "2" * 16, "validation_error": 1.0, "train_epochs": 13}
    base |= {"run_key": "hand", "worst_class_precision": 0.8, "nonzero_params": 1000}
    base |= {"seconds_per_epoch": 1.0, "sparse_bytes": 10, "dense_bytes": 100}
    base |= {"macro_precision": 0.9, "macro_recall": 0.9}
    return [
        {**base, "criterion": "snip", "sparsity": 0.9, "seed": 0, "test_error": 0.0},
        {**base, "criterion": "snip", "sparsity": 0.9, "seed": 1, "test_error": 2.0},
        {**base, "criterion": "dense", "sparsity": 0.0, "seed": 0, "test_error": 1.5},
    ]


def test_summary_is_mean_and_sample_std_over_seeds():
    (snip,) = [s for s in summarise(hand_rows()) if s["criterion"] == "snip"]
    assert snip["error_mean"] == 1.0
    assert snip["error_std"] == pytest.approx(math.sqrt(2.0))
    assert snip["seeds"] == 2


def test_markdown_table_shows_mean_plus_minus_std():
    table = markdown_table(hand_rows())
    assert "| m | init | snip | 1.00 ± 1.41 |" in table
    assert "| 1.50 (dense) |" in table  # one seed: no "± 0.00"
    one_seed = markdown_table([r for r in hand_rows() if r["seed"] == 0])
    assert "| m | init | snip | 0.00 |" in one_seed and "one seed" in one_seed


def test_plot_labels_the_error_axis_above_50_percent():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    # compare --quick's shape: one seed, the dense network at 13% and a collapse to 88%.
    snip, _, dense = hand_rows()
    rows = [
        {**snip, "test_error": 88.0},
        {**snip, "sparsity": 0.5, "remaining": 0.5, "test_error": 17.6},
        {**dense, "test_error": 13.25},
    ]
    axes = comparison.plot_results(rows).axes[0]
    FigureCanvasAgg(axes.figure).draw()
    low, high = axes.get_ylim()
    shown = [
        float(t.get_text())
        for t in axes.yaxis.get_majorticklabels() + axes.yaxis.get_minorticklabels()
        if t.get_text() and low <= t.get_position()[1] <= high
    ]
    assert any(value > 50 for value in shown), shown


def test_write_outputs_makes_three_files(tmp_path):
    paths = gp.write_outputs(hand_rows() * 1, tmp_path)
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths.values())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"criteria": ["nope"]}, "unknown criteria"),
        ({"modes": ["later"]}, "unknown modes"),
        ({"sparsities": [95]}, "sparsity"),
        ({"model": "vgg"}, "unknown model"),
        ({"modes": ["iterative"], "rounds": 3, "finetune_epochs": 2}, "finetune_epochs ≥ rounds"),
        ({"training": {"learning_rate": 0.1}}, "unknown training options"),
        ({"training": {"lr": -1.0}}, "lr must be positive"),
        ({"training": {"step_every": 45}}, "needs schedule='step'"),
    ],
)
def test_bad_arguments_are_errors(tiny, kwargs, match):
    with pytest.raises(ValueError, match=match):
        gp.run_comparison(*tiny, progress=False, **kwargs)


def test_a_training_recipe_reaches_every_fit_and_is_part_of_the_protocol(
    tiny, tmp_path, monkeypatch
):
    recipe = {"lr": 0.1, "batch_size": 100, "schedule": "step", "step_every": 1}
    recipe["weight_decay"] = 5e-4
    calls = []
    real_fit = comparison.fit

    def recording_fit(*args, **kwargs):
        calls.append(kwargs)
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(comparison, "fit", recording_fit)
    kwargs = dict(criteria=["magnitude"], sparsities=[0.9], epochs=1, finetune_epochs=2)
    kwargs |= dict(modes=["init", "after"], cache_dir=tmp_path, progress=False)
    results_csv = tmp_path / "results.csv"
    rows = gp.run_comparison(*tiny, training=recipe, results_csv=results_csv, **kwargs)
    # The check of the options, the dense timing epoch, init and fine-tuning: all the recipe.
    assert len(calls) == 4 and all({k: c[k] for k in recipe} == recipe for c in calls)
    # The recipe is in the run key, so these rows cannot mix with default-recipe rows.
    default_rows = gp.run_comparison(*tiny, **kwargs)
    assert {r["run_key"] for r in rows}.isdisjoint(r["run_key"] for r in default_rows)
    with pytest.raises(ValueError, match="another protocol"):
        gp.run_comparison(*tiny, results_csv=results_csv, **kwargs)
    # Spelling out the default recipe is the default protocol: old CSVs keep their keys.
    spelled = gp.run_comparison(*tiny, training=dict(comparison.DEFAULT_TRAINING), **kwargs)
    assert [r["run_key"] for r in spelled] == [r["run_key"] for r in default_rows]


def test_a_row_computed_under_other_criterion_defaults_is_not_reused(tiny, tmp_path):
    results_csv = tmp_path / "results.csv"
    kwargs = dict(
        criteria=["random"],
        sparsities=[0.5],
        modes=["after"],
        epochs=1,
        finetune_epochs=0,
        cache_dir=tmp_path,
        progress=False,
        results_csv=results_csv,
    )
    first = gp.run_comparison(*tiny, **kwargs)
    assert not first[1]["run_key"].split("/seed0")[1]  # today's defaults: no defaults part
    record = gp.CRITERIA.record("random")
    gp.CRITERIA.add(dataclasses.replace(record, options=declared_options({"seed": 7})))
    try:
        with pytest.raises(ValueError, match="other option defaults.*not reused"):
            gp.run_comparison(*tiny, **kwargs)
        elsewhere = gp.run_comparison(*tiny, **{**kwargs, "results_csv": tmp_path / "b.csv"})
    finally:
        gp.CRITERIA.add(record)
    assert elsewhere[1]["run_key"].endswith(defaults_key("random", {"seed": 7}))
    assert elsewhere[1]["run_key"] != first[1]["run_key"]


def test_the_defaults_part_of_a_run_key():
    for record in gp.CRITERIA.records():  # the built-ins of 0.1.0 keep their rows' keys
        if record.name in LEGACY_DEFAULTS:
            assert defaults_key(record.name, record.options) == ""
    # A criterion added since 0.1.0 (movement) had no rows then: its defaults are pinned.
    movement = gp.CRITERIA.record("movement")
    assert defaults_key("movement", movement.options).startswith("/defaults-")
    assert defaults_key("dense", None) == ""
    changed = defaults_key("grasp", {**LEGACY_DEFAULTS["grasp"], "temperature": 100.0})
    assert changed.startswith("/defaults-") and len(changed) == len("/defaults-") + 8
    assert defaults_key("mine", {}) != "" and defaults_key("mine", None) != defaults_key("mine", {})


def test_plot_keeps_the_legend_off_the_data_and_marks_a_curve_hidden_under_another():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    taylor = [{**r, "criterion": "taylor"} for r in hand_rows()[:2]]  # snip's points exactly
    figure = comparison.plot_results([*hand_rows(), *taylor, {**hand_rows()[0], "mode": "after"}])
    FigureCanvasAgg(figure).draw()
    renderer = figure.canvas.get_renderer()
    (legend,) = figure.legends
    box = legend.get_window_extent(renderer)
    for ax in figure.axes:
        assert ax.get_legend() is None
        assert not box.overlaps(ax.get_window_extent(renderer))
    # In "after" only snip has a point, so taylor does not repeat snip everywhere.
    assert "taylor" in [t.get_text() for t in legend.get_texts()]

    same = comparison.plot_results([*hand_rows(), *taylor])
    assert "taylor (= snip)" in [t.get_text() for t in same.legends[0].get_texts()]
    lines = {c.get_label(): c.lines[0] for c in same.axes[0].containers}
    assert lines["snip"].get_linestyle() != lines["taylor (= snip)"].get_linestyle()
