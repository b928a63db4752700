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
