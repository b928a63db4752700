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
# # Exercise 6: per-layer sensitivity and per-layer sparsities
#
# **Learning goal:** measure how sensitive each layer is to pruning on its own, and choose
# one sparsity per layer within an error budget, on the validation split.
# **Estimated time:** 60 minutes.
#
# A global threshold (Exercise 2) lets the scores decide how much each layer loses. Here we
# decide per layer instead: prune **one layer at a time** by magnitude, leaving the others
# dense, and record the validation error at each sparsity level. The curves show which
# layers tolerate pruning. Then each layer gets the largest sparsity that stays within the
# budget, with the rule of Exercise 4 (strictly under the limit at that level and at every
# smaller one).
#
# Write
# - `sensitivity_scan(model, levels, error_at)` → dict weight name → list of errors, one per
#   level in the given order, where `error_at(pruned_model)` returns an error in %. Use
#   `gp.prunable_weights(model)` for the names and prune by magnitude, $|w|$, within the
#   layer. Do not change `model`.
# - `choose_layer_sparsities(curves, levels, limit)` → dict name → chosen level, or `None`.

# %%
import copy

import torch
from IPython.display import Markdown, display

import gradprune_lite as gp

torch.set_num_threads(2)
_ = torch.manual_seed(0)


# %% nbgrader={"grade": false, "grade_id": "sensitivity_scan", "locked": false, "schema_version": 3, "solution": true, "task": false}
def sensitivity_scan(model, levels, error_at):
    # YOUR CODE HERE
    raise NotImplementedError()


def choose_layer_sparsities(curves, levels, limit):
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "check_sensitivity", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
gp.checks.check_sensitivity_scan(sensitivity_scan)
gp.checks.check_choose_layer_sparsities(choose_layer_sparsities)

# %% [markdown]
# ## On the trained network
#
# **Predict:** which layer of LeNet-300-100 is the most sensitive: `fc1` (235,200 weights),
# `fc2` (30,000) or `fc3` (1,000)?

# %%
model = gp.trained("lenet_300_100")
train, validation, test = gp.splits()


def validation_error(pruned):
    return gp.evaluate(pruned, validation).error


levels = [0.5, 0.7, 0.8, 0.9, 0.95, 0.98]
curves = sensitivity_scan(model, levels, validation_error)
dense = validation_error(model)
print(f"dense validation error {dense:.2f}%")
print("layer       " + "".join(f"{s:>7.0%}" for s in levels))
for name, errors in curves.items():
    print(f"{name:<12}" + "".join(f"{e:>7.2f}" for e in errors))

# %% [markdown]
# Now the per-layer choice, with a budget of the dense error plus 0.5 points per layer,
# then all chosen sparsities together, against one global magnitude threshold at the same
# overall sparsity:

# %%
limit = dense + 0.5
chosen = choose_layer_sparsities(curves, levels, limit)
print("chosen:", {name: s for name, s in chosen.items()})
weights = gp.prunable_weights(model)
masks = {}
for name, s in chosen.items():
    masks.update(gp.layerwise_masks({name: weights[name].detach().abs()}, s or 0.0))
per_layer = copy.deepcopy(model)
gp.apply_masks(per_layer, masks)
overall = gp.sparsity(per_layer)
global_model = copy.deepcopy(model)
gp.apply_masks(global_model, gp.global_masks(gp.score(model, "magnitude"), overall))
print(f"overall sparsity {overall:.1%}")
combined_error = validation_error(per_layer)
print(f"per-layer choice: validation error {combined_error:.2f}%")
print(f"global threshold: validation error {validation_error(global_model):.2f}%")

# %% [markdown]
# ## Written questions
#
# **Q1.** Why is `fc3` the most sensitive layer, although it is the smallest?
#
# **Q2.** Each layer's choice kept its own error under the limit, but the combined model
# can be over it. Why? Propose one way to pick per-layer sparsities that respects the
# budget for the combined model.

# %% [markdown] nbgrader={"grade": true, "grade_id": "q_sensitivity", "locked": false, "points": 3, "schema_version": 3, "solution": true, "task": false}
# YOUR ANSWER HERE
