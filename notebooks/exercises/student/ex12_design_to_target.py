# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Exercise 12 (capstone): design a pruned LeNet-5 to a target
#
# **Learning goal:** meet a size budget and an error budget at once: choose one sparsity
# per layer from measurements on the *validation* split, prune, fine-tune with the masks
# held, and report what you chose, why, and what it cost. The test split is measured once,
# by the check, after every decision is made. **Estimated time:** 2–3 hours.
#
# The target, for the trained LeNet-5 (`gp.trained("lenet5")`, 430,500 weights and 580
# biases):
#
# - **size:** at most `SIZE_BUDGET` non-zero parameters, counting *every* parameter of every
#   layer, biases included;
# - **error:** at most `ERROR_BUDGET` % error on the 10,000 test digits.
#
# The rules of the game:
#
# 1. Every choice is made on the validation split (`gp.splits()[1]`); you never evaluate
#    on test.
# 2. Prune by magnitude, $|w|$, within each layer, to a sparsity your scan measured (or `0.0`,
#    dense), with `gp.apply_masks` so that the masks hold.
# 3. Fine-tune for at most one epoch on at most 10,000 training digits (the autograder's
#    time limit).
# 4. Hand in the model and a `record` of your decision (the format is below); the check
#    verifies both budgets on test, that the masks held, and that the record is what the
#    validation split gives.

# %%
import copy
import itertools
import math

import torch

import gradprune_lite as gp
from gradprune_lite.course.checks.design import ERROR_BUDGET, SIZE_BUDGET

torch.set_num_threads(2)
_ = torch.manual_seed(0)
print(f"size budget: {SIZE_BUDGET:,} non-zero parameters; error budget: {ERROR_BUDGET:.2f}%")

# %% [markdown]
# ## Part 1: the building blocks
#
# Write five functions. The check after them runs each on a tiny model.
#
# - `sensitivity_scan(model, levels, validation)` → dict weight name → {level: validation
#   error in %}: each layer pruned **alone** by magnitude to each level, the others dense,
#   no fine-tuning (Exercise 6). Do not change `model`.
# - `prune_to(model, sparsities)` → a pruned **copy**: in each layer the `round(s·n)`
#   weights of smallest $|w|$ masked with `gp.apply_masks` (`gp.layerwise_masks` gives
#   the mask); a layer at `0.0` stays dense.
# - `nonzero_parameters(model)` → the number of non-zero entries of all its parameters.
# - `choose_sparsities(scan, dense_error, model, size_budget)` → dict name → sparsity, each
#   a level of the scan or `0.0`, such that `prune_to(model, result)` has at most
#   `size_budget` non-zero parameters. **This is your design:** which layers pay, and how
#   much. `dense_error` is the unpruned model's validation error. The check runs it on a
#   tiny model, so write a rule, not a table; in Part 2 you may still change its answer by
#   hand if your report says why.
# - `fine_tune(model, train)` → trains `model` in place, within the limit of rule 3; the
#   pruned weights must stay zero.


# %% nbgrader={"grade": false, "grade_id": "design_steps", "locked": false, "schema_version": 3, "solution": true, "task": false}
def sensitivity_scan(model, levels, validation):
    # YOUR CODE HERE
    raise NotImplementedError()


def prune_to(model, sparsities):
    # YOUR CODE HERE
    raise NotImplementedError()


def nonzero_parameters(model):
    # YOUR CODE HERE
    raise NotImplementedError()


def choose_sparsities(scan, dense_error, model, size_budget):
    # YOUR CODE HERE
    raise NotImplementedError()


def fine_tune(model, train):
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "check_design_steps", "locked": true, "points": 5, "schema_version": 3, "solution": false, "task": false}
gp.checks.check_design_steps(
    sensitivity_scan, prune_to, nonzero_parameters, choose_sparsities, fine_tune
)

# %% [markdown]
# ## Part 2: the design
#
# **Predict:** which layer will your design prune the hardest, and which will it leave
# (almost) dense? And the naive answer, one sparsity for every layer that just fills the
# size budget, pruned in one shot without fine-tuning: will it meet the error budget?
#
# First the scan, on the 5,000 validation digits:

# %%
model = gp.trained("lenet5")
train, validation, test = gp.splits()
levels = [0.5, 0.8, 0.9, 0.95, 0.98]
dense_error = gp.evaluate(model, validation).error
scan = sensitivity_scan(model, levels, validation)
print(f"dense validation error {dense_error:.2f}%")
print("layer          " + "".join(f"{s:>7.0%}" for s in levels))
for name, row in scan.items():
    print(f"{name:<15}" + "".join(f"{row[s]:>7.2f}" for s in levels))

# %% [markdown]
# Now the naive answer, on validation: one sparsity for all layers, filling the budget.

# %%
weights = gp.prunable_weights(model)
n_weights = sum(w.numel() for w in weights.values())
n_biases = sum(p.numel() for p in model.parameters()) - n_weights
# Rounded up to 0.01%, so that each layer's rounding cannot push it over the budget.
uniform_level = math.ceil(1e4 * (1 - (SIZE_BUDGET - n_biases) / n_weights)) / 1e4
naive = prune_to(model, dict.fromkeys(weights, uniform_level))
print(
    f"uniform {uniform_level:.2%}: {nonzero_parameters(naive):,} non-zero parameters, "
    f"validation error {gp.evaluate(naive, validation).error:.2f}%"
)

# %% [markdown]
# Now your design: choose, prune, fine-tune, and record what you measured.

# %%
chosen = choose_sparsities(scan, dense_error, model, SIZE_BUDGET)
design = prune_to(model, chosen)
one_shot = gp.evaluate(design, validation).error
fine_tune(design, train)
record = {
    "scan": scan,
    "sparsities": chosen,
    "nonzero": nonzero_parameters(design),
    "validation_error": gp.evaluate(design, validation).error,
}
print("chosen:", {name: f"{s:.0%}" for name, s in chosen.items()})
print(f"{record['nonzero']:,} non-zero parameters")
print(f"validation error {one_shot:.2f}% after pruning, {record['validation_error']:.2f}% tuned")

# %% [markdown]
# ## Part 3: the check, on the test split
#
# The check measures the test error once. It also verifies that every pruned weight is
# still zero, that your count is the model's, and that the record's errors are what the
# validation split gives.

# %% nbgrader={"grade": true, "grade_id": "check_design_to_target", "locked": true, "points": 5, "schema_version": 3, "solution": false, "task": false}
gp.checks.check_design_to_target(design, record)

# %% [markdown]
# ## Report
#
# Write the report a colleague would need to trust your model, with the numbers printed
# above.
#
# **R1. The decision.** What sparsity did each layer get, and why? Justify it with your
# validation numbers (the scan, the one-shot and fine-tuned errors), not with the test
# error.
#
# **R2. The cost and the trade-off.** What did the size cost in error, on validation and on
# test? Which trade-off did you make (which layers paid, what the fine-tuning bought), and
# what did your method not measure? If a budget was missed, say which and why you think
# it was.

# %% [markdown] nbgrader={"grade": true, "grade_id": "r_decision", "locked": false, "points": 3, "schema_version": 3, "solution": true, "task": false}
# YOUR ANSWER HERE

# %% [markdown] nbgrader={"grade": true, "grade_id": "r_cost", "locked": false, "points": 3, "schema_version": 3, "solution": true, "task": false}
# YOUR ANSWER HERE
