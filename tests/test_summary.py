"""The four-question summary: choices made on validation error, verdicts, published anchors."""

from __future__ import annotations

import math

import pytest
from test_results_doc import regenerate_doc  # scripts/results_doc.py, loaded there

from gradprune_lite.experiment import results
from gradprune_lite.experiment.rows import merge_rows
from gradprune_lite.experiment.summary import (
    choose_on_validation,
    error_table,
    family,
    matched_table,
    published_table,
    runs_table,
    summary_table,
)


def row(mode, criterion, sparsity, seed, test_error, validation_error, **extra):
    return {
        "model": "lenet_300_100",
        "mode": mode,
        "criterion": criterion,
        "sparsity": sparsity,
        "seed": seed,
        "validation_error": validation_error,
        "test_error": test_error,
        "macro_precision": 0.98,
        "worst_class_precision": 0.96,
        "seconds_per_epoch": 1.0,
        "sparse_bytes": 1000.0,
        "nonzero_params": 500.0,
        "run_key": "",
        **extra,
    }


def rows_where_test_and_validation_disagree():
    """taylor after: best on test, worst on validation; fisher iterative the reverse."""
    rows = []
    for seed in (0, 1):
        rows += [
            row("dense", "dense", 0.0, seed, 1.6, 1.5),
            row("after", "magnitude", 0.95, seed, 2.0 + seed / 10, 1.9),
            row("after", "taylor", 0.95, seed, 1.0, 3.0),
            row("iterative", "snip", 0.95, seed, 2.5, 2.5),
            row("iterative", "fisher", 0.95, seed, 2.4, 1.0),
            row("after", "random", 0.95, seed, 9.0, 0.5),
        ]
    return rows


def test_each_family_is_chosen_on_validation_error_never_on_test():
    chosen = choose_on_validation(rows_where_test_and_validation_disagree(), "lenet_300_100", 0.95)
    assert {name: (m[0]["criterion"], m[0]["mode"]) for name, m in chosen.items()} == {
        "magnitude": ("magnitude", "after"),
        "first-order gradient": ("snip", "iterative"),  # taylor has the better *test* error
        "second-order": ("fisher", "iterative"),
        "random": ("random", "after"),
    }


def test_rows_without_a_validation_error_are_not_chosen():
    rows = [row("after", "taylor", 0.9, 0, 1.0, math.nan)]
    assert choose_on_validation(rows, "lenet_300_100", 0.9) == {}
    assert "no rows with a validation error" in summary_table(rows, "lenet_300_100", [0.9])
    assert "no validation error" in published_table(
        [row("after", "taylor", 0.95, 0, 1.0, math.nan)], "lenet_300_100"
    )


def test_unknown_criteria_are_their_own_family():
    assert family("obs") == "second-order" and family("channel_l1") == "channel_l1"


def test_summary_answers_the_four_questions_and_says_who_wins():
    table = summary_table(rows_where_test_and_validation_disagree(), "lenet_300_100", [0.95])
    assert "| 95% | magnitude | magnitude, after | 1.90 | 2.05 ± 0.07 | 98.00% | 96.00% |" in table
    assert "| 95% | second-order | fisher, iterative | 1.00 | 2.40 ± 0.00 |" in table
    assert "| random |" not in table  # the floor is not a contender
    # fisher (best on validation among gradient families) against magnitude on test error:
    assert "gradient-based wins by" not in table
    assert (
        "magnitude wins by 0.35 points of test error: magnitude (after) 2.05 against the best "
        "gradient-based on validation, fisher (iterative) 2.40." in table
    )
    assert "Published SNIP (pruned at initialisation, then trained): 1.6" in table


def test_published_table_labels_protocols_and_gaps():
    table = published_table(rows_where_test_and_validation_disagree(), "lenet_300_100")
    assert (
        "| SNIP | pruned at initialisation, then trained | 95.0% | 1.6 | 2.40 ± 0.00 "
        "(fisher, iterative) | 2.05 ± 0.07 (magnitude, after) | +0.80 |" in table
    )
    assert "| Han et al. | iterative magnitude pruning and retraining | 92.0% | 1.59 | not run" in (
        table
    )


def test_matched_table_sets_each_published_number_beside_the_same_method_only():
    rows = rows_where_test_and_validation_disagree()
    rows += [row("init", "snip", 0.95, seed, 3.0 + seed, 9.0) for seed in (0, 1)]
    table = matched_table(rows, "lenet_300_100")
    # SNIP's number meets our snip at init, however badly it does on validation.
    assert "| SNIP | pruned at initialisation, then trained | 95.0% | 1.6 | snip, init | " in table
    assert "| 3.50 ± 0.71 | 2 | +1.90 |" in table
    assert "| 98.0% | 2.4 | snip, init | not run | 0 | – |" in table
    assert (
        "| Sparse VD | sparsity learned in training | 98.5% | 1.92 | no counterpart | – |" in table
    )


def test_error_table_lists_every_configuration_with_the_published_rows_first():
    table = error_table(rows_where_test_and_validation_disagree(), "lenet_300_100", [0.95])
    lines = table.splitlines()
    assert lines[2].startswith("| **published** SNIP")
    assert "| ours, taylor (after) |  | 1.00 ± 0.00 |" in table


def test_merge_collapses_shared_dense_rows_and_refuses_disagreeing_ones():
    dense = row("dense", "dense", 0.0, 0, 1.6, 1.5)
    assert merge_rows([dense, dict(dense)]) == [dense]
    keyed = [dict(dense, run_key="p/x", seconds_per_epoch=s) for s in (1.0, 2.0)]
    assert merge_rows(keyed) == keyed[:1]  # same run: only the timing differs
    with pytest.raises(ValueError, match="disagree"):
        merge_rows([dense, dict(dense, test_error=1.7)])


