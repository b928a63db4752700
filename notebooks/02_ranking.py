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
# # 02 · Ranking the weights
#
# A criterion gives every weight a score (higher = keep); pruning keeps the top
# $(1-s)$ fraction. Here we compare criteria, global against layer-wise thresholds, how
# stable a ranking is as we average more data, and how fast the ranking can be done.

# %%
# %matplotlib inline

import torch

import gradprune_lite as gp

torch.set_num_threads(2)
torch.manual_seed(0)

train = gp.mnist("train", verbose=False)
print("data:", train.source)
model = gp.models.lenet_300_100(seed=0)
gp.fit(model, train.take(10_000), epochs=1, lr=0.05, seed=0, progress=False)
batches = list(train.take(1000).batches(batch_size=250))

# %% [markdown]
# ## The criteria side by side
#
# Spearman's rank correlation is the Pearson correlation of the *ranks*: 1 means two
# criteria order the weights identically.

# %%
names = ["magnitude", "gradient", "taylor", "fisher", "snip", "grasp", "synflow", "random"]
scores = {c: gp.score(model, c, batches) for c in names}
flat = {c: torch.cat([t.flatten() for t in s.values()]) for c, s in scores.items()}
rank_corr = gp.ranking.rank_correlations(flat)
print("Spearman rank correlation")
print(" " * 10 + "".join(f"{c[:8]:>9s}" for c in names))
for a in names:
    print(f"{a:10s}" + "".join(f"{rank_corr[a][b]:9.2f}" for b in names))
assert abs(rank_corr["taylor"]["snip"] - 1) < 1e-6  # SNIP is Taylor normalised: same ranking
assert abs(rank_corr["random"]["magnitude"]) < 0.05

# %% [markdown]
# ## Global against layer-wise thresholds
#
# One global threshold lets layers end with different sparsities; layer-wise thresholds
# prune every layer equally. At 95%, the global magnitude threshold strips the big first
# layer hardest.

# %%
groups = {}
for criterion in ["magnitude", "taylor"]:
    for scope, select in [("global", gp.global_masks), ("layer-wise", gp.layerwise_masks)]:
        masks = select(scores[criterion], 0.95)
        groups[f"{criterion} {scope}"] = {n: 1 - m.float().mean().item() for n, m in masks.items()}
for label, per_layer in groups.items():
    print(f"{label:20s}", "  ".join(f"{n} {v:.1%}" for n, v in per_layer.items()))
gp.plots.grouped_bars(groups, "sparsity (%)", "per-layer sparsity at 95% overall")

# %% [markdown]
# ## Ranking stability
#
# A ranking from a few digits is noisy. We compute each data-driven criterion's 90% mask
# from $b$ batches of 50 digits and compare it (Jaccard overlap of the kept sets) with the
# mask from 1000 digits.

# %%
small = list(train.take(800).batches(batch_size=50))
counts = [1, 2, 4, 8, 16]
stability = {}
for criterion in ["gradient", "taylor", "fisher", "snip"]:
    reference = gp.global_masks(scores[criterion], 0.9)
    stability[criterion] = [
        gp.mask_overlap(gp.global_masks(gp.score(model, criterion, small[:b]), 0.9), reference)
        for b in counts
    ]
    print(f"{criterion:8s}", " ".join(f"{v:.3f}" for v in stability[criterion]))
    assert stability[criterion][-1] > stability[criterion][0]
gp.plots.curves(
    counts, stability, "batches of 50 digits averaged", "overlap with 1000-digit mask", logx=True
)

# %% [markdown]
# ## Ranking speed
#
# To prune a fraction $s$ globally we need the $k$-th smallest score over all layers.
# A full sort is $O(N \log N)$; `gp.global_masks` selects in a band around the quantile
# (linear time); `torch.nn.utils.prune.global_unstructured` sorts. Timings vary with the
# machine, so this cell's output is not compared by the tests.

# %%
# NBVAL_IGNORE_OUTPUT
timings = gp.ranking.ranking_timings(sizes=[1_000_000, 4_000_000], sparsity=0.9)
for size, row in timings.items():
    print(f"{size:>9,d} weights: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in row.items()))
