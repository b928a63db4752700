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
# Write
# - `jaccard(masks_a, masks_b)` → float, for dicts name → bool mask (True = kept);
# - `disjoint_draws(n, total, seed)` → two tensors of `n` indices in `[0, total)`, with no
#   index in common, reproducible from `seed`.

# %%
import torch

import gradprune_lite as gp

torch.set_num_threads(2)
_ = torch.manual_seed(0)


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

# %% [markdown]
# ## Fisher against Taylor on the trained network
#
# We score on training digits (the scores choose nothing here, so no held-out data is
# spent) with $n$ from 100 to 25,000 per draw. **Predict:** does the Jaccard index of both
# criteria climb towards 1 as $n$ grows?

# %%
model = gp.trained("lenet_300_100")
train, validation, test = gp.splits()
sizes = [100, 1000, 3000, 10000, 25000]


def masks_on(criterion, indices, sparsity=0.9):
    batches = [
        (train.images[indices[s : s + 5000]], train.labels[indices[s : s + 5000]])
        for s in range(0, len(indices), 5000)
    ]
    return gp.global_masks(gp.score(model, criterion, batches), sparsity)


agreement = {}
for criterion in ("fisher", "taylor"):
    for n in sizes:
        first, second = disjoint_draws(n, len(train), seed=0)
        agreement[criterion, n] = jaccard(masks_on(criterion, first), masks_on(criterion, second))
print("n      " + "".join(f"{n:>8,}" for n in sizes))
for criterion in ("fisher", "taylor"):
    print(f"{criterion:<7}" + "".join(f"{agreement[criterion, n]:>8.2f}" for n in sizes))

# %% tags=["solution-only"]
assert agreement["fisher", 25000] > agreement["taylor", 25000] + 0.1
assert agreement["fisher", 25000] > agreement["fisher", 100]

# %% [markdown] tags=["solution-only"]
# Each entry is **one** pair of draws, so it has no error bar: differences of a few
# hundredths between neighbouring entries (Taylor's dip from 100 to 1,000 digits, for
# example) are within the draw-to-draw noise, and only the trend over the whole row can be
# read. (Repeating with other seeds, one of the open experiments below, measures that
# noise.) Fisher's kept set keeps stabilising with more data (about 0.68 at 25,000 digits
# per draw; it passes $J = 0.5$ between 3,000 and 10,000), because $E[g^2]$ converges to a non-zero
# value for every weight. Taylor's levels off below 0.4: at a minimum of the training loss
# the mean gradient converges to (nearly) zero, so $|w\,\bar g|$ ranks what is left,
# sampling noise, and more data only shrinks the noise without making its ranking
# reproducible. Magnitude needs no data at all ($J = 1$). None of this says which criterion
# prunes *better*; it says how much of each ranking is the data sample.

# %% [markdown]
# ## Open experiment
#
# Choose **one** question and answer it with a measurement (at most about 30 s of compute),
# in the cell below. Examples: does stability depend on the sparsity (50% vs 90% vs 98%)? On
# the layer (compute $J$ per layer)? Is `snip` more or less stable than `taylor`, and why?
# Does the draw's seed matter (repeat with three seeds)? Print a small table.

# %% nbgrader={"grade": false, "grade_id": "open_experiment", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
first, second = disjoint_draws(3000, len(train), seed=1)
for sparsity in (0.5, 0.9, 0.98):
    row = [
        jaccard(masks_on(c, first, sparsity), masks_on(c, second, sparsity))
        for c in ("fisher", "taylor")
    ]
    baseline = (1 - sparsity) / (1 + sparsity)
    print(
        f"sparsity {sparsity:.0%}: fisher {row[0]:.2f}, taylor {row[1]:.2f}, random {baseline:.2f}"
    )
### END SOLUTION

# %% [markdown]
# **Q1.** Why must the two draws be disjoint? What would the measured $J$ mean if the
# small-sample masks used digits 0–799 and the reference used digits 0–999?
#
# **Q2 (open experiment).** State your question, what you expected, what you measured, and
# what it means (and does not mean), in 5–8 sentences. Compare with the random baseline.

# %% [markdown] nbgrader={"grade": true, "grade_id": "q_stability", "locked": false, "points": 4, "schema_version": 3, "solution": true, "task": false}
# **Q1.** The question is how much the kept set depends on *which* digits were drawn; two
# draws that share digits agree partly because they are the same data. With digits 0–799
# inside 0–999, 80% of the reference sample is shared, so $J$ would be inflated and would
# rise with $n$ even for a criterion that is pure noise.
#
# **Q2 (sample answer, sparsity).** Question: does stability depend on the sparsity? I
# expected the kept set to be less stable at 98%, where only the top 2% are kept and a few
# noisy scores change it. At 3,000 digits per draw, Fisher's $J$ is highest at 50% and
# falls with sparsity, Taylor's is far lower at every sparsity, and both stay well above
# the random baseline $(1-s)/(1+s)$. The random baseline also falls with sparsity, so the
# drop is partly the measure itself: $J$ of small sets is harder to keep high. It means the
# top of a gradient ranking is the least reproducible part; it does not mean the pruned
# networks differ in accuracy by the same amount.
