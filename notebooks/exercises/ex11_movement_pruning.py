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
# # Exercise 11: movement pruning in your own training loop
#
# **Learning goal:** accumulate a gradient-based score over the steps of a training loop you
# write yourself, at the right moment of each step, and prune along a schedule while the
# network fine-tunes; then say when this beats pruning by magnitude.
# **Estimated time:** 75 minutes.
#
# Magnitude pruning keeps the weights that are large *now*. When a pretrained network is
# fine-tuned on a new task, that mostly means large for the *old* task. Movement pruning
# (Sanh, Wolf & Rush, NeurIPS 2020) keeps instead the weights that fine-tuning pushes away
# from zero. With $w_t$ a weight and $g_t$ the gradient of the training loss at step $t$,
# both as the optimiser is about to use them, the score is
# $$S = -\sum_t w_t\, g_t \qquad (\text{higher} = \text{keep}),$$
# summed over all the fine-tuning steps so far. The sparsity rises along Zhu & Gupta's cubic
# schedule, from 0 at step 0 to $s_f$ at step $T_{\text{end}}$:
# $$s_t = s_f \Big(1 - \big(1 - \min(t / T_{\text{end}}, 1)\big)^3\Big).$$
#
# Write
# - `cubic_sparsity(step, final_sparsity, end_step)` → float, the schedule above;
# - `movement_masks(scores, masks, sparsity)` → new masks (dicts name → tensor; True = keep):
#   exactly `round(sparsity · N)` of all $N$ weights pruned, one ranking over all names
#   together, the lowest scores first, and a weight already pruned (False in `masks`) stays
#   pruned. Leave the inputs unchanged;
# - `fine_prune(model, batches, names, final_sparsity, lr, end_step, every)` → `(scores,
#   masks)`: train `model` in place with `torch.optim.SGD(model.parameters(), lr,
#   momentum=0.9)` and the mean cross-entropy loss, one step per batch, in order. At each
#   step add $-w\,g$ to the running score of every weight in `names`; after the optimiser
#   step of step $t$ (counting from 0), when $t$ is a multiple of `every` and $t \le$
#   `end_step`, prune to `cubic_sparsity(t, ...)` with `movement_masks`, and keep the pruned
#   weights at zero from then on (`gp.apply_masks(model, masks, optimizer)` does that;
#   Exercise 3 wrote such a hook). `end_step` is a multiple of `every`.
#
# Where in the step does $-w\,g$ belong: before `loss.backward()`, between it and
# `optimizer.step()`, or after? Decide before you write it; the check tells you if the
# moment is wrong. Do not call `gp.MovementScores` or `gp.GradualPruner`: the check
# refuses them here (you will compare with the library below).

# %%
import copy
import math

import torch
from torch import nn

import gradprune_lite as gp

torch.set_num_threads(2)
_ = torch.manual_seed(0)


# %% nbgrader={"grade": false, "grade_id": "movement", "locked": false, "schema_version": 3, "solution": true, "task": false}
def cubic_sparsity(step, final_sparsity, end_step):
    ### BEGIN SOLUTION
    progress = min(step / end_step, 1.0)
    return final_sparsity * (1 - (1 - progress) ** 3)
    ### END SOLUTION


def movement_masks(scores, masks, sparsity):
    ### BEGIN SOLUTION
    names = list(scores)
    flat = torch.cat([scores[name].flatten() for name in names])
    alive = torch.cat([masks[name].flatten() for name in names])
    ranked = flat.masked_fill(~alive, -math.inf)  # the pruned rank below every living weight
    keep = torch.zeros_like(alive)
    keep[ranked.topk(flat.numel() - round(sparsity * flat.numel())).indices] = True
    parts = keep.split([scores[name].numel() for name in names])
    return {name: part.view_as(scores[name]) for name, part in zip(names, parts)}
    ### END SOLUTION


