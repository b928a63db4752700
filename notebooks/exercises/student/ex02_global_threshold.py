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
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "check_global_threshold", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
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

# %% [markdown]
# ## Written question
#
# **Q1.** Global thresholding prunes `fc3` much less than 90%. Give one reason this is
# good, and one situation in which a single global threshold over *raw* scores goes wrong
# (think about layers whose scores have different scales).

# %% [markdown] nbgrader={"grade": true, "grade_id": "q1_global", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# YOUR ANSWER HERE
