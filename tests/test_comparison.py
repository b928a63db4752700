"""gp.run_comparison and its outputs, on a few hundred real digits."""

from __future__ import annotations

import math

import pytest

import gradprune_lite as gp
from gradprune_lite.experiment.comparison import markdown_table, read_rows, summarise
from gradprune_lite.experiment.reference import fingerprint


@pytest.fixture(scope="module")
def tiny(real_digits):
    return real_digits(600, 300)


def test_modes_after_and_iterative_reach_the_target_sparsity(tiny, tmp_path):
    train, test = tiny
    rows = gp.run_comparison(
        train,
        test,
        criteria=["magnitude", "taylor"],
        sparsities=[0.9],
        modes=["after", "iterative"],
        rounds=2,
        epochs=1,
        score_samples=200,
        cache_dir=tmp_path,
        progress=False,
    )
    assert [r["criterion"] for r in rows] == ["dense", "magnitude", "taylor", "magnitude", "taylor"]
    assert rows[0]["remaining"] == 1.0
    for row in rows[1:]:
        assert row["remaining"] == pytest.approx(0.1, abs=1e-4)
    assert len(list(tmp_path.glob("dense-*.pt"))) == 1


def test_rows_name_the_data_by_identity_not_by_folder(tiny, tmp_path):
    train, test = tiny
    (dense,) = gp.run_comparison(
        train, test, criteria=[], sparsities=[0.5], epochs=1, cache_dir=tmp_path, progress=False
    )
    kind = "shipped MNIST subset" if train.is_subset else "full MNIST"
    assert dense["data"] == f"{kind}: {len(train):,} training, {len(test):,} test digits"
    assert "/" not in dense["data"]
    assert dense["train_fingerprint"] == fingerprint(train)
    assert dense["test_fingerprint"] == fingerprint(test)
    assert fingerprint(train.take(len(train) - 1)) != dense["train_fingerprint"]


def test_csv_written_before_a_column_existed_reads_it_as_missing(tmp_path):
    path = tmp_path / "old.csv"
    path.write_text("model,mode,criterion,sparsity,seed,test_error\nm,init,snip,0.9,0,1.5\n")
    (row,) = read_rows(path)
    assert row["test_error"] == 1.5 and row["criterion"] == "snip"
    assert math.isnan(row["macro_f1"]) and row["data"] == ""


def test_cached_dense_reference_is_reused(tiny, tmp_path):
    train, test = tiny
    kwargs = dict(criteria=["random"], sparsities=[0.5], epochs=1, cache_dir=tmp_path)
    first = gp.run_comparison(train, test, progress=False, **kwargs)
    second = gp.run_comparison(train, test, progress=False, **kwargs)
    assert first[0]["test_error"] == second[0]["test_error"]
    assert first[0]["seconds_per_epoch"] == second[0]["seconds_per_epoch"]  # read, not re-measured


def hand_rows():
    base = {"model": "m", "mode": "init", "remaining": 0.1, "macro_f1": 0.9, "data": "hand"}
    base |= {"train_fingerprint": "0" * 16, "test_fingerprint": "1" * 16}
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
    assert "1.50 ± 0.00 (dense)" in table


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
    ],
)
def test_bad_arguments_are_errors(tiny, kwargs, match):
    train, test = tiny
    with pytest.raises(ValueError, match=match):
        gp.run_comparison(train, test, progress=False, **kwargs)
