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
    ### BEGIN SOLUTION
    both = sum(int((masks_a[n] & masks_b[n]).sum()) for n in masks_a)
    either = sum(int((masks_a[n] | masks_b[n]).sum()) for n in masks_a)
    return both / either
    ### END SOLUTION


def disjoint_draws(n, total, seed):
    ### BEGIN SOLUTION
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    return order[:n], order[n : 2 * n]
    ### END SOLUTION


def mean_interval(values):
    ### BEGIN SOLUTION
    x = torch.tensor(values, dtype=torch.float64)
    k = len(values)
    half = T_975[k - 1] * x.std().item() / k**0.5
    return x.mean().item(), x.mean().item() - half, x.mean().item() + half
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_stability", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
### BEGIN HIDDEN TESTS
# Graded only: a Jaccard index counted by hand, and draws that use up the whole range.
hidden_a = {"x": torch.tensor([True, True, False, False]), "y": torch.tensor([[True, False]])}
hidden_b = {"x": torch.tensor([True, False, True, False]), "y": torch.tensor([[True, True]])}
assert abs(jaccard(hidden_a, hidden_b) - 2 / 5) < 1e-9
hidden_draws = [torch.as_tensor(d).reshape(-1) for d in disjoint_draws(5, 10, 3)]
assert sorted(torch.cat(hidden_draws).tolist()) == list(range(10))
### END HIDDEN TESTS
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

# %% tags=["solution-only"]
assert agreement["fisher", 10000][1] > agreement["taylor", 10000][2]  # intervals apart
assert agreement["fisher", 10000][1] > agreement["fisher", 100][2]

# %% [markdown] tags=["solution-only"]
# Each entry is the mean of 4 independent pairs with its 95% interval, so two entries
# whose intervals overlap are not shown to differ. Fisher's kept set keeps stabilising with
# more data (its interval at 10,000 digits lies above its interval at 1,000), because
# $E[g^2]$ converges to a non-zero value for every weight. Taylor stays far lower and rises
# only slowly: at a minimum of the training loss the mean gradient converges to (nearly)
# zero, so $|w\,\bar g|$ ranks what is left, sampling noise, and more data only shrinks
# the noise without making its ranking reproducible. At 10,000 digits the two criteria's
# intervals are far apart. Magnitude needs no data at all ($J = 1$). None of this says
# which criterion prunes *better*; it says how much of each ranking is the data sample.

# %% [markdown]
# ## Open experiment
#
# Choose **one** question and answer it with a measurement (at most about 30 s of compute),
# in the cell below. Examples: does stability depend on the sparsity (50% vs 90% vs 98%)? On
# the layer (compute $J$ per layer)? Is `snip` more or less stable than `taylor`, and why?
# Does the draw's seed matter (repeat with three seeds)? Print a small table.

# %% nbgrader={"grade": false, "grade_id": "open_experiment", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
# Score each draw once and threshold it at every sparsity; 3 pairs of 3,000 digits.
by_sparsity = {(c, s): [] for c in ("fisher", "taylor") for s in (0.5, 0.9, 0.98)}
for pair in range(3):
    first, second = disjoint_draws(3000, len(train), seed=100 + pair)
    for c in ("fisher", "taylor"):
        a, b = scores_on(c, first), scores_on(c, second)
        for s in (0.5, 0.9, 0.98):
            by_sparsity[c, s].append(jaccard(gp.global_masks(a, s), gp.global_masks(b, s)))
for s in (0.5, 0.9, 0.98):
    row = [
        "{:.2f} [{:.2f}, {:.2f}]".format(*mean_interval(by_sparsity[c, s]))
        for c in ("fisher", "taylor")
    ]
    print(f"sparsity {s:.0%}: fisher {row[0]}, taylor {row[1]}, random {(1 - s) / (1 + s):.2f}")
### END SOLUTION

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
# **Q1.** The question is how much the kept set depends on *which* digits were drawn; two
# draws that share digits agree partly because they are the same data. With digits 0–799
# inside 0–999, 80% of the reference sample is shared, so $J$ would be inflated and would
# rise with $n$ even for a criterion that is pure noise.
#
# **Q2.** Between 3,000 and 10,000 digits per draw. At 3,000 Fisher's mean is 0.51, just
# above 0.5, but its interval reaches down to 0.47, so the true mean may well be below 0.5;
# at 10,000 the whole interval (0.61 to 0.65) is above it. The lower end is the thing to
# read because "stable enough" is a claim about the criterion, not about these 4 pairs: a
# mean just above the bar can be luck, and with only 4 pairs the interval is wide (its $t$
# is 3.18, not 1.96). To pin the number down further, measure sizes between 3,000 and
# 10,000, or more pairs.
#
# **Q3 (sample answer, sparsity).** Question: does stability depend on the sparsity? I
# expected the kept set to be less stable at 98%, where only the top 2% are kept and a few
# noisy scores change it. At 3,000 digits per draw (3 pairs), Fisher's $J$ is highest at 50%
# and falls with sparsity, Taylor's is lower at every sparsity, and both stay well above
# the random baseline $(1-s)/(1+s)$. The intervals separate Fisher from Taylor at every
# sparsity (at 98% only just) and 50% from 90% for both, but Fisher's 90% and 98%
# intervals overlap: with 3 pairs, its drop from 90% to 98% is not shown. The random
# baseline also falls with sparsity, so the
# drop is partly the measure itself: $J$ of small sets is harder to keep high. It means the
# top of a gradient ranking is the least reproducible part; it does not mean the pruned
# networks differ in accuracy by the same amount.
