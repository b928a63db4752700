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
# # Exercise 3: keep pruned weights at zero
#
# **Learning goal:** see why zeroing a weight once does not prune it during training, and
# hold a mask with an optimiser hook. **Estimated time:** 30 minutes.
#
# **Predict:** we zero half the weights of a layer, then take one step of *plain* SGD
# (no momentum). Do the zeroed weights stay at 0? Run the cell.

# %%
import torch
from torch import nn

import gradprune_lite as gp

torch.set_num_threads(2)
_ = torch.manual_seed(0)

layer = nn.Linear(12, 8)
mask = torch.rand(8, 12) > 0.5
with torch.no_grad():
    layer.weight.mul_(mask)
plain_sgd = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.0)
inputs, targets = torch.randn(16, 12), torch.randint(8, (16,))
nn.functional.cross_entropy(layer(inputs), targets).backward()
print("pruned weights with a non-zero gradient:", int((layer.weight.grad[~mask] != 0).sum()))
plain_sgd.step()
print("pruned weights no longer zero after one step:", int((layer.weight[~mask] != 0).sum()))
print("pruned weights in all:", int((~mask).sum()))

# %% [markdown] tags=["solution-only"]
# All of them came back. A zeroed weight still has a gradient: $\partial L/\partial w_{ij} =
# \delta_i x_j$ depends on the input and on the error at the output, not on $w_{ij}$ itself,
# so every step moves it away from 0. Momentum adds a second way back: its buffer remembers
# past gradients and keeps moving a weight even when the current gradient is zero.

# %% [markdown]
# ## Holding the mask
#
# Before you write any code, explain the three counts: a zeroed weight's value is 0, so
# why does it have a gradient at all? Write $\partial L/\partial w_{ij}$ for a linear layer
# $y = Wx + b$ in terms of the input $x$ and the error $\delta = \partial L/\partial y$,
# and say what in it depends on $w_{ij}$. Then: with momentum, could a weight move even
# on a step where its gradient is exactly 0?
#
# Whatever your explanation, zeroing once is not pruning: the pruned weights must be
# re-zeroed after **every** optimiser step, and their momentum cleared. Write
# `keep_pruned_at_zero(model, masks, optimizer)`:
# - zero the pruned weights now (`masks`: dict parameter name → bool, True = keep);
# - register `optimizer.register_step_post_hook(hook)`, where `hook(optimizer, args,
#   kwargs)` re-zeroes the pruned weights and `optimizer.state[param]["momentum_buffer"]`
#   at pruned entries (the buffer exists only after the first step).
#
# Here you build the idea for one optimiser. `gp.apply_masks(model, masks)` goes one step
# further and hangs the mask on the *parameter* instead: a gradient hook
# (`param.register_post_accumulate_grad_hook`) zeroes pruned gradients after every backward,
# and torch's global hook `torch.optim.optimizer.register_optimizer_step_post_hook` re-zeroes
# the weights after **any** optimiser's step. A hook on one optimiser, like yours, protects
# nothing once a trainer, a resumed checkpoint or a copy of the model brings its own.


# %% nbgrader={"grade": false, "grade_id": "keep_pruned_at_zero", "locked": false, "schema_version": 3, "solution": true, "task": false}
def keep_pruned_at_zero(model, masks, optimizer):
    ### BEGIN SOLUTION
    params = dict(model.named_parameters())

    @torch.no_grad()
    def zero_pruned(*_):
        for name, mask in masks.items():
            params[name].mul_(mask)
            state = optimizer.state.get(params[name], {})
            if "momentum_buffer" in state:
                state["momentum_buffer"].mul_(mask)

    zero_pruned()
    optimizer.register_step_post_hook(zero_pruned)
    ### END SOLUTION


# %% [markdown]
# The check trains a tiny model with SGD and momentum 0.9 for a few steps and looks at the
# pruned weights and their momentum after each step.

# %% nbgrader={"grade": true, "grade_id": "check_mask_hook", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
### BEGIN HIDDEN TESTS
# Graded only: another model, a sparser mask, Nesterov momentum, five steps.
hidden_model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4))
hidden_masks = {
    n: torch.rand(p.shape) > 0.8 for n, p in hidden_model.named_parameters() if "weight" in n
}
hidden_sgd = torch.optim.SGD(hidden_model.parameters(), lr=0.05, momentum=0.5, nesterov=True)
keep_pruned_at_zero(hidden_model, hidden_masks, hidden_sgd)
hidden_start = {n: p.detach().clone() for n, p in hidden_model.named_parameters()}
for _ in range(5):
    nn.functional.cross_entropy(hidden_model(torch.randn(8, 6)), torch.randint(4, (8,))).backward()
    hidden_sgd.step()
    hidden_sgd.zero_grad()
for n, p in hidden_model.named_parameters():
    kept = hidden_masks.get(n, torch.ones_like(p, dtype=torch.bool))
    assert bool((p[~kept] == 0).all()), f"{n}: a pruned weight came back"
    assert not torch.equal(p[kept], hidden_start[n][kept]), f"{n}: kept weights did not train"
    assert bool((hidden_sgd.state[p]["momentum_buffer"][~kept] == 0).all()), f"{n}: momentum"
### END HIDDEN TESTS
gp.checks.check_mask_hook(keep_pruned_at_zero)

# %% [markdown]
# ## Written question
#
# **Q1.** Your hook re-zeroes the weights after every step, so why clear the momentum
# buffer as well? Name one thing that goes wrong if you do not (hint: what happens when the
# hook is later removed, or when you fine-tune with a fresh mask that keeps some of these
# weights?).

# %% [markdown] nbgrader={"grade": true, "grade_id": "q1_momentum", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# While the hook runs, the weights are held at 0 whatever the buffer says; but the buffer
# at a pruned entry keeps accumulating that weight's gradient. The moment the hook is
# removed (or the weight is regrown by a later mask), the stale velocity keeps moving it
# over the following steps, the first of them up to $1/(1-\mu)$ times a fresh step for
# momentum $\mu$, to a value its current gradient never asked for. Clearing it keeps the
# pruned entries exactly as if they did not exist.
