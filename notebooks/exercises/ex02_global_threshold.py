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
# Global pruning at sparsity $s$ removes the $k = \mathrm{round}(s\cdot N)$ lowest scores
# among all $N$ weights of all layers. We need only one number, the $k$-th smallest
# score $t$; then a weight is kept when its score is $> t$. Finding $t$ needs a
# **selection** (`torch.kthvalue`, linear time), not a full sort.
#
# Write `global_threshold(scores, sparsity)`:
# - `scores`: dict name → tensor (higher = keep);
# - `sparsity`: fraction to prune, in [0, 1];
# - return dict name → bool mask shaped like the scores (True = keep).
#
# Assume the scores have no ties.

# %%
import torch

import gradprune_lite as gp

torch.set_num_threads(2)


# %%
def global_threshold(scores, sparsity):
    # BEGIN SOLUTION
    flat = torch.cat([s.reshape(-1) for s in scores.values()])
    k = round(sparsity * flat.numel())
    if k == 0:
        return {name: torch.ones_like(s, dtype=torch.bool) for name, s in scores.items()}
    threshold = flat.kthvalue(k).values
    return {name: s > threshold for name, s in scores.items()}
    # END SOLUTION


# %% [markdown]
# The check compares your masks with `gp.global_masks` at several sparsities.

# %%
gp.checks.check_global_threshold(global_threshold)
