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
# # Exercise 7: Optimal Brain Surgeon on the last layer
#
# **Learning goal:** derive and apply the OBS update, which removes a weight *and* moves
# the remaining ones to compensate, using the exact empirical Fisher of a small layer.
# **Estimated time:** 60 minutes.
#
# Near a minimum the loss change of a step $\delta w$ is about $\tfrac12\,\delta w^\top F\,
# \delta w$, with $F = \frac1N\sum_n g_n g_n^\top + \lambda I$ built from per-sample
# gradients $g_n$ (the empirical Fisher, damped by $\lambda$). Removing weight $q$ means the
# step must satisfy $w_q + \delta w_q = 0$. Minimising the loss change under that one
# constraint (a Lagrange multiplier does it) gives
# $$\delta w = -\frac{w_q}{[F^{-1}]_{qq}}\,F^{-1} e_q, \qquad
# L_q = \frac{w_q^2}{2\,[F^{-1}]_{qq}},$$
# where $e_q$ is the $q$-th unit vector and $L_q$ the predicted loss increase (the saliency).
#
# The last layer of LeNet-300-100 has 10 × 100 = 1,000 weights, so $F$ is a 1,000 × 1,000
# matrix we can build and invert exactly. Write, for flat vectors `w` (length $P$) and
# `F_inv` ($P\times P$):
# - `obs_update(F_inv, w, q)` → $\delta w$;
# - `obs_saliency(F_inv, w)` → $L$, one value per weight.
#
# The check compares with the solution of the constrained problem as a linear (KKT) system,
# which never uses the formula above.

# %%
import copy

import torch
from IPython.display import Markdown, display

import gradprune_lite as gp

torch.set_num_threads(2)
_ = torch.manual_seed(0)


# %% nbgrader={"grade": false, "grade_id": "obs", "locked": false, "schema_version": 3, "solution": true, "task": false}
def obs_update(F_inv, w, q):
    ### BEGIN SOLUTION
    return -F_inv[:, q] * w[q] / F_inv[q, q]
    ### END SOLUTION


def obs_saliency(F_inv, w):
    ### BEGIN SOLUTION
    return w.square() / (2 * F_inv.diagonal())
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_obs", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
### BEGIN HIDDEN TESTS
# Graded only: another Fisher matrix, every q, against the constrained minimiser.
from gradprune_lite.course.checks.obs import kkt_step

hidden_rng = torch.Generator().manual_seed(107)
hidden_g = torch.randn(20, 6, generator=hidden_rng, dtype=torch.float64)
hidden_F = hidden_g.T @ hidden_g / 20 + 0.01 * torch.eye(6, dtype=torch.float64)
hidden_w = torch.randn(6, generator=hidden_rng, dtype=torch.float64)
hidden_F_inv = torch.linalg.inv(hidden_F)
hidden_steps = [kkt_step(hidden_F, hidden_w, q) for q in range(6)]
for q, step in enumerate(hidden_steps):
    assert torch.allclose(obs_update(hidden_F_inv, hidden_w, q), step)
hidden_L = torch.stack([0.5 * step @ hidden_F @ step for step in hidden_steps])
assert torch.allclose(obs_saliency(hidden_F_inv, hidden_w), hidden_L)
### END HIDDEN TESTS
gp.checks.check_obs_update(obs_update)
gp.checks.check_obs_saliency(obs_saliency)

# %% [markdown]
# ## Pruning 90% of the last layer
#
# The per-sample gradients of `fc3.weight` on 1,000 validation digits give $F$ (in float64:
# we invert it and update it 900 times).

# %%
model = gp.trained("lenet_300_100")
train, validation, test = gp.splits()
digits = validation.take(1000)
chunks = gp.per_sample_gradients(model, digits.batches(500), names=["fc3.weight"])
G = torch.cat([chunk.reshape(len(chunk), -1) for _, chunk in chunks]).double()
F = G.T @ G / len(G)
damping = 1e-4 * F.diagonal().mean()
F_inv = torch.linalg.inv(F + damping * torch.eye(len(F), dtype=F.dtype))
w_dense = model.fc3.weight.detach().reshape(-1).double()
print(f"per-sample gradients {tuple(G.shape)}, damping λ = {float(damping):.1e}")

