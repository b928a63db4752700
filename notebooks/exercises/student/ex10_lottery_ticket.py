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
# # Exercise 10: a lottery ticket, and a control that is fair
#
# **Learning goal:** run the lottery-ticket experiment yourself (prune, rewind, retrain),
# build a random control that differs from the ticket *only* in the surviving weights'
# values, and say what the result shows and what it does not. **Estimated time:** 75
# minutes.
#
# Frankle & Carbin (2019): train a dense network, prune it by magnitude, then **rewind**
# the surviving weights to the values they had at initialisation and train the sparse
# network again. The rewound sparse network (the "ticket") trains to about the dense
# network's accuracy. The control keeps the same mask but **new random initial weights**.
# If the ticket beats the control, the initial values of the survivors matter, not only
# the mask's shape. (For large networks, Frankle et al. later rewind to the weights of an
# early training iteration instead of iteration 0; for LeNet-300-100 iteration 0 works.)
#
# A fair control differs from the ticket in as little as possible, yet is a network that
# can train. The default initialisation draws a weight with std
# $\sigma \propto 1/\sqrt{\text{fan-in}}$, so that a unit's input has the same variance in
# every layer. After pruning 97% of the weights, a
# unit of `fc1` keeps only a few of its 784 inputs: drawn at the default scale, its input
# is $\sqrt{784/k}$ times smaller than the initialisation intends for $k$ surviving
# inputs. So the fair control restores the intended scale: it draws unit $i$'s surviving
# weights with std
# $$\sigma\,\sqrt{\frac{\text{fan-in}}{k_i}},$$
# $\sigma$ being the layer's initial std and $k_i$ the number of inputs unit $i$ keeps, and
# it keeps the ticket's biases. (The ticket itself is not rescaled: its surviving weights
# keep their initial values. Keep that difference in mind when you compare the two.)
#
# Write
# - `rewind(init_state, masks)` → a `gp.models.lenet_300_100()` holding the initial
#   weights `init_state` (a `state_dict`), with `masks` applied **and held** during
#   training (`gp.apply_masks`);
# - `fair_control(init_state, masks, seed)` → the same, but every masked layer's surviving
#   weights redrawn as above (normal draws from `torch.Generator().manual_seed(seed)`);
# - `retrain(model, batches, lr)` → train `model` in place for one pass over `batches`
#   (pairs of images and labels) with SGD, momentum 0.9, on the mean cross-entropy loss,
#   and return it.
#
# The checks compare `retrain` with `torch.optim.SGD` run step by step, and measure the
# control's scale and signs.

# %%
import copy

import torch

import gradprune_lite as gp

torch.set_num_threads(2)
_ = torch.manual_seed(0)


# %% nbgrader={"grade": false, "grade_id": "ticket", "locked": false, "schema_version": 3, "solution": true, "task": false}
def rewind(init_state, masks):
    # YOUR CODE HERE
    raise NotImplementedError()


def fair_control(init_state, masks, seed):
    # YOUR CODE HERE
    raise NotImplementedError()


def retrain(model, batches, lr):
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "check_ticket", "locked": true, "points": 5, "schema_version": 3, "solution": false, "task": false}
gp.checks.check_rewind(rewind)
gp.checks.check_fair_control(fair_control)
gp.checks.check_retrain(retrain)

# %% [markdown]
# ## The experiment, on a short budget
#
# To fit in a minute we train for one pass over 6,000 training digits (batches of 128 in
# a shuffled order, lr 0.05), so the dense network reaches about 9% validation error
# rather than the reference's 1.5%. Every sparse network gets exactly the same training.
# Beside the ticket and your fair control we train two more:
# - the **naive control**: a fresh `gp.models.lenet_300_100(seed=100)` with the same mask,
#   at the default scale;
# - the **sign control** (Zhou et al. 2019): the ticket's signs, but the magnitudes of the
#   surviving initial weights shuffled among the survivors of each layer.
#
# **Predict:** at 90% and 97% sparsity, rank the four by validation error. Does the naive
# control train at 97%? Does your fair control close the gap to the ticket, and does the
# sign control?

# %%
train, validation, test = gp.splits()
digits = train.take(6_000)
init_state = copy.deepcopy(gp.models.lenet_300_100(seed=0).state_dict())
dense = retrain(rewind(init_state, {}), digits.batches(128, shuffle=True, seed=0), 0.05)
print(f"dense: validation error {gp.evaluate(dense, validation).error:.2f}%")


def sign_control(init_state, masks, seed):
    generator = torch.Generator().manual_seed(seed)
    state = copy.deepcopy(init_state)
    for name, mask in masks.items():
        magnitudes = init_state[name][mask].abs()
        shuffled = magnitudes[torch.randperm(len(magnitudes), generator=generator)]
        state[name] = torch.zeros_like(mask, dtype=magnitudes.dtype)
        state[name][mask] = shuffled * init_state[name][mask].sign()
    return rewind(state, masks)


def naive_control(init_state, masks, seed):
    model = gp.models.lenet_300_100(seed=seed)
    gp.apply_masks(model, masks)
    return model


errors = {}
for sparsity in (0.9, 0.97):
    masks = gp.global_masks(gp.score(dense, "magnitude"), sparsity)
    starts = {
        "ticket": rewind(init_state, masks),
        "naive control": naive_control(init_state, masks, 100),
        "fair control": fair_control(init_state, masks, 100),
        "sign control": sign_control(init_state, masks, 100),
    }
    for label, model in starts.items():
        retrain(model, digits.batches(128, shuffle=True, seed=0), 0.05)
        errors[label, sparsity] = gp.evaluate(model, validation).error
    print(f"{sparsity:.0%}: " + ", ".join(f"{k} {errors[k, sparsity]:.2f}%" for k in starts))

# %% [markdown]
# ## Written question
#
# **Q1.** What would it mean if the fair control did as well as the ticket? Why is the
# naive control (the default initialisation) not a fair test at 97%, and what does the
# sign control tell you about *which* part of the initial values the ticket keeps? And why
# is "prune, rewind, retrain" not a cheaper way to train a sparse network?

# %% [markdown] nbgrader={"grade": true, "grade_id": "q1_ticket", "locked": false, "points": 3, "schema_version": 3, "solution": true, "task": false}
# YOUR ANSWER HERE
