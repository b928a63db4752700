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
# # Exercise 5: per-sample gradient statistics with hooks
#
# **Learning goal:** decompose a layer's gradient into per-sample gradients, and compute
# their mean, second moment and variance from one forward and one backward pass, without
# ever storing a per-sample gradient. **Estimated time:** 60 minutes.
#
# For an `nn.Linear` layer $y = W x + b$, sample $n$'s own loss $\ell_n$ has the weight
# gradient
# $$g_n = \frac{\partial \ell_n}{\partial W} = d_n\, x_n^\top,
# \qquad d_n = \frac{\partial \ell_n}{\partial y_n}.$$
# The batch gradient is their mean $\bar g = \frac1N\sum_n g_n$. Pruning criteria also need
# the second moment $E[g^2] = \frac1N\sum_n g_n^2$ (elementwise; the diagonal of the
# empirical Fisher) and the variance $E[g^2] - \bar g^2$.
#
# Hooks give you the two factors: a **forward hook** on the layer sees its input $x$
# (N × in) and its output $y$; a hook on the output tensor (`output.register_hook`) then
# sees `grad_output`, the gradient of the *batch* loss with respect to $y$ (N × out). Two things to work out on paper first:
# - the batch loss is the **mean** of the $\ell_n$: how does `grad_output` relate to $d_n$?
# - $g_n^2 = (d_n x_n^\top)^2$ elementwise: can you write $\sum_n g_n^2$ as one matrix product?
#
# Write `linear_gradient_stats(model, layer, inputs, targets)` returning `(mean, sq_mean,
# var)`, each shaped like `layer.weight`, for the mean cross-entropy loss of `model` on the
# batch. Remove your hooks before returning. The check compares with `torch.func`, which
# computes every $g_n$ explicitly.

# %%
import torch

import gradprune_lite as gp

torch.set_num_threads(2)
_ = torch.manual_seed(0)


# %% nbgrader={"grade": false, "grade_id": "linear_gradient_stats", "locked": false, "schema_version": 3, "solution": true, "task": false}
def linear_gradient_stats(model, layer, inputs, targets):
    ### BEGIN SOLUTION
    seen = {}

    def record(module, args, output):
        seen["x"] = args[0].detach()
        output.register_hook(lambda grad: seen.update(d=grad.detach()))

    handle = layer.register_forward_hook(record)
    try:
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(inputs), targets).backward()
    finally:
        handle.remove()
    n = len(targets)
    x, d = seen["x"], seen["d"] * n  # the loss is a mean: grad_output = d_n / N
    mean = d.T @ x / n
    sq_mean = d.square().T @ x.square() / n
    return mean, sq_mean, sq_mean - mean.square()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_linear_gradient_stats", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
### BEGIN HIDDEN TESTS
# Graded only: another layer and batch size, against torch.func.
from gradprune_lite.course.checks.per_sample import per_sample_weight_gradients

with torch.random.fork_rng(devices=[]):
    torch.manual_seed(105)
    hidden_model = torch.nn.Sequential(
        torch.nn.Linear(7, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2)
    )
    hidden_x, hidden_y = torch.randn(50, 7), torch.randint(2, (50,))
hidden_g = per_sample_weight_gradients(hidden_model, "0.weight", hidden_x, hidden_y)
hidden_stats = linear_gradient_stats(hidden_model, hidden_model[0], hidden_x, hidden_y)
hidden_want = (hidden_g.mean(0), hidden_g.square().mean(0), hidden_g.var(0, unbiased=False))
assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(hidden_stats, hidden_want))
### END HIDDEN TESTS
gp.checks.check_linear_gradient_stats(linear_gradient_stats)

# %% [markdown]
# ## On the trained network
#
# Your function against the library's `gp.gradient_stats` on 1,000 validation digits, for
# every layer of the trained LeNet-300-100. **Predict:** is the signal-to-noise ratio
# $\bar g^2 / \mathrm{Var}[g]$ of a typical weight closer to 1 or to $1/N = 0.001$?

# %%
model = gp.trained("lenet_300_100")
train, validation, test = gp.splits()
digits = validation.take(1000)
library = gp.gradient_stats(model, [(digits.images, digits.labels)])
for name in ("fc1", "fc2", "fc3"):
    mean, sq_mean, var = linear_gradient_stats(
        model, model.get_submodule(name), digits.images, digits.labels
    )
    reference = library[f"{name}.weight"]
    assert torch.allclose(mean, reference.mean, atol=1e-7)
    assert torch.allclose(sq_mean, reference.sq_mean, rtol=1e-4, atol=1e-9)
    snr = mean.square() / var.clamp(min=1e-20)
    print(f"{name}: median SNR {float(snr.median()):.2e}, largest SNR {float(snr.max()):.2f}")

# %% [markdown] tags=["solution-only"]
# All three layers agree with the library. The median SNR is about $10^{-3} = 1/N$, the
# value that averaging $N$ gradients with no common direction gives, and even the largest
# is about 0.01: at this minimum no weight's mean gradient stands out of the per-sample
# noise (compare Exercise 1). The variance, not the mean, carries the information here.

# %% [markdown]
# Memory: storing all per-sample gradients of `fc1` (784 × 300) for 1,000 digits would
# take 1,000 × 235,200 × 4 bytes ≈ 0.94 GB; the hooks kept only $x$ and $d$,
# 1,000 × (784 + 300) × 4 bytes ≈ 4.3 MB.
#
# ## Written question
#
# **Q1.** Explain why $\sum_n g_n^2 = (d^{\,2})^\top (x^2)$ holds for a linear layer (with
# $d$, $x$ the N × out and N × in matrices), and why the same trick does **not** give
# $\sum_n g_n^2$ for a convolution's weight without more work.

# %% [markdown] nbgrader={"grade": true, "grade_id": "q1_trick", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# Entry $(i,j)$ of $g_n$ is $d_{ni} x_{nj}$, so $g_{n,ij}^2 = d_{ni}^2 x_{nj}^2$ and
# $\sum_n g_{n,ij}^2 = \sum_n d^2_{ni} x^2_{nj} = ((d^2)^\top x^2)_{ij}$: each per-sample
# gradient is a rank-one outer product, and squaring elementwise keeps it one. A
# convolution's weight is used at every spatial position, so its per-sample gradient is a
# **sum** of outer products over positions, $g_n = \sum_p d_{np} x_{np}^\top$, and the square
# of a sum is not the sum of squares: one needs the per-sample sums first (e.g. with
# `unfold`, one sample's patches at a time), or `torch.func`.
