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
# # Exercise 2: one global threshold, by selection
#
# **Learning goal:** turn scores into masks with one threshold over all layers, found in
# linear time (on average) by selection instead of sorting. **Estimated time:** 30 minutes.
#
# Global pruning at sparsity $s$ removes the $k = \mathrm{round}(s\cdot N)$ lowest scores
# among all $N$ weights of all layers. We need only one number, the $k$-th smallest score
# $t$; a weight is then kept when its score is $> t$. Sorting all $N$ scores costs
# $O(N \log N)$ and does far more than needed; a **selection** (`torch.kthvalue`) finds the
# $k$-th smallest in linear time on average (a quickselect).
#
# Write `global_threshold(scores, sparsity)`:
# - `scores`: dict name → tensor (higher = keep); assume no ties;
# - `sparsity`: the fraction to prune, in [0, 1];
# - return a dict name → bool mask shaped like the scores (True = keep).
#
# The check records the torch operations your function runs and rejects any sort (also the
# ones hidden inside `topk`, `unique` and `quantile`, and NumPy's or Python's), and tries
# sparsities 0, 0.5, 0.9, 0.37 and 1 on scores from three layers of different scales.

# %%
import torch

import gradprune_lite as gp

torch.set_num_threads(2)


# %% nbgrader={"grade": false, "grade_id": "global_threshold", "locked": false, "schema_version": 3, "solution": true, "task": false}
def global_threshold(scores, sparsity):
    ### BEGIN SOLUTION
    flat = torch.cat([s.reshape(-1) for s in scores.values()])
    k = round(sparsity * flat.numel())
    if k == 0:
        return {name: torch.ones_like(s, dtype=torch.bool) for name, s in scores.items()}
    threshold = flat.kthvalue(k).values
    return {name: s > threshold for name, s in scores.items()}
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_global_threshold", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
### BEGIN HIDDEN TESTS
# Graded only: four layers of other shapes and scales, at other sparsities.
hidden_scores = {
    f"layer{i}.weight": 10.0**i * torch.rand(shape)
    for i, shape in enumerate([(7,), (5, 9), (3, 2, 4, 4), (11, 6)])
}
for hidden_sparsity in (0.25, 0.6, 0.999):
    hidden_want = gp.global_masks(hidden_scores, hidden_sparsity)
    hidden_got = global_threshold(hidden_scores, hidden_sparsity)
    assert all(torch.equal(hidden_got[n].bool(), m) for n, m in hidden_want.items())
### END HIDDEN TESTS
gp.checks.check_global_threshold(global_threshold)

# %% [markdown]
# ## On the trained network
#
# **Predict:** with one global threshold on magnitude scores at 90% sparsity, which layer of
# LeNet-300-100 loses the largest fraction of its weights: `fc1` (784×300), `fc2`
# (300×100) or `fc3` (100×10)?

# %%
model = gp.trained("lenet_300_100")
scores = gp.score(model, "magnitude")
masks = global_threshold(scores, 0.9)
for name, mask in masks.items():
    print(
        f"{name}: {mask.numel():>7,} weights, mean |w| {scores[name].mean():.3f}, "
        f"{1 - mask.float().mean():.1%} pruned"
    )

# %% tags=["solution-only"]
assert all(torch.equal(masks[n], m) for n, m in gp.global_masks(scores, 0.9).items())
pruned = {name: 1 - float(m.float().mean()) for name, m in masks.items()}
assert pruned["fc1.weight"] > pruned["fc2.weight"] > pruned["fc3.weight"]

# %% [markdown] tags=["solution-only"]
# The large first layer gives up the most: its weights are smaller (mean |w| 0.025 against
# 0.15 in `fc3`; PyTorch draws a layer's initial weights on a scale of 1/√fan-in, and 784
# inputs share `fc1`'s work), while the 1,000 weights of `fc3` are few and large. Global selection moves the budget to where weights are cheap; it does not say that
# `fc1` matters less as a layer.

# %% [markdown]
# ## Written question
#
# **Q1.** Global thresholding prunes `fc3` much less than 90%. Give one reason this is
# good, and one situation in which a single global threshold over *raw* scores goes wrong
# (think about layers whose scores have different scales).

# %% [markdown] nbgrader={"grade": true, "grade_id": "q1_global", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# Good: the last layer is small and every weight in it feeds a class score, so pruning it
# to 90% would cut whole paths to the output; the global threshold keeps most of it (24.2%
# pruned) and takes the budget from the 235,200 weights of `fc1`. Wrong: if one layer's
# scores are on a much smaller scale than the others' (scores that shrink with the layer's
# fan-in, as mean |w| does above, or the weights of a layer followed by batch norm, whose
# scale the normalisation cancels), one threshold prunes that layer almost completely, even
# to 100%, which disconnects the network; then normalise the scores per layer or use
# layer-wise thresholds.
