"""Notebook 04's sweep: one run is the notebook's old loop, and the committed file is its output."""

from __future__ import annotations

import itertools
import math
import warnings

import pytest
import torch

import gradprune_lite as gp
from gradprune_lite.experiment import sweep
from gradprune_lite.experiment.results import results_file

COMMITTED = "notebook04/runs.csv"


@pytest.fixture(scope="module")
def digits():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gp.mnist("train", limit=600, verbose=False, download=False)


def _as_notebook_did(dense, criterion, sparsity, seed, train, validation, test):
    """The loop notebook 04 ran before the sweep moved into ``sweep.prune_and_finetune``."""
    shuffled = train.batches(batch_size=250, shuffle=True, seed=seed)
    score_batches = list(itertools.islice(shuffled, 4))
    options = {"seed": seed} if criterion == "random" else {}
    scores = gp.score(dense, criterion, score_batches, **options)
    pruned = gp.models.lenet_300_100()
    pruned.load_state_dict(dense.state_dict())
    gp.apply_masks(pruned, gp.global_masks(scores, sparsity))
    before = gp.evaluate(pruned, test).error
    gp.fit(pruned, train, epochs=1, lr=0.05, schedule="cosine", seed=seed, progress=False)
    return before, gp.evaluate(pruned, test).error, gp.evaluate(pruned, validation).error


@pytest.mark.parametrize(("criterion", "seed"), [("taylor", 1), ("random", 2)])
def test_a_run_is_exactly_the_notebooks_old_loop_and_leaves_dense_alone(digits, criterion, seed):
    dense = gp.models.lenet_300_100(seed=5)
    gp.fit(dense, digits, epochs=1, lr=0.05, seed=0, progress=False)
    before = {k: v.clone() for k, v in dense.state_dict().items()}
    train, validation, test = digits.slice(0, 400), digits.slice(400, 500), digits.slice(500, None)
    run = sweep.prune_and_finetune(dense, criterion, 0.9, seed, train, validation, test)
    assert tuple(run) == _as_notebook_did(dense, criterion, 0.9, seed, train, validation, test)
    for key, value in dense.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize(
    ("criterion", "sparsity", "seed", "message"),
    [
        ("magnitud", 0.9, 0, "unknown criterion 'magnitud'"),
        ("obs", 0.9, 0, "moves weights"),
        ("movement", 0.9, 0, "keeps state"),
        ("magnitude", 95, 0, r"sparsity must be in \[0, 1\]"),
        ("magnitude", -0.1, 0, r"sparsity must be in \[0, 1\]"),
        ("magnitude", 0.9, -1, "seed must be a non-negative integer"),
        ("magnitude", 0.9, 1.5, "seed must be a non-negative integer"),
    ],
)
def test_bad_input_is_refused_before_anything_runs(digits, criterion, sparsity, seed, message):
    dense = gp.models.lenet_300_100(seed=0)
    with pytest.raises(ValueError, match=message):
        sweep.prune_and_finetune(dense, criterion, sparsity, seed, digits, digits, digits)


@pytest.mark.parametrize("which", [0, 1, 2])
def test_data_that_is_not_digits_is_refused_naming_the_argument(digits, which):
    """A list of (images, labels) batches, what gp.score takes, failed inside scoring with an
    AttributeError on .batches, or after the whole fine-tuning for validation and test."""
    data = [digits, digits, digits]
    data[which] = [(digits.images[:10], digits.labels[:10])]
    name = ("train", "validation", "test")[which]
    dense = gp.models.lenet_300_100(seed=0)
    with pytest.raises(ValueError, match=f"{name} must be gp.Digits"):
        sweep.prune_and_finetune(dense, "magnitude", 0.9, 0, *data)


def test_runs_read_back_as_the_same_floats_with_their_provenance(tmp_path):
    runs = {
        ("taylor", 0.95, 0): sweep.SweepRun(0.1 + 0.2, 2.2499999999999964, math.nan),
        ("random", 0.98, 2): sweep.SweepRun(90.26, 1 / 3, 100.0),
    }
    path = tmp_path / "runs.csv"
    sweep.write_runs(path, runs, {"command": "python x.py", "seconds": "12"})
    back = sweep.read_runs(path)
    assert list(back) == list(runs)
    assert back["random", 0.98, 2] == runs["random", 0.98, 2]
    assert back["taylor", 0.95, 0][:2] == runs["taylor", 0.95, 0][:2]
    assert math.isnan(back["taylor", 0.95, 0].tuned_validation)
    assert sweep.read_provenance(path) == {"command": "python x.py", "seconds": "12"}


def test_the_committed_file_holds_every_run_of_the_grid_and_says_how_it_was_made():
    path = results_file(COMMITTED)
    runs = sweep.read_runs(path)
    grid = itertools.product(sweep.CRITERIA_SWEPT, sweep.LEVELS, sweep.SEEDS)
    assert sorted(runs) == sorted(grid)
    assert all(0 <= error <= 100 for run in runs.values() for error in run)
    made = sweep.read_provenance(path)
    assert made["command"] == "python scripts/sweep_04.py"
    assert made["threads"] == "2"  # notebook 04's torch.set_num_threads(2)
    assert int(made["runs"]) == len(runs)


