"""Exercise 12's checks: a correct design passes, each mistake gets its one line.

``judge_design`` (what ``check_design_to_target`` runs on LeNet-5 and full MNIST) is tested
here on a small MLP trained on real MNIST digits, with budgets set for it, so each case
takes a fraction of a second; the notebook's own run (nbval) covers LeNet-5.
"""

import copy
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import gradprune_lite as gp
from gradprune_lite.course.checks.design import judge_design, magnitude_pruned, nonzero_count

ROOT = Path(__file__).resolve().parent.parent
LEVELS = [0.5, 0.8, 0.9]


# -- a correct solution of the five building blocks, written independently ----------------


def scan_layers(model, levels, validation):
    scan = {}
    for name in gp.prunable_weights(model):
        scan[name] = {}
        for level in levels:
            pruned = copy.deepcopy(model)
            weight = gp.prunable_weights(pruned)[name]
            k = round(level * weight.numel())
            threshold = weight.detach().abs().reshape(-1).kthvalue(k).values
            gp.apply_masks(pruned, {name: weight.detach().abs() > threshold})
            scan[name][level] = gp.evaluate(pruned, validation).error
    return scan


def prune_copy(model, sparsities):
    pruned = copy.deepcopy(model)
    weights = gp.prunable_weights(pruned)
    for name, level in sparsities.items():
        if level:
            gp.apply_masks(pruned, gp.layerwise_masks({name: weights[name].detach().abs()}, level))
    return pruned


def count_nonzero(model):
    return sum(int((p != 0).sum()) for p in model.parameters())


def choose_greedily(scan, dense_error, model, size_budget):
    """Raise the layer whose next level costs the least error per weight removed."""
    sizes = {n: w.numel() for n, w in gp.prunable_weights(model).items()}
    biases = sum(p.numel() for p in model.parameters()) - sum(sizes.values())
    chosen = dict.fromkeys(sizes, 0.0)

    def kept(choice):
        return biases + sum(n - round(choice[name] * n) for name, n in sizes.items())

    while kept(chosen) > size_budget:
        steps = []
        for name, row in scan.items():
            higher = sorted(level for level in row if level > chosen[name])
            if higher:
                before = row.get(chosen[name], dense_error)
                saved = round(higher[0] * sizes[name]) - round(chosen[name] * sizes[name])
                steps.append(((row[higher[0]] - before) / saved, name, higher[0]))
        _, name, level = min(steps)
        chosen[name] = level
    return chosen


def tune(model, train):
    gp.fit(model, train.take(500), epochs=1, lr=0.02, progress=False)


CORRECT_STEPS = (scan_layers, prune_copy, count_nonzero, choose_greedily, tune)


def stub(*args):
    raise NotImplementedError


def test_the_steps_check_passes_a_correct_solution():
    assert gp.checks.check_design_steps(*CORRECT_STEPS) is True


def test_the_steps_check_turns_the_unsolved_stubs_into_one_line():
    with pytest.raises(gp.checks.CheckFailed, match="NotImplementedError") as failure:
        gp.checks.check_design_steps(stub, stub, stub, stub, stub)
    assert len(failure.value._render_traceback_()) == 1


def scan_all_at_once(model, levels, validation):
    names = list(gp.prunable_weights(model))
    return {
        name: {s: gp.evaluate(prune_copy(model, dict.fromkeys(names, s)), validation).error
               for s in levels}
        for name in names
    }  # fmt: skip


def prune_without_masks(model, sparsities):
    pruned = copy.deepcopy(model)
    weights = gp.prunable_weights(pruned)
    with torch.no_grad():
        for name, level in sparsities.items():
            if level:
                weights[name].mul_(gp.layerwise_masks({name: weights[name].abs()}, level)[name])
    return pruned


def count_weights_only(model):
    return sum(int((w != 0).sum()) for w in gp.prunable_weights(model).values())


def choose_without_biases(scan, dense_error, model, size_budget):
    weights = gp.prunable_weights(model)
    biases = sum(p.numel() for p in model.parameters()) - sum(w.numel() for w in weights.values())
    return choose_greedily(scan, dense_error, model, size_budget + biases)


