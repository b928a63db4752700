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
# # 01 · Gradient decomposition
#
# Every importance criterion in this course is built from the **per-sample gradients**
# $g_n = \partial L_n / \partial w$. Here we compute them, check that the ordinary batch
# gradient is their mean, and decompose them into the statistics the criteria use:
# mean $\bar g$, second moment $E[g^2]$ (the diagonal empirical Fisher), variance and
# signal-to-noise ratio.

# %%
# %matplotlib inline
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

import gradprune_lite as gp

torch.set_num_threads(2)
torch.manual_seed(0)

train = gp.mnist("train", verbose=False)
print("data:", train.source)
x, y = train.images[:128], train.labels[:128]
model = gp.models.lenet_300_100(seed=0)
print("batch", tuple(x.shape))
print({n: tuple(w.shape) for n, w in gp.prunable_weights(model).items()})

# %% [markdown]
# ## Per-sample gradients, and the batch gradient as their mean
#
# `torch.func` computes one gradient per digit with `vmap(grad(...))`: 128 gradients of
# every weight. This is our independent reference.

# %%
params = {name: p.detach() for name, p in model.named_parameters()}


def loss_of_one(p, image, label):
    return F.cross_entropy(functional_call(model, p, (image[None],)), label[None])


per_sample = vmap(grad(loss_of_one), in_dims=(None, 0, 0))(params, x, y)
print("per-sample fc1 gradients:", tuple(per_sample["fc1.weight"].shape))

# %%
F.cross_entropy(model(x), y).backward()
gap = max((per_sample[n].mean(0) - p.grad).abs().max().item() for n, p in model.named_parameters())
model.zero_grad()
print("mean of per-sample gradients == batch gradient:", gap < 1e-6)
assert gap < 1e-6

# %% [markdown]
# ## Mean, second moment, variance, SNR
#
# `gp.gradient_stats` gets the same statistics **without** materialising 128 copies of
# the weights: for a linear layer $\sum_n g_n^2 = (D^2)^\top (X^2)$, one extra matmul of
# squares. We check it live against the `torch.func` reference.

# %%
stats = gp.gradient_stats(model, [(x, y)])
g = per_sample["fc1.weight"]
reference = {
    "mean": g.mean(0),
    "sq_mean": g.square().mean(0),
    "var": g.var(0, unbiased=False),
}
s = stats["fc1.weight"]
for what, ref in reference.items():
    err = ((getattr(s, what) - ref).abs().max() / ref.abs().max()).item()
    print(f"fc1 {what:8s} matches torch.func:", err < 1e-4)
    assert err < 1e-4
snr = (s.mean.square() / s.var.clamp(min=1e-30)).median().item()
print(f"median SNR of fc1 weights: {snr:.3f}  (below 1: the digits disagree more than they agree)")

# %% [markdown]
# ## The Taylor decomposition of removing a weight
#
# Setting weight $w$ to zero changes the loss by about
# $$\Delta L \approx -\bar g\, w + \tfrac12 F\, w^2 ,$$
# with $F = E[g^2]$. The first term is the **Taylor/SNIP** score, the second the
# **Fisher/OBD** score. We compare the prediction with the actual change for the five
# output-layer weights with the largest first-order term.

# %%
w3, s3 = model.fc3.weight, stats["fc3.weight"]
first = -(s3.mean * w3).detach()
second = (0.5 * s3.sq_mean * w3.square()).detach()
with torch.no_grad():
    base = F.cross_entropy(model(x), y).item()
    rows = []
    for flat in first.abs().flatten().topk(5).indices.tolist():
        i, j = divmod(flat, w3.shape[1])
        saved = w3[i, j].item()
        w3[i, j] = 0.0
        actual = F.cross_entropy(model(x), y).item() - base
        w3[i, j] = saved
        rows.append((i, j, saved, first[i, j].item(), second[i, j].item(), actual))
print(" weight      w     -g·w   ½F·w²  predicted  actual")
for i, j, wv, a, b, actual in rows:
    print(f"fc3[{i},{j:2d}] {wv:+.3f} {a:+.5f} {b:.5f}  {a + b:+.5f}  {actual:+.5f}")
predicted = torch.tensor([a + b for *_, a, b, _ in rows])
actual = torch.tensor([r[-1] for r in rows])
assert torch.allclose(predicted, actual, rtol=0.5, atol=2e-4), (
    "the Taylor prediction should track the actual change"
)

# %% [markdown]
# ## Pictures: where the first layer's gradient lives
#
# Each first-layer weight connects one of 784 pixels to one of 300 hidden units.
# Averaging over the hidden units gives one number per pixel, a 28×28 picture. Border
# pixels are background in every digit, so their gradients barely vary; the centre,
# where digits differ, is where the gradient is noisy.

# %%
gp.plots.images(
    {
        "mean |ḡ| per pixel": s.mean.abs().mean(0).reshape(28, 28),
        "mean Var[g] per pixel": s.var.mean(0).reshape(28, 28),
    }
)

# %%
var_image = s.var.mean(0).reshape(28, 28)
centre, border = var_image[7:21, 7:21].mean().item(), var_image[:4].mean().item()
print(f"gradient variance: centre {centre:.2e}, top border {border:.2e}")
assert centre > 2 * border
