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
    ### BEGIN SOLUTION
    return {name: (w * stats[name].mean).abs() for name, w in weights.items()}
    ### END SOLUTION


# %% [markdown]
# Check your work: the check compares your scores with the library's on a tiny model and
# names the likely mistake in one line.

# %% nbgrader={"grade": true, "grade_id": "check_taylor_score", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
### BEGIN HIDDEN TESTS
# Graded only: another model and other data; any score ranked like |w·ḡ| passes.
from gradprune_lite.course.checks.taylor import ranks_like

with torch.random.fork_rng(devices=[]):
    torch.manual_seed(101)
    hidden_model = torch.nn.Sequential(
        torch.nn.Linear(5, 6), torch.nn.Tanh(), torch.nn.Linear(6, 4)
    )
    hidden_batches = [(torch.randn(32, 5), torch.randint(4, (32,))) for _ in range(3)]
hidden_stats = gp.gradient_stats(hidden_model, hidden_batches)
hidden_weights = {n: p.detach() for n, p in hidden_model.named_parameters() if n in hidden_stats}
assert ranks_like(
    taylor_score(hidden_weights, hidden_stats),
    gp.score(hidden_model, "taylor", hidden_batches),
)
### END HIDDEN TESTS
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

# %% [markdown] tags=["solution-only"]
# In every layer the mean gradient is about 2% of the per-sample gradients' size. That is
# the order of $1/\sqrt{N} = 1/\sqrt{2000} \approx 0.022$, what averaging $N$ gradients
# with no common direction would leave: at a minimum the per-sample gradients point in many
# directions and mostly cancel. The first-order term therefore predicts almost no loss
# change for most weights, and which weights get the larger of these small numbers depends
# on which digits were averaged. It does not mean the weights are unimportant.

# %% tags=["solution-only"]
assert all(
    float((s.mean.abs() / s.sq_mean.sqrt().clamp(min=1e-12)).median()) < 0.1 for s in stats.values()
)

# %% [markdown]
# ## Written question
#
# **Q1.** Why does the score take an absolute value, and why can the Taylor score of a large
# weight in a trained network be close to 0 although removing it hurts? Which term of the
# expansion would you add to see that damage? (3–5 sentences.)

# %% [markdown] nbgrader={"grade": true, "grade_id": "q1_taylor", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# The first-order prediction of removing $w$ is $\Delta L \approx -\bar g\,w$, which has a
# sign. The absolute value turns it into "how much does the loss care about this weight, in
# either direction?". A *signed* score (keep the weights with the largest $-\bar g\,w$)
# would put the weights whose removal *lowers* the loss at the bottom and prune them first,
# which is what pruning wants if the sign can be trusted; notebook 01 shows that the
# signed term does rank single removals much better than its absolute value, on the digits
# that computed $\bar g$. The
# absolute value is the safe choice because on a trained network the sign of $\bar g$ is
# mostly sampling noise (on the next 1,000 digits it agrees about as often as a coin,
# notebook 01) and because many
# removals at once are not the sum of single ones, so a large change in either direction
# is treated as a reason to keep the weight. After training, $\bar g \approx 0$ (we are near
# a minimum), so $w\,\bar g$ is small even for a large $w$, though removing a large weight
# is a big step, in which the curvature term is as large as the first-order one (notebook
# 01, fc3). The second-order term $\tfrac12 w^2 H$
# captures that damage; the Fisher $E[g^2]$ is the usual stand-in for $H$ (too small on
# digits the network has memorised, notebook 01).