@pytest.mark.slow
def test_a_committed_row_is_what_the_function_computes_now():
    """Recompute one row (one fit on 55,000 digits) and require the file's exact floats."""
    path = results_file(COMMITTED)
    made = sweep.read_provenance(path)
    train, validation, test = gp.splits()
    if train.is_subset:
        pytest.skip("the committed sweep used full MNIST; set GRADPRUNE_DATA to a copy of it")
    if torch.backends.cpu.get_cpu_capability() != made["cpu_capability"]:
        pytest.skip(
            f"the committed sweep ran on {made['cpu_capability']} vector instructions and this "
            f"processor runs {torch.backends.cpu.get_cpu_capability()}, which rounds training "
            "differently; recompute the file with scripts/sweep_04.py to compare here"
        )
    torch.set_num_threads(int(made["threads"]))
    dense = gp.trained("lenet_300_100")
    run = sweep.prune_and_finetune(dense, "magnitude", 0.95, 1, train, validation, test)
    assert run == sweep.read_runs(path)["magnitude", 0.95, 1]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda text: text[:-8], r"line 4 .* is not a run \(5 fields instead of 6\)"),
        (lambda text: text.replace("90.26", "9O.26"), r"line 4 .* is not a run .*'9O.26'"),
        (lambda text: text.replace("criterion,", ""), "does not start with the header row"),
        (lambda text: text.split("criterion,")[0], "does not start with the header row"),
        (lambda text: text[: text.index("\ntaylor")], "holds a header but no runs"),
        (lambda text: text + text.splitlines()[-1] + "\n", r"line 5 repeats the run"),
    ],
)
def test_a_damaged_file_is_a_value_error_that_names_the_line_and_the_fix(tmp_path, damage, message):
    """A truncated or edited runs file (the brief: corrupt data files give a clear
    ValueError) says where it is wrong and how to get a good one back, instead of a bare
    KeyError or float() error, or silently fewer runs."""
    path = tmp_path / "runs.csv"
    runs = {
        ("taylor", 0.95, 0): sweep.SweepRun(1.5, 2.25, 3.0),
        ("random", 0.98, 2): sweep.SweepRun(90.26, 1 / 3, 100.0),
    }
    sweep.write_runs(path, runs, {"command": "python x.py"})
    path.write_text(damage(path.read_text()))
    with pytest.raises(ValueError, match=message) as caught:
        sweep.read_runs(path)
    assert "scripts/sweep_04.py" in str(caught.value)


@pytest.mark.parametrize(
    "provenance", [{"command": "a\nb"}, {"a: b": "c"}, {"": "c"}, {"note": "x\r"}]
)
def test_provenance_that_would_not_read_back_is_refused_before_writing(tmp_path, provenance):
    """A line break in a value made the rest of it a data line, so the file no longer read."""
    path = tmp_path / "runs.csv"
    with pytest.raises(ValueError, match="cannot be one '# key: value' line"):
        sweep.write_runs(path, {("taylor", 0.95, 0): sweep.SweepRun(1.0, 2.0, 3.0)}, provenance)
    assert not list(tmp_path.iterdir())


def test_a_provenance_line_without_a_value_is_a_value_error(tmp_path):
    path = tmp_path / "runs.csv"
    sweep.write_runs(path, {("taylor", 0.95, 0): sweep.SweepRun(1.0, 2.0, 3.0)}, {"a": "b"})
    path.write_text(path.read_text().replace("# a: b", "# a b"))
    with pytest.raises(ValueError, match=r"line 1 \('# a b'\) is not a '# key: value' line"):
        sweep.read_provenance(path)
    path.write_text(path.read_text().replace("# a b", "# a:"))  # an editor trimmed "# a: "
    assert sweep.read_provenance(path) == {"a": ""}


def test_a_file_that_is_not_text_is_a_value_error(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_bytes(b"\x00\x01\xff\xfe")
    for read in (sweep.read_runs, sweep.read_provenance):
        with pytest.raises(ValueError, match="is not a text file"):
            read(path)


def test_an_interrupted_write_leaves_the_old_file_whole(tmp_path):
    path = tmp_path / "runs.csv"
    good = {("taylor", 0.95, 0): sweep.SweepRun(1.5, 2.25, 3.0)}
    sweep.write_runs(path, good, {"command": "python x.py"})
    broken = {("taylor", 0.95, 0): sweep.SweepRun(1.5, 2.25, 3.0), ("x", 0.9, 0): None}
    with pytest.raises(TypeError):  # fails after the first row is written
        sweep.write_runs(path, broken, {"command": "python x.py"})
    assert sweep.read_runs(path) == good
