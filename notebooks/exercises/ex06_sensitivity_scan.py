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
    ### BEGIN SOLUTION
    curves = {}
    for name in gp.prunable_weights(model):
        curves[name] = []
        for s in levels:
            pruned = copy.deepcopy(model)
            weight = gp.prunable_weights(pruned)[name]
            mask = gp.layerwise_masks({name: weight.detach().abs()}, s)[name]
            with torch.no_grad():
                weight.mul_(mask)
            curves[name].append(error_at(pruned))
    return curves
    ### END SOLUTION


def choose_layer_sparsities(curves, levels, limit):
    ### BEGIN SOLUTION
    chosen = {}
    for name, errors in curves.items():
        chosen[name] = None
        for s, error in sorted(zip(levels, errors)):
            if not error < limit:
                break
            chosen[name] = s
    return chosen
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_sensitivity", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
### BEGIN HIDDEN TESTS
# Graded only: other curves, a layer that fails at once.
hidden_curves = {"a.weight": [0.1, 0.2, 0.3], "b.weight": [0.5, 0.1, 0.1]}
hidden_chosen = choose_layer_sparsities(hidden_curves, [0.2, 0.4, 0.6], 0.25)
assert hidden_chosen == {"a.weight": 0.4, "b.weight": None}
### END HIDDEN TESTS
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

# %% [markdown] tags=["solution-only"]
# `fc1` and `fc2` each lose 80% of their weights for 0.12 points or less; `fc3`, the
# smallest layer, is the most sensitive at every level, by far from 80% on (at 90%: 3.74%
# against 2.70% and 2.34%). The curves are measured one layer at a time: they do not say what happens when
# all layers are pruned together.

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

# %% tags=["solution-only"]
alone = {name: curves[name][levels.index(s)] - dense for name, s in chosen.items() if s is not None}
print("cost of each chosen layer alone (points):", {n: f"{c:+.2f}" for n, c in alone.items()})
summed, together = sum(alone.values()), combined_error - dense
display(
    Markdown(
        f"Alone, the chosen layers cost {summed:+.2f} points in all; pruned together they "
        f"cost {together:+.2f}, "
        + (
            f"about {together / summed:.1f}× the sum: the damages compound, they do not "
            "add up (super-additive)."
            if together > summed > 0
            else "so here they do not compound."
        )
    )
)

# %% tags=["solution-only"]
assert chosen["fc1.weight"] is not None and chosen["fc1.weight"] >= (chosen["fc3.weight"] or 0)

# %% tags=["solution-only"]
global_error = validation_error(global_model)
global_pruned = gp.global_masks(gp.score(model, "magnitude"), overall)
digits_apart = round(abs(combined_error - global_error) * len(validation) / 100)
display(
    Markdown(
        f"At the same overall sparsity, one global magnitude threshold ({global_error:.2f}%) "
        f"does {'better' if global_error < combined_error else 'no better'} than the "
        f"per-layer choice ({combined_error:.2f}%), {digits_apart} of the "
        f"{len(validation):,} validation digits. It spends the budget differently: it "
        "prunes "
        + ", ".join(
            f"{n.split('.')[0]} {1 - m.float().mean():.0%}" for n, m in global_pruned.items()
        )
        + ", where the per-layer rule took every layer to its own limit ("
        + ", ".join(f"{n.split('.')[0]} {s or 0:.0%}" for n, s in chosen.items())
        + "), the most sensitive layer included. Neither sees how the layers interact; the "
        "global threshold takes least from the layers whose weights are large."
    )
)

# %% [markdown]
# ## Written questions
#
# **Q1.** Why is `fc3` the most sensitive layer, although it is the smallest?
#
# **Q2.** Each layer's choice kept its own error under the limit, but the combined model
# can be over it. Why? Propose one way to pick per-layer sparsities that respects the
# budget for the combined model.

# %% [markdown] nbgrader={"grade": true, "grade_id": "q_sensitivity", "locked": false, "points": 3, "schema_version": 3, "solution": true, "task": false}
# **Q1.** Every one of `fc3`'s 1,000 weights connects a hidden feature directly to a class
# score; there is no later layer to compensate, and with only 100 inputs per class there is
# little redundancy. Pruning 90% of it leaves each class about 10 features. `fc1` has 784
# inputs per unit, many of them border pixels that carry little information.
#
# **Q2.** The scan measures each layer with the others dense; the damages interact (one
# likely mechanism: errors made by a pruned `fc1` are passed to a pruned `fc2`, which has
# lost the weights that could have absorbed them), so together they cost more than their
# sum (the cell above measures by how much). Splitting the budget (e.g. 0.5/3 points per
# layer) is not enough when the damages compound like this. What respects it is to measure
# the *combined* model: choose greedily, raising the sparsity of the layer that costs least
# on the combined model, re-measuring, and stopping before the budget is exceeded.
