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
# # Exercise 9: how many samples until the ranking is stable? (with an open experiment)
#
# **Learning goal:** measure the stability of a data-dependent pruning criterion without
# fooling yourself, and design and interpret an experiment of your own.
# **Estimated time:** 75 minutes (30 for the code, 45 for the open part).
#
# A gradient criterion scores weights from a sample of digits. Draw another sample and the
# kept set changes. To see how much, score on two **disjoint** draws of $n$ digits (no digit
# in both: shared digits would make the two rankings agree for free), prune both to 90%, and
# compare the kept sets with the Jaccard index
# $$J(A, B) = \frac{|A \cap B|}{|A \cup B|},$$
# counted over all layers together. Two random masks that each keep 10% have
# $J \approx 0.01/0.19 \approx 0.05$; identical masks have $J = 1$.
#
# One pair of draws gives one value of $J$; another pair gives another. To say how stable a
# criterion is, and whether two criteria differ, measure **several independent pairs** and
# report the mean with a **95% confidence interval** of the mean,
# $$\bar J \pm t_{0.975,\,k-1}\,\frac{s}{\sqrt k},$$
# where $k$ is the number of pairs, $s$ the sample standard deviation of their values
# ($k-1$ in its denominator) and $t_{0.975,\,k-1}$ the 0.975 quantile of Student's $t$
# distribution with $k-1$ degrees of freedom (`T_975` below, from a printed table: with
# few pairs it is well above the normal 1.96).
#
# Write
# - `jaccard(masks_a, masks_b)` → float, for dicts name → bool mask (True = kept);
# - `disjoint_draws(n, total, seed)` → two tensors of `n` indices in `[0, total)`, with no
#   index in common, random, reproducible from `seed`;
# - `mean_interval(values)` → `(mean, low, high)`, the 95% interval above for a list of
#   independent values.

# %%
import torch

import gradprune_lite as gp

torch.set_num_threads(2)
_ = torch.manual_seed(0)
# 0.975 quantiles of Student's t, by degrees of freedom (any printed t table)
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


# %% nbgrader={"grade": false, "grade_id": "stability", "locked": false, "schema_version": 3, "solution": true, "task": false}
def jaccard(masks_a, masks_b):
    # YOUR CODE HERE
    raise NotImplementedError()


def disjoint_draws(n, total, seed):
    # YOUR CODE HERE
    raise NotImplementedError()


def mean_interval(values):
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "check_stability", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
gp.checks.check_jaccard(jaccard)
gp.checks.check_disjoint_draws(disjoint_draws)
gp.checks.check_mean_interval(mean_interval)

# %% [markdown]
# ## Fisher against Taylor on the trained network
#
# We score on training digits (the scores choose nothing here, so no held-out data is
# spent) with $n$ from 100 to 10,000 per draw, and **4 independent pairs** of draws for each
# $n$: pair $i$ comes from `disjoint_draws(n, len(train), seed=i)`, so each pair is a fresh
# random split, drawn independently of the other pairs (so two pairs may share digits:
# forbidding that would tie each pair to the others; the two draws of one pair never
# share a digit). **Predict:** does the Jaccard
# index of both criteria climb towards 1 as $n$ grows?

# %%
model = gp.trained("lenet_300_100")
train, validation, test = gp.splits()
sizes = [100, 1000, 3000, 10000]
pairs = 4


def scores_on(criterion, indices):
    batches = [
        (train.images[indices[s : s + 5000]], train.labels[indices[s : s + 5000]])
        for s in range(0, len(indices), 5000)
    ]
    return gp.score(model, criterion, batches)


def masks_on(criterion, indices, sparsity=0.9):
    return gp.global_masks(scores_on(criterion, indices), sparsity)


agreement = {}
for criterion in ("fisher", "taylor"):
    for n in sizes:
        values = []
        for pair in range(pairs):
            first, second = disjoint_draws(n, len(train), seed=pair)
            values.append(jaccard(masks_on(criterion, first), masks_on(criterion, second)))
        agreement[criterion, n] = mean_interval(values)
print(f"Jaccard at 90%, mean of {pairs} pairs [95% interval]")
print("n      " + "".join(f"{n:>20,}" for n in sizes))
for criterion in ("fisher", "taylor"):
    cells = ["{:.2f} [{:.2f}, {:.2f}]".format(*agreement[criterion, n]) for n in sizes]
    print(f"{criterion:<7}" + "".join(f"{c:>20}" for c in cells))

# %% [markdown]
# ## Open experiment
#
# Choose **one** question and answer it with a measurement (at most about 30 s of compute),
# in the cell below. Examples: does stability depend on the sparsity (50% vs 90% vs 98%)? On
# the layer (compute $J$ per layer)? Is `snip` more or less stable than `taylor`, and why?
# Does the draw's seed matter (repeat with three seeds)? Print a small table.

# %% nbgrader={"grade": false, "grade_id": "open_experiment", "locked": false, "schema_version": 3, "solution": true, "task": false}
# YOUR CODE HERE
raise NotImplementedError()

# %% [markdown]
# **Q1.** Why must the two draws be disjoint? What would the measured $J$ mean if the
# small-sample masks used digits 0–799 and the reference used digits 0–999?
#
# **Q2 (sample size).** From your table: how many digits per draw does Fisher need before
# the *lower* end of its 95% interval is above $J = 0.5$ at 90% sparsity? Answer with a
# range of the sizes measured, and say why the lower end, not the mean, is the right thing
# to read.
#
# **Q3 (open experiment).** State your question, what you expected, what you measured, and
# what it means (and does not mean), in 5–8 sentences. Compare with the random baseline,
# and say whether your differences are larger than their intervals.

# %% [markdown] nbgrader={"grade": true, "grade_id": "q_stability", "locked": false, "points": 4, "schema_version": 3, "solution": true, "task": false}
# YOUR ANSWER HERE