# %% [markdown]
# We remove 900 weights one at a time: take the lowest saliency, apply its update, and
# remove that weight from $F^{-1}$ (the standard rank-one downdate, given here).
#
# **Predict:** at 90% sparsity of `fc3`, will OBS beat magnitude pruning by a little or by
# a lot? And how much of the gain comes from the *update* rather than from the choice of
# weights?

# %%
w, Fi = w_dense.clone(), F_inv.clone()
pruned = torch.zeros(len(w), dtype=torch.bool)
for _ in range(900):
    saliency = obs_saliency(Fi, w).masked_fill(pruned, float("inf"))
    q = int(saliency.argmin())
    w = w + obs_update(Fi, w, q)
    w[q], pruned[q] = 0.0, True
    Fi = Fi - torch.outer(Fi[:, q], Fi[q, :]) / Fi[q, q]


def error_with(fc3_flat):
    pruned_model = copy.deepcopy(model)
    with torch.no_grad():
        pruned_model.fc3.weight.copy_(fc3_flat.reshape(10, 100).float())
    return gp.evaluate(pruned_model, validation).error


by_magnitude = w_dense * gp.layerwise_masks({"w": w_dense.abs()}, 0.9)["w"]
errors = {
    "dense": error_with(w_dense),
    "OBS (choice + update)": error_with(w),
    "OBS choice, no update": error_with(w_dense * ~pruned),
    "magnitude": error_with(by_magnitude),
}
for label, error in errors.items():
    print(f"{label:<24} validation error {error:.2f}%")

# %% tags=["solution-only"]
choice_gain = errors["magnitude"] - errors["OBS choice, no update"]
update_gain = errors["OBS choice, no update"] - errors["OBS (choice + update)"]
display(
    Markdown(
        f"OBS at 90% of `fc3` costs {errors['OBS (choice + update)'] - errors['dense']:.2f} "
        f"points over the dense network, magnitude pruning "
        f"{errors['magnitude'] - errors['dense']:.2f}. The choice of weights alone (the "
        f"no-update row) gains {choice_gain:.2f} points over magnitude, the update "
        f"{update_gain:.2f} more."
    )
)

# %% tags=["solution-only"]
assert errors["OBS (choice + update)"] < errors["magnitude"]

# %% [markdown] tags=["solution-only"]
# Here most of the gain comes from the choice. Notebook 05 finds the opposite split on the
# same layer, because there all 900 weights are chosen at once from the dense $F^{-1}$;
# here each removal is chosen after the previous updates (and $F^{-1}$'s downdates), so the
# chosen set already carries much of the compensation (the damping and the digits differ
# too). The update moves the remaining weights of each class to cover for the removed
# ones. This is one layer of 1,000 weights: $F$ for `fc1`
# would have $235{,}200^2 \approx 5.5\cdot10^{10}$ entries, which is why practical methods
# approximate it (diagonal, blocks, Kronecker factors).

# %% [markdown]
# ## Written question
#
# **Q1.** Why is the damping $\lambda I$ needed? What happens to $F^{-1}$ and to the update
# when $\lambda$ is too small, and when it is very large (what does OBS turn into)?

# %% [markdown] nbgrader={"grade": true, "grade_id": "q1_damping", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# $F = \frac1N\sum_n g_n g_n^\top$ has rank at most $N$ and in practice many nearly flat
# directions (e.g. from hidden units that are almost never active after the ReLU), so it is singular or badly
# conditioned; $\lambda I$ makes it invertible. With $\lambda$ too small, $F^{-1}$ has huge
# entries along the flat directions and the update makes large, noisy moves that the
# quadratic model cannot be trusted for. With $\lambda$ very large, $F^{-1} \approx I/\lambda$:
# the update only zeroes $w_q$ (no compensation) and $L_q \approx \lambda w_q^2/2$, so OBS
# turns into magnitude pruning.