def test_doc_blocks_are_rebuilt_from_the_csvs_they_name(tmp_path):
    from gradprune_lite.experiment.comparison import CSV_COLUMNS, write_outputs

    rows = [
        {k: r.get(k, "") for k in CSV_COLUMNS} for r in rows_where_test_and_validation_disagree()
    ]
    for r in rows:
        r.update(remaining=0.05, macro_recall=0.9, macro_f1=0.9, dense_bytes=2000, train_epochs=13)
    write_outputs(rows, tmp_path / "run")
    stale = (
        "<!-- table: summary lenet_300_100 at 95 from run/results.csv -->\nold\n<!-- /table -->\n"
    )
    fresh = regenerate_doc("intro\n" + stale + "outro\n", tmp_path)
    assert fresh.startswith("intro\n<!-- table: summary") and fresh.endswith(
        "<!-- /table -->\noutro\n"
    )
    assert "old" not in fresh and "magnitude wins by 0.35" in fresh
    assert regenerate_doc(fresh, tmp_path) == fresh
    with pytest.raises(ValueError, match="missing CSVs"):
        regenerate_doc(stale.replace("run/", "gone/"), tmp_path)


def test_a_difference_within_the_seed_spread_is_called_a_tie():
    rows = []
    for seed, (magnitude, taylor) in enumerate([(2.0, 2.1), (2.4, 2.2)]):
        rows += [
            row("after", "magnitude", 0.9, seed, magnitude, 1.0),
            row("after", "taylor", 0.9, seed, taylor, 1.1),
        ]
    table = summary_table(rows, "lenet_300_100", [0.9])
    assert "**90%**: a tie within the seed-to-seed spread (±0.28)" in table
    assert "wins by" not in table


def test_committed_results_are_found_from_anywhere_in_a_clone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside the repository: found through the source tree
    monkeypatch.delenv(results.RESULTS_ENV, raising=False)
    found = results.results_file()
    assert found.parts[-4:] == ("docs", "results", "summary", "results.csv") and found.is_file()
    assert results.committed_rows()[0]["criterion"] == "dense"
    assert ("SNIP", 0.95, 1.6) in {
        (p.method, p.sparsity, p.error) for p in results.published_numbers()
    }


def test_without_the_repository_the_reader_says_where_it_looked_and_what_to_do(
    tmp_path, monkeypatch
):
    monkeypatch.delenv(results.RESULTS_ENV, raising=False)
    monkeypatch.setattr(results, "SOURCE_RESULTS", tmp_path / "wheel" / "docs" / "results")
    with pytest.raises(FileNotFoundError) as error:
        results.results_file("summary/results.csv")
    message = str(error.value)
    assert "\n" not in message and str(tmp_path / "wheel") in message
    assert "pip install -e ." in message and "GRADPRUNE_RESULTS" in message
    assert results.published_numbers(required=False) == ()
    assert "published" not in summary_table([], "lenet_300_100", [0.95]).lower()
    copy = tmp_path / "copy"
    (copy / "summary").mkdir(parents=True)
    (copy / "summary" / "results.csv").write_text("model\n")
    monkeypatch.setenv(results.RESULTS_ENV, str(copy))
    assert results.results_file() == copy / "summary" / "results.csv"
    with pytest.raises(FileNotFoundError, match=f"GRADPRUNE_RESULTS={copy}"):
        results.results_file("nothing.csv")


def test_runs_table_keeps_each_run_apart_and_shows_only_shared_methods(tmp_path):
    short = [
        row("init", "snip", 0.95, seed, 2.6 + seed / 10, 2.0, train_epochs=13) for seed in (0, 1)
    ]
    short += [row("init", "magnitude", 0.95, 0, 9.0, 9.0, train_epochs=13)]
    long = [row("init", "snip", 0.95, 0, 1.9, 1.8, train_epochs=135)]  # same grid point
    table = runs_table([("short", short), ("long", long)], "lenet_300_100", [0.95, 0.98])
    lines = table.splitlines()
    assert lines[0] == "| run | method | epochs | seeds | 95% | 98% |"
    assert lines[2].startswith("| **published** SNIP") and lines[2].endswith(
        "|  |  |  | 1.6 | 2.4 |"
    )
    assert "| short | snip, init | 13 | 2 | 2.65 ± 0.07 | – |" in lines
    assert "| long | snip, init | 135 | 1 | 1.90 | – |" in lines
    assert "magnitude" not in table  # only in one run: nothing to set beside it
    with pytest.raises(ValueError, match="at least one"):
        runs_table([], "lenet_300_100", [0.95])
    # In a document, each CSV is a run named by its folder, and the same grid point in two
    # CSVs is no conflict (a merged table would refuse it).
    from gradprune_lite.experiment.comparison import CSV_COLUMNS, write_outputs

    filled = dict(remaining=0.05, macro_recall=0.9, macro_f1=0.9, dense_bytes=2000)
    for name, rows in (("short", short), ("long", long)):
        write_outputs(
            [{k: {**r, **filled}.get(k, "") for k in CSV_COLUMNS} for r in rows], tmp_path / name
        )
    marker = "<!-- table: runs lenet_300_100 at 95 from short/results.csv, long/results.csv -->"
    doc = regenerate_doc(marker + "\nold\n<!-- /table -->\n", tmp_path)
    assert "| long | snip, init | 135 | 1 | 1.90 |" in doc and "old" not in doc
    with pytest.raises(ValueError, match="needs a model and sparsities"):
        regenerate_doc(marker.replace(" at 95", "") + "\n<!-- /table -->\n", tmp_path)
