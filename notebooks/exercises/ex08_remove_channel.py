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
# # Exercise 8: removing a convolution channel by hand
#
# **Learning goal:** rank whole channels by Taylor group importance and remove one,
# producing a physically smaller network that computes what the masked one computes.
# **Estimated time:** 45 minutes.
#
# A mask zeroes weights but keeps every tensor its full size, so nothing runs faster.
# Removing a whole output channel of `conv1` in LeNet-5 shrinks three tensors: the channel's
# filter `conv1.weight[c]` (1×5×5), its bias `conv1.bias[c]`, and the slice of `conv2` that
# reads it, `conv2.weight[:, c]` (50×5×5).
#
# Which channel? Molchanov et al. (2019) estimate the loss change of removing a group of
# parameters by the first-order Taylor term summed over the group, and square it:
# $$I_c = \Big(\sum_{p \in \text{group } c} g_p\, w_p\Big)^2,$$
# where $g$ is the gradient of the mean loss on a batch, and the group of channel $c$ is
# `conv1.weight[c]` and `conv1.bias[c]`.
#
# Write
# - `channel_importance(model, inputs, targets)` → tensor of 20 importances, one per channel;
# - `remove_conv1_channel(model, c)` → a new LeNet-5 (same layers) whose `conv1` has 19
#   output channels and `conv2` 19 input channels; leave `model` unchanged.
#
# The check compares the smaller network's outputs with those of the original network with
# channel $c$ set to zero, which must be the same.

# %%
import copy

import torch
from torch import nn

import gradprune_lite as gp

torch.set_num_threads(2)
_ = torch.manual_seed(0)


# %% nbgrader={"grade": false, "grade_id": "channels", "locked": false, "schema_version": 3, "solution": true, "task": false}
def channel_importance(model, inputs, targets):
    ### BEGIN SOLUTION
    model.zero_grad()
    nn.functional.cross_entropy(model(inputs), targets).backward()
    conv = model.conv1
    per_weight = (conv.weight.grad * conv.weight).sum(dim=(1, 2, 3))
    return (per_weight + conv.bias.grad * conv.bias).detach().square()
    ### END SOLUTION


def remove_conv1_channel(model, c):
    ### BEGIN SOLUTION
    smaller = copy.deepcopy(model)
    keep = [i for i in range(model.conv1.out_channels) if i != c]
    conv1 = nn.Conv2d(1, len(keep), kernel_size=5)
    conv2 = nn.Conv2d(len(keep), model.conv2.out_channels, kernel_size=5)
    with torch.no_grad():
        conv1.weight.copy_(model.conv1.weight[keep])
        conv1.bias.copy_(model.conv1.bias[keep])
        conv2.weight.copy_(model.conv2.weight[:, keep])
        conv2.bias.copy_(model.conv2.bias)
    smaller.conv1, smaller.conv2 = conv1, conv2
    return smaller
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_channels", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
### BEGIN HIDDEN TESTS
# Graded only: another LeNet-5 and another channel.
hidden_model = gp.models.lenet5(seed=9)
hidden_x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(108))
hidden_smaller = remove_conv1_channel(hidden_model, 12)
hidden_zeroed = copy.deepcopy(hidden_model)
with torch.no_grad():
    hidden_zeroed.conv1.weight[12] = 0
    hidden_zeroed.conv1.bias[12] = 0
    assert torch.allclose(hidden_smaller(hidden_x), hidden_zeroed(hidden_x), atol=1e-5)
assert hidden_smaller.conv1.weight.shape[0] == 19 == hidden_smaller.conv2.weight.shape[1]
### END HIDDEN TESTS
gp.checks.check_channel_importance(channel_importance)
gp.checks.check_remove_conv1_channel(remove_conv1_channel)