def fine_prune(model, batches, names, final_sparsity, lr, end_step, every):
    ### BEGIN SOLUTION
    weights = {name: model.get_parameter(name) for name in names}
    scores = {name: torch.zeros_like(w) for name, w in weights.items()}
    masks = {name: torch.ones_like(w, dtype=torch.bool) for name, w in weights.items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    for step, (inputs, targets) in enumerate(batches):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(inputs), targets).backward()
        with torch.no_grad():
            for name, w in weights.items():
                scores[name] -= w * w.grad  # before the step: the weight g was taken at
        optimizer.step()
        if step % every == 0 and step <= end_step:
            sparsity = cubic_sparsity(step, final_sparsity, end_step)
            masks = movement_masks(scores, masks, sparsity)
            gp.apply_masks(model, masks, optimizer)
    return scores, masks
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_movement", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
### BEGIN HIDDEN TESTS
# Graded only: the schedule's ends, and the loop against gp.GradualPruner("movement") on
# another small model (the same steps, scores and masks; a near-tie may flip one weight).
assert cubic_sparsity(0, 0.9, 10) == 0 and abs(cubic_sparsity(25, 0.9, 10) - 0.9) < 1e-12
with torch.random.fork_rng(devices=[]):
    torch.manual_seed(111)
    hidden_model = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 3))
    hidden_batches = [(torch.randn(8, 6), torch.randint(3, (8,))) for _ in range(12)]
hidden_library = copy.deepcopy(hidden_model)
hidden_scores, hidden_masks = fine_prune(
    hidden_model, hidden_batches, ["0.weight", "2.weight"], 0.6, 0.05, 6, 2
)
hidden_optimizer = torch.optim.SGD(hidden_library.parameters(), lr=0.05, momentum=0.9)
hidden_pruner = gp.GradualPruner(
    hidden_library, "movement", 0.6, 0, 6, 2, optimizer=hidden_optimizer
)
for hidden_x, hidden_y in hidden_batches:
    hidden_optimizer.zero_grad()
    nn.functional.cross_entropy(hidden_library(hidden_x), hidden_y).backward()
    hidden_optimizer.step()
    hidden_pruner.step()
hidden_want = gp.current_masks(hidden_library)
assert sum(int((hidden_masks[n] != hidden_want[n]).sum()) for n in hidden_want) <= 2
### END HIDDEN TESTS
gp.checks.check_cubic_sparsity(cubic_sparsity)
gp.checks.check_movement_masks(movement_masks)
gp.checks.check_fine_prune(fine_prune)

# %% [markdown]
# ## Split MNIST: pretrained on digits 0–4, fine-pruned on 5–9
#
# LeNet-300-100 is trained for one epoch on the digits 0–4 only (cached after the first
# run). It gets a new, randomly initialised head `fc3` with five outputs and is fine-tuned
# on the digits 5–9 (read as classes 0–4): 300 steps of 64 digits, pruning `fc1` and `fc2`
# (265,200 weights; the new head is not pruned) to 99% along the cubic schedule up to step
# 220, every 10 steps. Errors are measured on the validation digits 5–9.
#
# Four ways to spend the same 300 steps, each at a small learning rate (0.005) and a
# larger one (0.05):
# - **dense**: your `fine_prune` with `final_sparsity = 0`, no pruning at all;
# - **one-shot magnitude**: prune the pretrained weights by |w| to 99% first, then fine-tune;
# - **gradual magnitude** (Zhu & Gupta's GMP): the library's `gp.GradualPruner` with
#   magnitude, on the same schedule;
# - **movement**: your `fine_prune`.
#
# **Predict:** at 99% sparsity and the small learning rate, order the three pruned methods
# from best to worst. Does the order change at the larger learning rate? Write your guess
# before you run the cells below.

# %%
train, validation, test = gp.splits()


def digits(data, low, high):
    """The digits labelled low..high, relabelled from 0."""
    keep = (data.labels >= low) & (data.labels <= high)
    return gp.Digits(data.images[keep], data.labels[keep] - low, data.source, data.is_subset)


pretrained = gp.trained("lenet_300_100", train=digits(train, 0, 4), epochs=1)
print(f"pretrained on 0-4: test error {gp.evaluate(pretrained, digits(test, 0, 4)).error:.2f}%")
new_digits, new_validation = digits(train, 5, 9), digits(validation, 5, 9)
batches = list(new_digits.batches(64, shuffle=True, seed=0))[:300]
NAMES, SPARSITY, END, EVERY = ["fc1.weight", "fc2.weight"], 0.99, 220, 10


