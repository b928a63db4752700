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
# # Exercise 1: the Taylor score
#
# Removing weight $w$ (setting it to 0) changes the loss by about
# $\Delta L \approx -\bar g\,w + \tfrac12 F\,w^2$, where $\bar g$ is the mean gradient over
# the data and $F = E[g^2]$ the empirical Fisher. The first-order term gives the **Taylor
# score** $|w\,\bar g|$: the larger it is, the more the loss moves, so the more we keep
# the weight.
#
# Write `taylor_score(weights, stats)`:
# - `weights`: dict name → weight tensor;
# - `stats`: dict name → `gp.GradientStats` (with `.mean`, `.sq_mean`, `.var`);
# - return a dict name → score tensor shaped like the weight (higher = keep).

# %%
import torch

import gradprune_lite as gp

torch.set_num_threads(2)
torch.manual_seed(0)


# %%
def taylor_score(weights, stats):
    # BEGIN SOLUTION
    return {name: (w * stats[name].mean).abs() for name, w in weights.items()}
    # END SOLUTION


# %% [markdown]
# Check your work. The check compares your scores with `gp.score(model, "taylor", ...)`
# on a tiny model and tells you what looks wrong.

# %%
gp.checks.check_taylor_score(taylor_score)
