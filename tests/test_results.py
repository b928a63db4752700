"""The reader of the committed results: the transfer experiment's chosen-lr summary."""

from __future__ import annotations

import csv
import math
import statistics

import pytest

from gradprune_lite.experiment import results
from gradprune_lite.experiment.results import TransferCell, transfer_summary, transfer_table


def row(seed, lr, val, test, budget="light", method="movement", sparsity=0.9, epochs=1):
    return {
        "seed": seed,
        "budget": budget,
        "epochs": epochs,
        "method": method,
        "sparsity": sparsity,
        "lr": lr,
        "val_error": val,
        "test_error": test,
    }


def test_each_seed_keeps_the_lr_with_the_lowest_validation_error_first_on_a_tie():
    rows = [
        row(0, 0.001, 5.0, 9.0),
        row(0, 0.005, 4.0, 8.0),  # chosen for seed 0
        row(1, 0.001, 3.0, 7.0),  # chosen for seed 1: the first of two equal val errors
        row(1, 0.005, 3.0, 1.0),
    ]
    cell = transfer_summary(rows)[("light", "movement", 0.9)]
    assert cell.errors == (8.0, 7.0) and cell.lrs == (0.005, 0.001)
    assert cell.grid == (0.001, 0.005)
    assert cell.mean == 7.5 and math.isclose(cell.sd, statistics.stdev([8.0, 7.0]))
    assert not cell.at_grid_top  # seed 1 chose the smaller lr
    assert transfer_summary(rows[:2])[("light", "movement", 0.9)].at_grid_top


def test_one_seed_prints_no_spread():
    cell = TransferCell("light", "dense", 0.0, 1, (6.5,), (0.005,), (0.001, 0.005))
    assert math.isnan(cell.sd) and cell.text() == "6.50"


def test_committed_summary_equals_an_independent_pass_over_the_csv():
    with open(results.results_file("transfer/runs.csv"), newline="") as handle:
        raw = list(csv.DictReader(handle))
    best: dict[tuple, dict] = {}
    for r in raw:
        run = (r["seed"], r["budget"], r["method"], float(r["sparsity"]))
        if run not in best or float(r["val_error"]) < float(best[run]["val_error"]):
            best[run] = r
    summary = transfer_summary()
    for (budget, method, sparsity), cell in summary.items():
        errors = sorted(
            float(r["test_error"])
            for (_, b, m, s), r in best.items()
            if (b, m, s) == (budget, method, sparsity)
        )
        assert sorted(cell.errors) == errors
    assert len(summary) == 3 * (1 + 4 * 5)  # budgets × (dense + 4 methods × 5 sparsities)


def test_table_has_a_row_per_budget_and_method_and_bolds_the_lowest_pruned_mean():
    rows = [
        row(0, 0.1, 1.0, 2.0, method="dense", sparsity=0.0),
        row(0, 0.1, 1.0, 3.0, method="magnitude"),
        row(0, 0.1, 1.0, 4.0, method="gmp"),
    ]
    table = transfer_table(transfer_summary(rows)).splitlines()
    assert table[0] == "| budget | method | 0% | 90% |"
    assert table[2] == "| light (1 epoch) | dense | 2.00 † | – |"
    assert table[3] == "| light (1 epoch) | magnitude | – | **3.00 †** |"
    assert table[4] == "| light (1 epoch) | gmp | – | 4.00 † |"


@pytest.mark.parametrize(
    ("method", "sparsity", "seeds"), [("obs", 0.95, 3), ("magnitude", 0.95, 3), ("dense", 0.0, 3)]
)
def test_oneshot_errors_reads_one_error_per_seed(method, sparsity, seeds):
    assert len(results.oneshot_errors(method, sparsity)) == seeds


def test_protocol_errors_reads_the_three_seeds_of_snip_at_initialisation():
    errors = results.protocol_errors("lenet_300_100", "init", "snip", 0.98)
    assert len(errors) == 3 and all(0 < e < 100 for e in errors)