# %% [markdown]
# ## On the trained LeNet-5
#
# Importances from 1,000 validation digits. We remove the 5 and the 10 least important
# channels, the 5 and 10 most important, and, for comparison, the channels with the
# smallest filters (L2 norm of `conv1.weight[c]`). Removing several channels one at a time
# from the highest index down keeps the lower indices valid.
#
# **Predict:** will the Taylor importance pick better channels to remove than the filter
# norm does?

# %%
model = gp.trained("lenet5")
train, validation, test = gp.splits()
digits = validation.take(1000)
importance = channel_importance(model, digits.images, digits.labels)
filter_norm = model.conv1.weight.detach().flatten(1).norm(dim=1)


def without(channels):
    smaller = model
    for c in sorted(channels, reverse=True):
        smaller = remove_conv1_channel(smaller, c)
    return smaller


print(f"dense: validation error {gp.evaluate(model, validation).error:.2f}%")
errors = {}
for k in (5, 10):
    choices = {
        "Taylor, least important": importance.argsort()[:k],
        "Taylor, most important": importance.argsort()[-k:],
        "smallest filter norm": filter_norm.argsort()[:k],
    }
    for label, channels in choices.items():
        errors[label, k] = gp.evaluate(without(channels.tolist()), validation).error
        print(f"remove {k:>2} ({label}): validation error {errors[label, k]:.2f}%")
smaller = without(importance.argsort()[:10].tolist())
parameters = sum(p.numel() for p in smaller.parameters())
print(f"parameters: {sum(p.numel() for p in model.parameters()):,} → {parameters:,}")

# %% tags=["solution-only"]
assert errors["Taylor, least important", 10] < errors["Taylor, most important", 10]

# %% [markdown] tags=["solution-only"]
# The Taylor importance orders channels in the right direction: removing the 10 least
# important costs far less than removing the 10 most important (9.14% against 26.00%
# validation error). But the plain filter norm picks better channels to remove (2.06% at
# 10). A likely reason is the one from Exercise 1: at a trained minimum the mean gradient
# is mostly noise, so $\sum g\,w$ over a group is a noisy estimate of the loss change. If
# so, the ranking should change with the digits; here it is again on the next 1,000
# validation digits:

# %% tags=["solution-only"]
from IPython.display import Markdown, display

from gradprune_lite.course.ranking import spearman

next_digits = validation.take(2000)
importance_again = channel_importance(model, next_digits.images[1000:], next_digits.labels[1000:])
agreement = spearman(importance.double(), importance_again.double())
display(
    Markdown(
        f"The two rankings of the 20 channels agree at a rank correlation of {agreement:.2f}"
        + (
            ": which channels look least important depends on which digits were averaged."
            if agreement < 0.5
            else ", so noise alone does not explain the filter norm's lead."
        )
    )
)

# %% [markdown] tags=["solution-only"]
# The smaller network is real: each removed channel takes 1,276 parameters (a filter, a bias and 50
# 5×5 slices of `conv2`) and a slice of both convolutions' work. Without fine-tuning the
# accuracy cost grows quickly, which is why structured pruning is usually followed by a
# little retraining.

# %% [markdown]
# ## Written question
#
# **Q1.** Why does the group importance square the *sum* over the group rather than sum the
# squares (or absolute values) of each weight's g·w? What would the other choice measure?

# %% [markdown] nbgrader={"grade": true, "grade_id": "q1_group", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# Removing the channel changes all its parameters at once, so the first-order loss change is
# the sum $\sum_p g_p(-w_p)$ over the group: contributions of different signs cancel, just as
# they do in the network. Squaring the sum gives the size of that joint change and throws
# its sign away: a channel whose removal would *lower* the loss scores as high as one whose
# removal raises it by as much, the weakness notebook 06 points out (a signed sum would keep
# that information, but on a trained network its sign is mostly noise). Summing squares (or
# absolute values) of the individual terms would measure the channel's removal as if each
# weight were removed alone and the effects never cancelled, which overrates channels whose
# weights pull in opposite directions.
