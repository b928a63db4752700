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
# # Exercise 4: the largest sparsity under an error limit
#
# How far can we prune before the model gets worse than we accept? Given a function
# `error_at(s)` (test error in % at sparsity `s`), a list of `levels` and a `limit`
# (e.g. 2.0 for 2%), return the **largest** level whose error is **below** the limit, or
# `None` if there is none.
#
# Careful: error is not always monotone in sparsity (a little pruning can regularise),
# and `levels` may come in any order.

# %%
import torch

import gradprune_lite as gp

torch.set_num_threads(2)
torch.manual_seed(0)


# %%
def largest_sparsity(error_at, levels, limit):
    # BEGIN SOLUTION
    under = [s for s in levels if error_at(s) < limit]
    return max(under) if under else None
    # END SOLUTION


# %% [markdown]
# The check runs your function on made-up error curves, including a dip and a curve that
# is exactly at the limit.

# %%
gp.checks.check_largest_sparsity(largest_sparsity)

# %% [markdown]
# ## On a real model
#
# The course target is 2% test error, which a fully trained LeNet-300-100 meets (train it
# with `gradprune-lite compare`). To keep this notebook fast we train for one epoch on
# 10,000 digits, so we set the limit to the dense error plus one point.

# %%
train, test = gp.mnist("train", verbose=False), gp.mnist("test", verbose=False)
print("data:", train.source)
dense = gp.models.lenet_300_100(seed=0)
gp.fit(dense, train.take(10_000), epochs=1, lr=0.05, seed=0, progress=False)
test = test.take(2000)
scores = gp.score(dense, "magnitude")


def error_at(sparsity):
    pruned = gp.models.lenet_300_100()
    pruned.load_state_dict(dense.state_dict())
    gp.apply_masks(pruned, gp.global_masks(scores, sparsity))
    return gp.evaluate(pruned, test).error


limit = error_at(0.0) + 1.0
best = largest_sparsity(error_at, [0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99], limit)
print(
    f"dense error {error_at(0.0):.2f}%; largest magnitude sparsity under {limit:.2f}%: {best:.0%}"
)
assert best is not None and best >= 0.5