def with_new_head():
    model = copy.deepcopy(pretrained)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model.fc3 = nn.Linear(100, 5)
    return model


def weight_change(model):
    """‖w_end − w_0‖ / ‖w_0‖ over the surviving weights of fc1 and fc2."""
    diff = norm = 0.0
    for name in NAMES:
        w, w0 = model.get_parameter(name).detach(), pretrained.get_parameter(name).detach()
        alive = w != 0
        diff += float((w - w0)[alive].square().sum())
        norm += float(w0[alive].square().sum())
    return math.sqrt(diff / norm)


def gradual_library(criterion, lr):
    model = with_new_head()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    pruner = gp.GradualPruner(
        model, criterion, SPARSITY, 0, END, EVERY, optimizer=optimizer, exclude="fc3.weight"
    )
    for inputs, targets in batches:
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(inputs), targets).backward()
        optimizer.step()
        pruner.step()
    return model


# %%
errors, changes, kept = {}, {}, {}
for lr in (0.005, 0.05):
    dense = with_new_head()
    fine_prune(dense, batches, NAMES, 0.0, lr, END, EVERY)
    one_shot = with_new_head()
    gp.prune(one_shot, "magnitude", SPARSITY, exclude="fc3.weight")
    fine_prune(one_shot, batches, NAMES, 0.0, lr, END, EVERY)
    movement = with_new_head()
    _, kept[lr] = fine_prune(movement, batches, NAMES, SPARSITY, lr, END, EVERY)
    runs = {
        "dense": dense,
        "one-shot magnitude": one_shot,
        "gradual magnitude": gradual_library("magnitude", lr),
        "movement (yours)": movement,
    }
    for method, model in runs.items():
        errors[method, lr] = gp.evaluate(model, new_validation).error
    changes[lr] = weight_change(dense)
print(f"{'validation error %':<20}{'lr 0.005':>10}{'lr 0.05':>10}")
for method in runs:
    print(f"{method:<20}" + "".join(f"{errors[method, lr]:>10.2f}" for lr in (0.005, 0.05)))
print(f"{'dense weight change':<20}" + "".join(f"{changes[lr]:>10.3f}" for lr in (0.005, 0.05)))

# %% [markdown]
# ### Your loop against the library
#
# The library's movement pruning on the same steps at lr 0.005: on how many of the 265,200
# weights do its masks and yours agree?

# %%
library_movement = gradual_library("movement", 0.005)
library_masks = gp.current_masks(library_movement)
same = sum(int((kept[0.005][n] == library_masks[n]).sum()) for n in NAMES)
print(f"masks agree on {same:,} of {sum(library_masks[n].numel() for n in NAMES):,} weights")

# %% tags=["solution-only"]
assert errors["movement (yours)", 0.005] < errors["one-shot magnitude", 0.005]
assert changes[0.005] < changes[0.05]

# %% [markdown] tags=["solution-only"]
# At the small learning rate the dense network's pretrained weights move by 0.186 of their
# norm in 300 steps, and the order is movement 5.77% < gradual magnitude 6.25% < one-shot
# magnitude 18.59% (dense 3.27%). One-shot magnitude keeps the 1% of weights that were large
# for the digits 0–4, and steps this small cannot repair that choice; movement chooses with
# the new task's own gradients. At lr 0.05 the weights move by 0.581 and the two gradual
# methods swap places: gradual magnitude 2.90%, movement 3.19% (one-shot 6.05%). This is one
# run of one seed: the differences between movement and gradual magnitude at either rate
# are within what another seed or another batch order would change; the gap to one-shot
# magnitude at the small rate is not. Your loop and the library's agree on every weight:
# the same scores, read at the same moment of each step, pruned on the same schedule.

