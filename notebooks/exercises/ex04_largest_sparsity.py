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
# # Exercise 4: the largest sparsity under an error budget
#
# **Learning goal:** choose a sparsity with a stated rule on held-out *validation* data,
# and report the *test* error once, at the end. **Estimated time:** 30 minutes.
#
# How far can we prune before the model gets worse than we accept? We scan a grid of
# sparsity levels and use this rule:
#
# > Scan the levels from the smallest up. The answer is the largest level $s$ such that
# > the validation error is **strictly below** the limit at $s$ **and at every smaller
# > scanned level**. If the smallest level already fails, there is no answer (`None`).

# %% [markdown] tags=["solution-only"]
# So once a level fails, larger levels are not taken even if their error dips back under
# the limit: a dip measured on one validation set is as likely luck as a real effect.

# %% [markdown]
# Write `largest_sparsity(error_at, levels, limit)`:
# - `error_at(s)`: validation error in % at sparsity `s`;
# - `levels`: the sparsities to scan, **in any order**;
# - `limit`: the budget in %, e.g. 2.5.

# %%
import copy

import torch

import gradprune_lite as gp

torch.set_num_threads(2)


# %% nbgrader={"grade": false, "grade_id": "largest_sparsity", "locked": false, "schema_version": 3, "solution": true, "task": false}
def largest_sparsity(error_at, levels, limit):
    ### BEGIN SOLUTION
    best = None
    for s in sorted(levels):
        if not error_at(s) < limit:
            break
        best = s
    return best
    ### END SOLUTION


# %% [markdown]
# The check runs your function on made-up error curves: a rising one, one with a dip, one
# exactly at the limit, and levels given out of order.

# %% nbgrader={"grade": true, "grade_id": "check_largest_sparsity", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
### BEGIN HIDDEN TESTS
# Graded only: other levels, other limits, a single level.
hidden_errors = {0.1: 0.5, 0.3: 0.9, 0.6: 1.2, 0.7: 0.8, 0.95: 5.0}
assert largest_sparsity(hidden_errors.__getitem__, [0.95, 0.6, 0.1, 0.7, 0.3], 1.0) == 0.3
assert largest_sparsity(hidden_errors.__getitem__, [0.6, 0.1], 0.4) is None
assert largest_sparsity(hidden_errors.__getitem__, [0.7], 1.0) == 0.7
### END HIDDEN TESTS
gp.checks.check_largest_sparsity(largest_sparsity)

# %% [markdown]
# ## On the trained network
#
# We prune the trained LeNet-300-100 by magnitude, in one shot and without fine-tuning,
# and choose the sparsity on the 5,000 **validation** digits, which training never saw.
# The budget is the dense validation error plus one percentage point.
#
# **Predict:** which of the levels below will be chosen?

# %%
model = gp.trained("lenet_300_100")
train, validation, test = gp.splits()
scores = gp.score(model, "magnitude")


def pruned_at(sparsity):
    pruned = copy.deepcopy(model)
    gp.apply_masks(pruned, gp.global_masks(scores, sparsity))
    return pruned


def validation_error(sparsity):
    return gp.evaluate(pruned_at(sparsity), validation).error


levels = [0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
limit = validation_error(0.0) + 1.0
for s in levels:
    print(f"sparsity {s:.0%}: validation error {validation_error(s):.2f}%")
chosen = largest_sparsity(validation_error, levels, limit)
print(f"budget {limit:.2f}%: chosen sparsity {chosen:.0%}")

# %% [markdown]
# Only now, with the choice fixed, we look at the test set, once:

# %%
test_error = gp.evaluate(pruned_at(chosen), test).error
print(
    f"test error at {chosen:.0%}: {test_error:.2f}% (dense {gp.evaluate(model, test).error:.2f}%)"
)

# %% tags=["solution-only"]
assert chosen is not None and validation_error(chosen) < limit

# %% [markdown] tags=["solution-only"]
# One-shot magnitude pruning, without fine-tuning, keeps the error within the budget up to
# 80% here; 90% costs about two and a half points. The test error is the number to report;
# it differs from the validation error by a few tenths because the two sets are different
# samples of digits (the dense model too: 1.71% on test, 1.50% on validation). The 50–70%
# levels' slightly lower validation errors than the dense one are of that size too.

# %% [markdown]
# ## Written questions
#
# **Q1.** Why must the sparsity be chosen on the validation split and not on the test split?
# What would the reported test error mean if we had chosen on test?
#
# **Q2.** At 50% the validation error can be lower than the dense one. Should the rule
# prefer 50% over 0% for that reason? Why does our rule not take a dip that comes *after*
# a failing level?

# %% [markdown] nbgrader={"grade": true, "grade_id": "q_validation", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# **Q1.** The test error is our estimate of the error on new data; it is unbiased only if
# nothing about the model was chosen by looking at it. Choosing the sparsity on test picks
# the level whose test error happened to be low, so the reported number is biased
# downwards (optimistic) and no data is left to measure the model honestly.
#
# **Q2.** The rule already takes the *largest* level under the limit, so a lower error at
# 50% changes nothing as long as larger levels pass; a difference of a few tenths of a
# percent on 5,000 digits (a handful of digits) is within the noise, so it is no evidence
# that pruning helps. A dip after a failing level is even weaker evidence: error rises
# with sparsity on average, so a level that passes after one that failed most likely got
# lucky on this validation set, and the test error there would most likely be over budget.