def tune_without_masks(model, train):
    gp.remove_masks(model)
    tune(model, train)


def choose_between_levels(scan, dense_error, model, size_budget):
    return {name: 0.85 for name in scan}


@pytest.mark.parametrize(
    ("position", "wrong", "message"),
    [
        (0, scan_all_at_once, "pruned all layers at once"),
        (1, prune_without_masks, "no mask holds it"),
        (2, count_weights_only, "counted only the weights"),
        (3, choose_without_biases, "biases were not counted"),
        (3, choose_between_levels, "a level the scan did not measure"),
        (4, tune_without_masks, "revived"),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_the_steps_check_names_each_wrong_building_block(position, wrong, message):
    steps = list(CORRECT_STEPS)
    steps[position] = wrong
    with pytest.raises(gp.checks.CheckFailed, match=message) as failure:
        gp.checks.check_design_steps(*steps)
    assert "\n" not in str(failure.value)


# -- the finished design, judged on real digits ------------------------------------------


@pytest.fixture(scope="module")
def world(real_digits):
    """A small MLP trained on real digits, its splits, its scan and a correct design."""
    train, test = real_digits(3_500, 1_000)
    validation = train.slice(3_000, None)
    train = train.slice(0, 3_000)
    torch.manual_seed(3)
    reference = nn.Sequential(nn.Flatten(), nn.Linear(784, 24), nn.ReLU(), nn.Linear(24, 10))
    gp.fit(reference, train, epochs=2, lr=0.05, progress=False)
    scan = scan_layers(reference, LEVELS, validation)
    return {"reference": reference, "train": train, "validation": validation, "test": test,
            "scan": scan}  # fmt: skip


def design(world, sparsities, *, prune=prune_copy, fine_tune=tune):
    """(model, honest record) of the design that prunes ``sparsities`` and fine-tunes."""
    model = prune(world["reference"], sparsities)
    fine_tune(model, world["train"])
    record = {
        "scan": copy.deepcopy(world["scan"]),
        "sparsities": dict(sparsities),
        "nonzero": count_nonzero(model),
        "validation_error": gp.evaluate(model, world["validation"]).error,
    }
    return model, record


GOOD = {"1.weight": 0.9, "3.weight": 0.5}


def judge(world, model, record, size_budget=3_000, error_budget=50.0):
    return judge_design(
        model,
        record,
        reference=world["reference"],
        validation=world["validation"],
        test=world["test"],
        size_budget=size_budget,
        error_budget=error_budget,
    )


def test_a_correct_design_meets_both_budgets(world):
    model, record = design(world, GOOD)
    test_error = gp.evaluate(model, world["test"]).error
    verdict = judge(world, model, record, size_budget=record["nonzero"], error_budget=test_error)
    assert verdict.startswith("Both budgets met on the test split")
    assert f"{test_error:.2f}%" in verdict


def rejection(world, model, record, **budgets) -> str:
    with pytest.raises(AssertionError) as failure:
        judge(world, model, record, **budgets)
    message = str(failure.value)
    assert "\n" not in message
    return message


def test_revived_weights_are_named(world):
    model, record = design(world, GOOD, prune=prune_without_masks)
    assert "Masks not held" in rejection(world, model, record)


def test_a_design_over_the_size_budget_is_named(world):
    model, record = design(world, {"1.weight": 0.5, "3.weight": 0.5})
    message = rejection(world, model, record)
    assert message.startswith("Over the size budget") and "prune more" in message


def test_a_budget_counted_without_biases_is_named(world):
    model, record = design(world, GOOD)
    weights_only = count_weights_only(model)
    assert "biases were not counted" in rejection(world, model, record, size_budget=weights_only)
    record["nonzero"] = weights_only
    assert "counts the weights only" in rejection(world, model, record)


def test_a_budget_counted_on_the_pruned_layers_only_is_named(world):
    model, record = design(world, {"1.weight": 0.9, "3.weight": 0.0})
    pruned_only = int((model[1].weight != 0).sum())  # 1.weight, the one layer pruned
    assert "every layer counts" in rejection(world, model, record, size_budget=pruned_only)


def test_a_final_error_measured_on_test_is_named(world):
    model, record = design(world, GOOD)
    record["validation_error"] = gp.evaluate(model, world["test"]).error
    assert rejection(world, model, record).startswith("Chose on test")


def test_a_scan_measured_on_test_is_named(world):
    model, record = design(world, GOOD)
    record["scan"] = scan_layers(world["reference"], LEVELS, world["test"])
    message = rejection(world, model, record)
    assert message.startswith("Chose on test") and "record['scan']" in message


def test_a_missed_error_budget_is_named_with_where_it_was_visible(world):
    model, record = design(world, GOOD)
    test_error = gp.evaluate(model, world["test"]).error
    below_both = min(test_error, record["validation_error"]) - 0.5
    assert "over it already" in rejection(world, model, record, error_budget=below_both)
    assert record["validation_error"] < test_error, "this design's test error is the higher"
    between = (record["validation_error"] + test_error) / 2
    assert "leave a margin" in rejection(world, model, record, error_budget=between)


def test_a_level_that_was_not_scanned_is_named(world):
    model, record = design(world, {"1.weight": 0.85, "3.weight": 0.5})
    assert "not a level your scan measured" in rejection(world, model, record)


def test_errors_given_as_fractions_are_named(world):
    model, record = design(world, GOOD)
    record["validation_error"] /= 100
    assert "in %" in rejection(world, model, record)


def test_a_record_without_its_keys_is_named(world):
    model, record = design(world, GOOD)
    del record["scan"]
    assert "record should be a dict with the keys" in rejection(world, model, record)


def test_magnitude_pruned_matches_torch_prune():
    """The check's own pruning is torch.nn.utils.prune's l1_unstructured, layer by layer."""
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(30, 20), nn.ReLU(), nn.Linear(20, 5))
    ours = magnitude_pruned(model, {"0.weight": 0.7, "2.weight": 0.0})
    theirs = copy.deepcopy(model)
    torch.nn.utils.prune.l1_unstructured(theirs[0], "weight", amount=round(0.7 * 600))
    assert torch.equal(ours[0].weight != 0, theirs[0].weight_mask.bool())
    assert torch.equal(ours[2].weight, model[2].weight)


def test_the_solution_has_fifteen_lines_of_the_students_own_code():
    source = (ROOT / "notebooks" / "exercises" / "ex12_design_to_target.py").read_text()
    regions = re.findall(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", source, re.S)
    lines = [
        line
        for region in regions
        for line in region.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert len(lines) >= 15, lines


def test_numbers_as_tensors_are_accepted_and_a_count_that_is_not_one_is_named(world):
    model, record = design(world, GOOD)
    as_tensors = dict(
        record,
        nonzero=torch.tensor(record["nonzero"]),
        validation_error=torch.tensor(record["validation_error"]),
    )
    assert judge(world, model, as_tensors).startswith("Both budgets met")
    record["nonzero"] = f"{record['nonzero']:,}"
    assert "should be a whole number" in rejection(world, model, record)


def test_each_look_at_the_test_split_after_the_first_is_pointed_out(monkeypatch):
    from gradprune_lite.course.checks import design as module

    monkeypatch.setattr(module, "_test_runs", 0)
    assert module._count_test_run() == ""
    assert "measured 2 times" in module._count_test_run()
    assert "measured 3 times" in module._count_test_run()


def test_the_checks_count_is_model_costs_and_its_weights_only_count_skips_the_biases():
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(30, 20), nn.ReLU(), nn.Linear(20, 5))
    pruned = magnitude_pruned(model, {"0.weight": 0.7, "2.weight": 0.5})
    with torch.no_grad():
        pruned[0].bias[:4] = 0
    assert nonzero_count(pruned) == gp.model_cost(pruned, torch.randn(1, 30))["params"]
    assert nonzero_count(pruned, biases=False) == 600 - 420 + 100 - 50