# %% [markdown]
# ## Written questions
#
# The committed transfer experiment (`docs/results/transfer/`, 3 seeds, summarised by
# `python scripts/transfer_experiment.py summary`) runs the same comparison at full scale:
# every method gets its budget's learning rates and the one with the lowest validation error
# is kept; test error % on the digits 5–9 at 99% sparsity, mean ± std over the seeds:
#
# | budget | dense | one-shot magnitude | gradual magnitude | movement |
# |---|---|---|---|---|
# | light: 1 epoch, lr ≤ 0.005 | 6.46 ± 0.42 | 29.73 ± 4.24 | 13.70 ± 0.84 | 10.23 ± 0.51 |
# | full: 8 epochs, lr ≤ 0.1 | 1.27 ± 0.12 | 2.96 ± 0.32 | 1.69 ± 0.27 | 1.99 ± 0.15 |
#
# **Q1.** Why does movement beat magnitude by so much when fine-tuning barely moves the
# weights, and why does its advantage disappear when fine-tuning retrains them? Use both
# tables, and say what the light budget's dense error tells you about that comparison.
#
# **Q2.** Under plain SGD (no momentum, $w_{t+1} = w_t - \eta\, g_t$), show that
# $-w_t\, g_t = w_t\,(w_{t+1} - w_t)/\eta$. What did a weight with $S > 0$ do during
# fine-tuning, and one with $S < 0$? Which weights does movement prune that magnitude keeps?
# Why must $-w\,g$ be added before `optimizer.step()`?

# %% [markdown] nbgrader={"grade": true, "grade_id": "q1_budget", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# **Q1.** Magnitude ranks by |w| of the *pretrained* weights, what mattered for the digits
# 0–4; one-shot, it removes 99% of them before the new task has been seen. Movement's
# $S = -\sum_t w_t g_t$ adds up, step by step, the first-order estimate of how much removing
# each weight would raise the *new* task's loss (removing $w$ changes the loss by about
# $-g\,w$), so it keeps the weights fine-tuning is using. When fine-tuning barely moves the
# weights (here 0.186 of their norm at lr 0.005), the survivors cannot be retrained into a
# good classifier of 5–9, so the choice decides the error: one-shot magnitude 29.73 ± 4.24
# against movement 10.23 ± 0.51 in the experiment, 18.59 against 5.77 here. Part of that gap
# is pruning gradually rather than at once (gradual magnitude 13.70 ± 0.84); movement's own
# share is 13.70 → 10.23. With a budget that retrains the weights (8 epochs at lr up to 0.1;
# 0.581 of their norm here at lr 0.05), the kept weights move far from their pretrained
# values and any reasonable choice is repaired: gradual magnitude 1.69 ± 0.27 and movement
# 1.99 ± 0.15 differ by about one seed spread and are both near dense 1.27 ± 0.12, and here
# gradual magnitude is ahead (2.90 against 3.19). Only one-shot magnitude still loses (2.96 ±
# 0.32). The light budget's dense error, 6.46 ± 0.42, shows that every method there is
# under-trained: movement's 10.23 is the better choice under the same small budget, not a
# win against a well-trained baseline.

# %% [markdown] nbgrader={"grade": true, "grade_id": "q2_sgd", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# **Q2.** Plain SGD gives $g_t = (w_t - w_{t+1})/\eta$, so
# $-w_t g_t = w_t (w_{t+1} - w_t)/\eta$: positive when the step moves $w$ in the direction
# of its own sign, away from zero, negative when it moves $w$ towards zero. $S > 0$: over
# fine-tuning the weight was, on balance, pushed away from zero; $S < 0$: pulled towards it.
# Movement therefore prunes weights that are large but shrinking, which magnitude keeps, and
# keeps small weights that are growing, which magnitude prunes. The score must pair $g_t$
# with the weight it was computed at: after `optimizer.step()` the weight is already
# $w_{t+1}$, and $-w_{t+1} g_t = -w_t g_t + \eta\, g_t^2$ (plain SGD) adds a positive term
# that favours every weight with a large gradient, whichever way it moves, so it no longer
# measures movement. (With momentum the step is not $-\eta g_t$, so the identity is only
# approximate, but $S$ is still defined with the gradient.)
