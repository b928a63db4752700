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
# **Learning goal:** derive a pruning score from a first-order Taylor expansion of the loss
# and compute it from gradient statistics. **Estimated time:** 30 minutes.
#
# Pruning weight $w$ means setting it to 0, a step of $\delta w = -w$. Near the current
# weights, the loss changes with a small step as its Taylor expansion says. Keep only the
# first-order term, average the gradient over the data, and you have a prediction of how
# much the loss moves when $w$ is removed. A weight whose removal would move the loss a lot
# is one to keep.
#
# 1. On paper: write the first-order prediction of $\Delta L$ for removing one weight.
# 2. Turn it into a score (higher = keep). Think about what a negative $\Delta L$ means.
# 3. Write `taylor_score(weights, stats)`:
#    - `weights`: dict name → weight tensor;
#    - `stats`: dict name → `gp.GradientStats` (with `.mean` $=\bar g$, `.sq_mean`
#      $=E[g^2]$, `.var`), shaped like the weight;
#    - return a dict name → score tensor shaped like the weight (higher = keep).

# %%
import torch

import gradprune_lite as gp

torch.set_num_threads(2)
_ = torch.manual_seed(0)


# %% nbgrader={"grade": false, "grade_id": "taylor_score", "locked": false, "schema_version": 3, "solution": true, "task": false}
def taylor_score(weights, stats):
    # YOUR CODE HERE
    raise NotImplementedError()


# %% [markdown]
# Check your work: the check compares your scores with the library's on a tiny model and
# names the likely mistake in one line.

# %% nbgrader={"grade": true, "grade_id": "check_taylor_score", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
gp.checks.check_taylor_score(taylor_score)

# %% [markdown]
# ## On the trained network
#
# **Predict:** after ten epochs of training, is the *mean* gradient $\bar g$ of a weight
# large or small compared with the spread of the per-sample gradients, $\sqrt{E[g^2]}$?
# Write your guess, then run the cell. We use 2,000 validation digits.

# %%
model = gp.trained("lenet_300_100")
train, validation, test = gp.splits()
stats = gp.gradient_stats(model, validation.take(2000).batches(500))
weights = {name: p.detach() for name, p in model.named_parameters() if name in stats}
scores = taylor_score(weights, stats)
for name, s in stats.items():
    ratio = (s.mean.abs() / s.sq_mean.sqrt().clamp(min=1e-12)).median()
    print(f"{name}: median |mean g| / sqrt(E[g^2]) = {float(ratio):.3f}")

# %% [markdown]
# ## Written question
#
# **Q1.** Why does the score take an absolute value, and why can the Taylor score of a large
# weight in a trained network be close to 0 although removing it hurts? Which term of the
# expansion would you add to see that damage? (3–5 sentences.)

# %% [markdown] nbgrader={"grade": true, "grade_id": "q1_taylor", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# YOUR ANSWER HERE
