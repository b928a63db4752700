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
# # 03 · Pruning: masks that hold
#
# A **mask** is a bool tensor shaped like a weight, True = keep. Pruning is
# (1) score, (2) pick a threshold, (3) zero the weights below it **and keep them zero**.
# This notebook is about step 3 and about *when* to prune.

# %%
# %matplotlib inline
import copy
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

import gradprune_lite as gp

torch.set_num_threads(2)
torch.manual_seed(0)

train, test = gp.mnist("train", verbose=False), gp.mnist("test", verbose=False)
print("data:", train.source, "|", test.source)
train = train.take(20_000)  # 20,000 digits keep every training run here to a few seconds
dense = gp.models.lenet_300_100(seed=0)
gp.fit(dense, train, epochs=1, lr=0.05, seed=0, progress=False)
print(f"dense test error {gp.evaluate(dense, test).error:.2f}%")

# %% [markdown]
# ## Masks
#
# `gp.apply_masks` zeroes the pruned weights and stores each mask as a bool buffer
# `weight_keep`, which is *not* saved: the state_dict keys stay those of the dense model.

# %%
model = copy.deepcopy(dense)
masks = gp.global_masks(gp.score(model, "magnitude"), 0.9)
gp.apply_masks(model, masks)
print(f"sparsity {gp.sparsity(model):.1%}")
print("mask dtypes:", {n: str(m.dtype) for n, m in gp.current_masks(model).items()})
print("state_dict keys unchanged:", list(model.state_dict()) == list(dense.state_dict()))

# %% [markdown]
# ## Naive zeroing is revived by momentum
#
# Zero the weights once, then keep training with SGD + momentum: the momentum buffers
# still carry the old gradients, and the "pruned" weights come back to life.


# %%
def train_steps(model, optimizer, steps=20):
    for images, labels in list(train.batches(batch_size=128))[:steps]:
        optimizer.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()


naive = copy.deepcopy(dense)
optimizer = torch.optim.SGD(naive.parameters(), lr=0.05, momentum=0.9)
train_steps(naive, optimizer)  # a few dense steps: momentum is now full
with torch.no_grad():
    for name, w in gp.prunable_weights(naive).items():
        w.mul_(masks[name])
print(f"naive: sparsity after zeroing {gp.sparsity(naive):.1%}", end="")
train_steps(naive, optimizer)
print(f", after 20 more steps {gp.sparsity(naive):.1%}")
assert gp.sparsity(naive) < 0.5

# %% [markdown]
# The fix: give the optimiser to `gp.apply_masks`. A step hook re-zeroes the pruned
# weights after every step and clears their momentum.

# %%
fixed = copy.deepcopy(dense)
optimizer = torch.optim.SGD(fixed.parameters(), lr=0.05, momentum=0.9)
train_steps(fixed, optimizer)
gp.apply_masks(fixed, masks, optimizer)
train_steps(fixed, optimizer)
print(
    f"with gp.apply_masks(model, masks, optimizer): sparsity after 20 steps {gp.sparsity(fixed):.1%}"
)
assert abs(gp.sparsity(fixed) - 0.9) < 1e-6

# %% [markdown]
# ## One-shot against iterative pruning
#
# To reach 98%, one-shot pruning removes everything at once and then fine-tunes;
# iterative pruning removes a little, fine-tunes, and repeats (here 3 rounds on an
# exponential schedule), the same total training.

# %%
print("schedule:", [f"{s:.1%}" for s in gp.sparsity_schedule(0.98, 3)])
one_shot = copy.deepcopy(dense)
gp.prune(one_shot, "magnitude", 0.98)
gp.fit(one_shot, train, epochs=1, lr=0.05, seed=1, progress=False)

iterative = copy.deepcopy(dense)
thirds = [train.take(len(train) // 3)] * 3


def fine_tune(model, round_index):
    gp.fit(model, thirds[round_index], epochs=1, lr=0.05, seed=round_index, progress=False)


gp.prune(iterative, "magnitude", 0.98, rounds=3, between=fine_tune)
errors = {
    "one-shot": gp.evaluate(one_shot, test).error,
    "iterative": gp.evaluate(iterative, test).error,
}
for label, error in errors.items():
    print(f"{label:9s} 98% sparse: test error {error:.2f}%")
assert abs(gp.sparsity(one_shot) - 0.98) < 1e-4 and abs(gp.sparsity(iterative) - 0.98) < 1e-4

# %% [markdown]
# ## SNIP at initialisation against after training
#
# SNIP scores connections on a single batch **before** training, then trains the sparse
# network from scratch. We compare with scoring the trained model and fine-tuning.

# %%
batch = list(train.take(500).batches(batch_size=500))
at_init = gp.models.lenet_300_100(seed=0)
gp.prune(at_init, "snip", 0.95, batch)
gp.fit(at_init, train, epochs=1, lr=0.05, seed=0, progress=False)

after = copy.deepcopy(dense)
gp.prune(after, "snip", 0.95, batch)
gp.fit(after, train, epochs=1, lr=0.05, seed=1, progress=False)
snip_errors = {
    "SNIP at init": gp.evaluate(at_init, test).error,
    "SNIP after training": gp.evaluate(after, test).error,
}
for label, error in snip_errors.items():
    print(f"{label:20s} 95% sparse: test error {error:.2f}%")
assert all(error < 25 for error in snip_errors.values())  # far from chance (90%)

# %% [markdown]
# ## Round trip with `torch.nn.utils.prune`
#
# PyTorch's own API stores a float `weight_mask` and a `weight_orig` copy (and renames
# state_dict keys). `gp.to_torch_prune` and `gp.from_torch_prune` convert both ways.

# %%
torch_model = gp.to_torch_prune(copy.deepcopy(dense), masks)
print("torch keys:", [k for k in torch_model.state_dict() if k.startswith("fc1")])
back = gp.from_torch_prune(torch_model)
print("masks survive the round trip:", all(torch.equal(back[n], masks[n]) for n in masks))
assert gp.mask_overlap(back, masks) == 1.0

# %% [markdown]
# ## A sparse checkpoint
#
# Storing only the kept weights (and their positions) shrinks a 90%-sparse model.

# %%
sizes = gp.checkpoint_sizes(model)
print(f"dense {sizes['dense_bytes'] / 1e6:.2f} MB, sparse {sizes['sparse_bytes'] / 1e6:.2f} MB")
with tempfile.TemporaryDirectory() as folder:
    path = Path(folder) / "lenet_90.pt"
    gp.save(model, path)
    restored = gp.load(path, gp.models.lenet_300_100())
    print(f"file {path.stat().st_size / 1e6:.2f} MB; restored sparsity {gp.sparsity(restored):.1%}")
assert sizes["sparse_bytes"] < 0.5 * sizes["dense_bytes"]
