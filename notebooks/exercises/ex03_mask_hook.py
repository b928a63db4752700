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
# Zeroing a weight once is not enough: SGD with momentum keeps moving it, because its
# momentum buffer still remembers past gradients. Pruned weights must be re-zeroed after
# **every** optimiser step, and their momentum cleared.
#
# Write `keep_pruned_at_zero(model, masks, optimizer)`:
# - zero the pruned weights now (`masks`: dict parameter name → bool, True = keep);
# - register `optimizer.register_step_post_hook(hook)`, where `hook(optimizer, args, kwargs)`
#   re-zeroes the pruned weights and their `optimizer.state[param]["momentum_buffer"]`.
#
# (`gp.apply_masks(model, masks, optimizer)` does this for you; here you build it.)

# %%
import torch

import gradprune_lite as gp

torch.set_num_threads(2)


# %%
def keep_pruned_at_zero(model, masks, optimizer):
    # BEGIN SOLUTION
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
    # END SOLUTION


# %% [markdown]
# The check trains a tiny model with momentum for a few steps and looks at the pruned
# weights and their momentum after each step.

# %%
gp.checks.check_mask_hook(keep_pruned_at_zero)
