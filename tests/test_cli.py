"""The gradprune-lite command: a --quick run end to end, the cache, and argument errors."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
import warnings

import pytest

from gradprune_lite.cli import QUICK, main
from gradprune_lite.experiment.comparison import read_rows
from gradprune_lite.experiment.reference import fingerprint


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("quick")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the subset warning, where the full set is absent
        # --quick as shipped, on fewer digits so the test suite stays fast.
        status = main(
            ["compare", "--quick", "--out", str(out), "--no-progress", "--train-limit", "3000"]
            + ["--cache", str(out / "cache")]
        )
    return status, out


def test_quick_run_writes_csv_table_and_plot(quick_run, capsys):
    status, out = quick_run
    assert status == 0
    with open(out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    criteria, sparsities = QUICK["criteria"].split(","), QUICK["sparsity"].split(",")
    assert len(rows) == 1 + len(criteria) * len(sparsities)  # the dense row, then the grid
    pruned = [r for r in rows if r["criterion"] != "dense"]
    for row in pruned:
        assert float(row["remaining"]) == pytest.approx(1 - float(row["sparsity"]), abs=1e-4)
        assert 0 <= float(row["test_error"]) <= 100
        assert int(float(row["sparse_bytes"])) < int(float(row["dense_bytes"]))
    table = (out / "results.md").read_text()
    assert all(c in table for c in criteria) and "90%" in table and "98%" in table
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dense_reference_is_cached_by_configuration(quick_run):
    _, out = quick_run
    cached = list((out / "cache").glob("lenet_300_100-seed0-*.pt"))
    assert len(cached) == 1


def quick_digits(monkeypatch, full: bool):
    """What --quick trains, validates and tests on, and what it prints about them."""
    import argparse

    from gradprune_lite.cli import _load_digits

    if not full:  # no full MNIST anywhere: the shipped subset
        monkeypatch.delenv("GRADPRUNE_DATA", raising=False)
        monkeypatch.setenv("GRADPRUNE_OFFLINE", "1")
        monkeypatch.setenv("GRADPRUNE_CACHE", "/nonexistent-gradprune-cache")
    args = argparse.Namespace(data=None, quick=True, train_limit=10_000, test_limit=2_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _load_digits(args)


def test_quick_says_truly_which_digits_and_they_are_the_subsets(monkeypatch, capsys):
    with_full = quick_digits(monkeypatch, full=True)
    said = capsys.readouterr().out
    without = quick_digits(monkeypatch, full=False)
    said_without = capsys.readouterr().out
    assert [fingerprint(d) for d in with_full] == [fingerprint(d) for d in without]
    assert [len(d) for d in with_full] == [9_167, 833, 2_000]
    assert "the shipped MNIST subset" in said_without and "full MNIST" not in said_without
    if not with_full[0].is_subset:  # GRADPRUNE_DATA holds full MNIST
        assert "the first 10,000 of the 60,000 train digits of full MNIST" in said
        assert "the first 2,000 of the 10,000 test digits of full MNIST" in said
        assert "same with or without full MNIST" in said
        assert "full train set" not in said


def test_rerun_resumes_from_the_csv_and_shows_the_time_left(quick_run, capsys):
    _, out = quick_run
    before = (out / "results.csv").read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        status = main(
            ["compare", "--quick", "--out", str(out), "--train-limit", "3000"]
            + ["--cache", str(out / "cache")]
        )
    assert status == 0
    assert (out / "results.csv").read_text() == before  # every row was there: none re-run
    bar = capsys.readouterr().err
    # tqdm's [elapsed<left, rate]: here all 14 epochs of work were already done.
    assert re.search(r"compare lenet_300_100: 100%.*\b14/14 \[\d\d:\d\d<.*epoch/s\]", bar)


def test_report_merges_runs(quick_run, tmp_path):
    _, out = quick_run
    status = main(["report", str(out / "results.csv"), "--out", str(tmp_path)])
    assert status == 0
    assert read_rows(tmp_path / "results.csv") == read_rows(out / "results.csv")
    summary = (tmp_path / "summary.md").read_text()
    assert "| 90% | magnitude | magnitude, init |" in summary
    assert "| 90% | first-order gradient | snip, init |" in summary


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--criteria", "magnitude,bogus"], "choose from"),
        (["--sparsity", "150"], "out of range"),
        (["--sparsity", "ninety"], "not a number"),
        (["--mode", "later"], "init, after, iterative"),
        (["--model", "resnet"], "lenet_300_100"),
        (["--epochs", "0"], "--epochs must be"),
        (["--seeds", "a,b"], "integers"),
        (["--sparsity", "1"], "ambiguous (1% or 100%?)"),
        (["--sparsity", "90,1.0"], "for 1% write 0.01"),
        (["--sparsity", "100"], "out of range"),
        (["--sparsity", "0"], "out of range"),
    ],
)
def test_bad_arguments_exit_with_a_clear_message(arguments, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--quick", "--out", str(tmp_path), *arguments])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_module_entry_point_documents_every_option():
    result = subprocess.run(
        [sys.executable, "-m", "gradprune_lite", "compare", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for option in (
        "--model",
        "--criteria",
        "--sparsity",
        "--mode",
        "--rounds",
        "--epochs",
        "--seeds",
        "--device",
        "--out",
        "--quick",
        "--finetune-epochs",
        "--lr",
        "--batch-size",
        "--schedule",
        "--step-every",
        "--weight-decay",
    ):
        assert option in result.stdout
    help_text = " ".join(result.stdout.split())
    assert (
        "every pruned network gets the same number of epochs, --epochs + --finetune-epochs, in every mode"
        in help_text
    )
    assert "lr 0.05, cosine schedule, batch 128, as gp.trained" in help_text


def test_training_recipe_options_reach_run_comparison(monkeypatch, tmp_path):
    from gradprune_lite import cli

    seen = {}

    def record(*args, training=None, **kwargs):
        seen["training"] = training
        raise ValueError("stop here")

    monkeypatch.setattr(cli, "run_comparison", record)
    recipe = ["--lr", "0.1", "--batch-size", "100", "--schedule", "step", "--step-every", "45"]
    status = main(["compare", "--quick", "--out", str(tmp_path), *recipe, "--weight-decay", "5e-4"])
    assert status == 1  # the recorded ValueError, reported as an error
    assert seen["training"] == {
        "lr": 0.1,
        "batch_size": 100,
        "schedule": "step",
        "step_every": 45,
        "weight_decay": 5e-4,
    }
    main(["compare", "--quick", "--out", str(tmp_path), "--schedule", "constant"])
    assert seen["training"] == {"schedule": None}
    main(["compare", "--quick", "--out", str(tmp_path)])
    assert seen["training"] == {}  # nothing given: the default recipe, the default protocol


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--lr", "0"], "argument --lr: must be > 0"),
        (["--lr", "-0.1"], "argument --lr: must be > 0"),
        (["--lr", "nan"], "argument --lr: must be > 0"),
        (["--lr", "fast"], "argument --lr: 'fast' is not a number"),
        (["--batch-size", "0"], "argument --batch-size: must be > 0"),
        (["--batch-size", "12.5"], "argument --batch-size: '12.5' is not an integer"),
        (["--step-every", "-3"], "argument --step-every: must be > 0"),
        (["--weight-decay=-1e-4"], "argument --weight-decay: must be ≥ 0"),
    ],
)
def test_recipe_flags_are_checked_before_any_data_loads(arguments, message, capsys, tmp_path):
    from gradprune_lite import cli

    def no_data(*_args, **_kwargs):
        raise AssertionError("MNIST was loaded before the flags were checked")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli, "mnist", no_data)
        with pytest.raises(SystemExit) as exit_info:
            main(["compare", "--quick", "--out", str(tmp_path), *arguments])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("command", ["compare", "report"])
def test_out_pointing_at_a_file_is_refused(command, capsys, tmp_path):
    from gradprune_lite import cli

    taken = tmp_path / "results.txt"
    taken.write_text("not a folder")
    arguments = {
        "compare": ["compare", "--quick", "--out", str(taken)],
        "report": ["report", str(taken), "--out", str(taken)],
    }[command]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli, "mnist", lambda *a, **k: pytest.fail("MNIST loaded"))
        with pytest.raises(SystemExit) as exit_info:
            main(arguments)
    assert exit_info.value.code == 2
    assert f"--out: {taken} is a file, not a folder" in capsys.readouterr().err
    assert taken.read_text() == "not a folder"


@pytest.mark.slow
def test_compare_runs_the_residual_cnn_with_batchnorm(tmp_path):
    """``--model resnet_mnist`` (notebook 06's network: residual additions, BatchNorm) end to
    end: the dense network trains, and after pruning and fine-tuning the masks still hold
    exactly the asked sparsity of the prunable weights (BatchNorm's own parameters are not
    pruned). --quick's 9,167 training digits: about 30 s on one thread."""
    import torch

    import gradprune_lite as gp
    from gradprune_lite.core.layers import prunable_modules

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        status = main(
            ["compare", "--quick", "--model", "resnet_mnist", "--out", str(tmp_path)]
            + ["--criteria", "magnitude", "--mode", "after", "--sparsity", "50"]
            + ["--no-progress", "--cache", str(tmp_path / "cache")]
        )
    assert status == 0
    rows = {row["criterion"]: row for row in read_rows(tmp_path / "results.csv")}
    assert float(rows["dense"]["test_error"]) < 50  # trained (it starts at about 90%)
    pruned = rows["magnitude"]
    assert float(pruned["remaining"]) == pytest.approx(0.5, abs=1e-4)
    prunable = sum(
        module.weight.numel() for module in prunable_modules(gp.models.resnet_mnist()).values()
    )
    others = int(rows["dense"]["nonzero_params"]) - prunable  # biases and BatchNorm
    assert int(pruned["nonzero_params"]) <= prunable // 2 + others + 1
    assert float(pruned["test_error"]) < 50
    assert torch.isfinite(torch.tensor(float(pruned["validation_error"])))
