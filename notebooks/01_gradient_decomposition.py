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
# Every data-driven importance criterion in this course is built from the **per-sample
# gradients** $g_n = \partial L_n / \partial w$, one per digit. In this notebook you will be
# able to:
#
# 1. prune a trained network in three library calls and read what it costs;
# 2. compute per-sample gradients and check that the ordinary batch gradient is their mean;
# 3. decompose them into mean $\bar g$, second moment $E[g^2]$ (the diagonal empirical
#    Fisher), variance and signal-to-noise ratio (SNR), and say what each means on a
#    *trained* network;
# 4. test the Taylor approximation of the loss change when one weight is removed, and
#    explain why the popular scores take $|\cdot|$ of a signed change;
# 5. say when the empirical Fisher stands in for the Hessian (Optimal Brain Damage) and
#    when it does not.
#
# We work on the dense reference network, LeNet-300-100 trained on MNIST (`gp.trained`,
# cached on disk), because a pruned network starts from a trained one.

# %%
# %matplotlib inline
import copy

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display
from torch.func import functional_call, grad, vmap

import gradprune_lite as gp
from gradprune_lite.course.last_layer import last_layer_hessian
from gradprune_lite.course.ranking import spearman

torch.set_num_threads(2)
torch.manual_seed(0)

train, validation, test = gp.splits()
print("data:", train.source)
model = gp.trained("lenet_300_100", seed=0)
untrained = gp.models.lenet_300_100(seed=0)
x, y = train.images[:128], train.labels[:128]
print({n: tuple(w.shape) for n, w in gp.prunable_weights(model).items()})

# %% [markdown]
# ## A pruned network in three calls
#
# Before any theory, prune it. `gp.prune(model, criterion, sparsity, batches)` scores every
# weight by a criterion, removes the lowest-scored fraction `sparsity` of all weights (one
# threshold across the layers) and keeps them at zero from then on; `gp.evaluate` gives the
# test error. We compare two criteria:
#
# - **magnitude** removes the weights with the smallest $|w|$; it never looks at data;
# - **taylor** removes the weights with the smallest $|\bar g\,w|$, the batch gradient
#   $\bar g = \partial L/\partial w$ on 1,000 training digits times the weight: to first
#   order, how much the loss changes when $w$ is set to zero.
#
# **Predict.** Removing 90% of the weights, and then 98%: how much test error will each
# criterion add to the dense network's? Which of the two will do better, the one that
# measures the loss or the one that ignores it? Write your guesses, then run the cell.

# %%
scoring_batches = list(train.take(1000).batches(250))
dense_error = gp.evaluate(model, test).error
first_errors = {}
for sparsity in (0.9, 0.98):
    for criterion in ("magnitude", "taylor"):
        pruned = copy.deepcopy(model)  # gp.prune works in place; keep the dense model
        gp.prune(pruned, criterion, sparsity, scoring_batches)
        first_errors[criterion, sparsity] = gp.evaluate(pruned, test).error
print(f"dense: {dense_error:.2f}% test error")
for (criterion, sparsity), error in first_errors.items():
    print(f"{criterion:9s} {sparsity:.0%} removed: {error:5.2f}% test error")


# %% jupyter={"source_hidden": true}
# The interpretation, rendered from the values above (hidden: it is prose, not a lesson).
def cost(criterion, sparsity):
    return first_errors[criterion, sparsity] - dense_error


magnitude_wins = all(first_errors["magnitude", s] < first_errors["taylor", s] for s in (0.9, 0.98))
display(
    Markdown(
        f"**Interpretation.** Removing 90% of the weights by magnitude costs "
        f"{cost('magnitude', 0.9):.2f} points of test error, with no retraining at all; "
        f"taylor costs {cost('taylor', 0.9):.2f}. At 98% both break down (magnitude "
        f"{first_errors['magnitude', 0.98]:.1f}%, taylor {first_errors['taylor', 0.98]:.1f}%; "
        "notebooks 03 and 04 add the training that repairs most of it). "
        + (
            "On this trained network the criterion that never looks at the data beats the "
            "one built from the loss's gradient, at both sparsities."
            if magnitude_wins
            else "Neither criterion wins at both sparsities."
        )
    )
)


# %% [markdown]
# **Predict (why?).** taylor scores a weight by the first term of the loss change its
# removal causes. Why could a score that measures the loss do worse than one that ignores
# it? Write down one reason. The rest of this notebook takes the gradient apart, digit by
# digit, and tests each step of the taylor score; come back to your reason at the end.

# %% [markdown]
# ## Per-sample gradients, and the batch gradient as their mean
#
# The batch loss is the mean of the per-digit losses, $L = \frac1N \sum_n L_n$, so its
# gradient is the mean of the per-digit gradients. `torch.func` computes one gradient per
# digit with `vmap(grad(...))`: 128 copies of every weight's gradient. This is our
# independent reference.

# %%
params = {name: p.detach() for name, p in model.named_parameters()}


def loss_of_one(p, image, label):
    return F.cross_entropy(functional_call(model, p, (image[None],)), label[None])


per_sample = vmap(grad(loss_of_one), in_dims=(None, 0, 0))(params, x, y)
print("per-sample fc1 gradients:", tuple(per_sample["fc1.weight"].shape))

F.cross_entropy(model(x), y).backward()
gap = max(
    ((per_sample[n].mean(0) - p.grad).abs().max() / p.grad.abs().max()).item()
    for n, p in model.named_parameters()
)  # the largest difference, relative to the largest gradient entry of the same tensor
model.zero_grad()
print("mean of per-sample gradients == batch gradient:", gap < 1e-5)
assert gap < 1e-5

# %% [markdown]
# ## Mean, second moment, variance, SNR
#
# For each weight, over the $N$ digits:
#
# | statistic | formula | meaning |
# |---|---|---|
# | mean | $\bar g = \frac1N\sum_n g_n$ | the batch gradient: where the digits pull *on average* |
# | second moment | $E[g^2] = \frac1N\sum_n g_n^2$ | how hard the digits pull, whatever the direction (diagonal empirical Fisher) |
# | variance | $\mathrm{Var}[g] = E[g^2] - \bar g^2$ | how much the digits disagree |
# | SNR | $\bar g^2 / \mathrm{Var}[g]$ | agreement relative to disagreement |
#
# `gp.gradient_stats` gets them **without** materialising a copy of the weights per digit:
# for a linear layer the per-sample gradient is an outer product $g_n = d_n x_n^\top$, so
# $\sum_n g_n^2 = (D^2)^\top (X^2)$, one extra matrix product of squares. We check it against
# the `torch.func` reference.

# %%
stats128 = gp.gradient_stats(model, [(x, y)])
for name in ["fc1.weight", "fc3.weight"]:
    g, s = per_sample[name], stats128[name]
    reference = {"mean": g.mean(0), "sq_mean": g.square().mean(0), "var": g.var(0, unbiased=False)}
    for what, ref in reference.items():
        err = ((getattr(s, what) - ref).abs().max() / ref.abs().max()).item()
        print(f"{name} {what:8s} matches torch.func:", err < 1e-4)
        assert err < 1e-4

# %% [markdown]
# ### What the decomposition looks like after training
#
# **Predict.** Training drives the *batch* gradient to zero. Does that mean the individual
# digits stop pulling on the weights? Guess the ratio $\sum \bar g^2 / \sum E[g^2]$ (how
# much of the gradient's energy is agreement) before and after training, for 1,000 digits.
#
# A useful yardstick: if the digits' gradients were pure noise with no common direction, the
# mean of $N$ of them would still not be zero; its expected square is $\mathrm{Var}/N$, so
# the ratio would be $1/N = 0.001$.

# %%
scoring = train.take(1000)
stats = {
    "untrained": gp.gradient_stats(untrained, [(scoring.images, scoring.labels)]),
    "trained": gp.gradient_stats(model, [(scoring.images, scoring.labels)]),
}
n_scoring = len(scoring)


def share_past_two_errors(mean: torch.Tensor, sq_mean: torch.Tensor) -> float:
    """Fraction of weights whose mean gradient is more than 2 standard errors from 0."""
    standard_error = ((sq_mean - mean.square()) / n_scoring).sqrt().clamp(min=1e-30)
    return (mean.abs() / standard_error > 2).float().mean().item()


def pure_noise_share(net, per_layer, draws: int = 5) -> dict[str, float]:
    """The same test when each digit's loss gets a random sign, averaged over ``draws``.

    A random sign keeps every digit's pull (E[g²] does not change) and removes any common
    direction: pure noise with these digits' own spread, which is far from Gaussian.
    """
    generator = torch.Generator().manual_seed(1)
    shares = dict.fromkeys(per_layer, 0.0)
    for _ in range(draws):
        sign = torch.randint(0, 2, (n_scoring,), generator=generator) * 2.0 - 1.0
        losses = F.cross_entropy(net(scoring.images), scoring.labels, reduction="none")
        (sign * losses).mean().backward()
        for name, p in net.named_parameters():
            if name in per_layer:
                shares[name] += share_past_two_errors(p.grad, per_layer[name].sq_mean) / draws
        net.zero_grad()
    return shares


agreement, past_two, noise_level = {}, {}, {}
print("                          ḡ²/E[g²]  median SNR  share of weights |ḡ| > 2 s.e.")
print("             layer                              measured   pure noise")
for state, net in (("untrained", untrained), ("trained", model)):
    per_layer = stats[state]
    noise = pure_noise_share(net, per_layer)
    for name, s in per_layer.items():
        agreement[state, name] = (s.mean.square().sum() / s.sq_mean.sum()).item()
        past_two[state, name] = share_past_two_errors(s.mean, s.sq_mean)
        noise_level[state, name] = noise[name]
        print(
            f"{state:>10s}  {name:10s}  {agreement[state, name]:9.4f}  {s.snr.median():10.1e}"
            f"  {past_two[state, name]:8.1%}   {noise[name]:8.1%}"
        )

# %% jupyter={"source_hidden": true}
# The notebook's own check (hidden: it would give the Predict answer away).
assert all(agreement["trained", n] < 2 / n_scoring for n in stats["trained"])
assert all(agreement["untrained", n] > 5 / n_scoring for n in stats["untrained"])

# %% jupyter={"source_hidden": true}
# The interpretation of the last column, rendered from the values (hidden: it is prose).
trained_layers = list(stats["trained"])
per_digit = (
    torch.cat(
        [
            g.flatten(1)
            for _, g in gp.per_sample_gradients(
                model, [(scoring.images, scoring.labels)], names=["fc3.weight"]
            )
        ]
    )
    .square()
    .sum(1)
)  # each digit's share of fc3's E[g²], up to the factor 1/N
top_share = (per_digit.topk(n_scoring // 100).values.sum() / per_digit.sum()).item()
display(
    Markdown(
        "**Interpretation.** Before training, about half the weights have a mean gradient "
        "more than two standard errors from zero: the digits agree on a direction. After "
        "training the ratio sits at the noise floor $1/N$, and only "
        + ", ".join(f"{past_two['trained', n]:.1%}" for n in trained_layers)
        + " of the weights of "
        + ", ".join(n.split(".")[0] for n in trained_layers)
        + " pass the two-standard-error test. Pure noise is the last column: the same test "
        "with each digit's loss given a random sign, which keeps every digit's pull and "
        "removes any common direction ("
        + ", ".join(f"{noise_level['trained', n]:.1%}" for n in trained_layers)
        + "). A normal z-score would give pure noise 4.6%, but these per-digit gradients "
        f"are far from normal: the 1% of digits with the largest gradients carry "
        f"{top_share:.0%} of fc3's $E[g^2]$. So only the weights beyond the pure-noise share, "
        + ", ".join(
            f"{past_two['trained', n] - noise_level['trained', n]:+.1%}" for n in trained_layers
        )
        + " of each layer, show a direction the digits agree on."
    )
)

# %% [markdown]
# The digits still pull hard ($E[g^2]$ is not
# small), but in directions that cancel: **$\bar g \to 0$, the variance does not**. So on a
# trained network, $\bar g$ of a finite batch is mostly sampling noise. Notebook 02 measures
# what this does to the stability of rankings that use $\bar g$, and tries using the
# variance to stabilise them.
#
# What this does not say: that the weights are unimportant. Importance is about what
# *removing* a weight does, which the next section measures.

# %% [markdown]
# ## The Taylor decomposition of removing a weight
#
# Setting weight $w$ to zero moves it by $\delta = -w$. A second-order Taylor expansion of
# the loss gives
# $$\Delta L \approx \bar g\,\delta + \tfrac12 H\,\delta^2 = -\bar g\, w + \tfrac12 H\, w^2 ,$$
# with $H$ the diagonal of the Hessian. The criteria read off its terms:
#
# - **Taylor** (and **SNIP**, its normalised version) score $|{-\bar g w}|$, the first
#   term's *size*;
# - **Fisher / Optimal Brain Damage** score $\tfrac12 F w^2$, the second term with the
#   empirical Fisher $F = E[g^2]$ in place of $H$.
#
# Why $|\cdot|$? The first term is *signed*: a negative $-\bar g w$ means removing the weight
# lowers the loss. A score that ranks "change of any sign" is asking "does the loss care
# about this weight?", not "would removing it hurt?". Near a minimum the two questions differ.
#
# **Predict.** On the trained network, take the 200 largest-magnitude weights of fc2 and of
# fc3 and remove each one alone. What fraction make the loss *go down*? Which predicts the
# actual change better: the size $|{-\bar g w}|$ or the signed $-\bar g w + \tfrac12 F w^2$?
#
# We compare predictions with the actual changes by **Spearman's rank correlation**: the
# Pearson correlation of the two lists' *ranks* (`gradprune_lite.course.ranking.spearman`).
# 1 means the prediction orders the removals exactly as they turn out, 0 no relation; only
# the order counts, not the scale, which is what a pruning score needs.

# %%
# Removing an fc2 or fc3 weight cannot change the first layer's output: compute it once.
with torch.no_grad():
    hidden1 = torch.relu(model.fc1(scoring.images.flatten(1)))


def loss_from_hidden(hidden: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return F.cross_entropy(model.fc3(torch.relu(model.fc2(hidden))), labels).item()


def scoring_loss() -> float:
    return loss_from_hidden(hidden1, scoring.labels)


def removal_effects(name: str, count: int = 200) -> dict[str, torch.Tensor]:
    """Actual ΔL and the Taylor terms for the ``count`` largest |w| of one layer."""
    weight = dict(model.named_parameters())[name]
    flat = weight.data.view(-1)
    index = flat.abs().topk(count).indices
    base = scoring_loss()
    actual = []
    for i in index.tolist():
        saved = flat[i].item()
        flat[i] = 0.0
        actual.append(scoring_loss() - base)
        flat[i] = saved
    w = flat[index].double()
    s = stats["trained"][name]
    first = -s.mean.flatten()[index].double() * w
    second = 0.5 * s.sq_mean.flatten()[index].double() * w.square()
    actual = torch.tensor(actual, dtype=torch.float64)
    return {"index": index, "w": w, "actual": actual, "first": first, "second": second}


effects = {name: removal_effects(name) for name in ["fc2.weight", "fc3.weight"]}
print("rank correlation with the actual ΔL of removing one weight (200 largest |w| per layer)")
print("layer        ΔL<0   |−ḡw|   ½Fw²   −ḡw   −ḡw+½Fw²")
correlation = {}
for name, e in effects.items():
    predictors = {
        "|−ḡw|": e["first"].abs(),
        "½Fw²": e["second"],
        "−ḡw": e["first"],
        "−ḡw+½Fw²": e["first"] + e["second"],
    }
    correlation[name] = {k: spearman(v, e["actual"]) for k, v in predictors.items()}
    below = (e["actual"] < 0).double().mean().item()
    print(f"{name:11s} {below:5.0%} " + " ".join(f"{v:6.2f}" for v in correlation[name].values()))
# How big is the first term against the second, with the empirical Fisher in the second?
first_over_second = {
    name: (e["first"].abs().mean() / e["second"].mean()).item() for name, e in effects.items()
}
print(
    "mean |−ḡw| / mean ½Fw²:",
    ", ".join(f"{n} {r:.0f}×" for n, r in first_over_second.items()),
)

# %% jupyter={"source_hidden": true}
# The notebook's own check (hidden: it would give the Predict answer away).
assert (effects["fc2.weight"]["actual"] < 0).double().mean() > 0.15
assert correlation["fc2.weight"]["−ḡw+½Fw²"] > correlation["fc2.weight"]["|−ḡw|"] + 0.4

# %% [markdown]
# **Interpretation.** A large share of the largest weights (about a third in fc2, a fifth in fc3)
# *lower* the loss on these digits when removed alone: at a minimum of the *average*
# loss, a finite batch still has a slope, and half the directions go downhill. The signed
# prediction ranks the actual changes well (about 0.9 in fc2), the unsigned size $|{-\bar g
# w}|$ barely at all (about 0.2 in fc2): taking $|\cdot|$ discards exactly the information that
# tells a helpful removal from a harmful one. With the empirical Fisher in the second term
# the first term looks dominant (the ratio line above), so adding $\tfrac12Fw^2$ changes
# little in fc2. That ratio is not to be trusted yet: the next section shows that $F$ is
# many times smaller than the true curvature $H$ on these training digits, and in fc3, where
# $H$ is computed, the two terms are of comparable size. In fc3 the signed prediction with
# $F$ is weaker (about
# 0.7), which the next section explains.
#
# What it does not mean: that signed scores make better *pruning* criteria. Removing many
# weights at once is not the sum of single removals, and the sign is the noisiest part of
# $\bar g$ (see the SNR above). Both $\bar g$ and the actual changes above were measured on
# the same 1,000 digits. Here are the same 200 removals per layer on the next 1,000
# training digits:

# %%
other = train.take(2000)
other_images, other_labels = other.images[1000:], other.labels[1000:]
with torch.no_grad():
    other_hidden1 = torch.relu(model.fc1(other_images.flatten(1)))
other_mean = {
    name: s.mean for name, s in gp.gradient_stats(model, [(other_images, other_labels)]).items()
}
elsewhere = {}
print("layer        same sign of ḡ   rank correlation with the ΔL on the other digits of:")
print("                               the ΔL on the first    −ḡw+½Fw² from the first")
for name, e in effects.items():
    flat = dict(model.named_parameters())[name].data.view(-1)
    base, changes = loss_from_hidden(other_hidden1, other_labels), []
    for i in e["index"].tolist():
        saved = flat[i].item()
        flat[i] = 0.0
        changes.append(loss_from_hidden(other_hidden1, other_labels) - base)
        flat[i] = saved
    changes = torch.tensor(changes, dtype=torch.float64)
    first_mean = stats["trained"][name].mean.flatten()[e["index"]]
    elsewhere[name] = {
        "same sign": (first_mean.sign() == other_mean[name].flatten()[e["index"]].sign())
        .double()
        .mean()
        .item(),
        "actual": spearman(e["actual"], changes),
        "signed": spearman(e["first"] + e["second"], changes),
    }
    print(
        f"{name:11s} {elsewhere[name]['same sign']:10.0%}   {elsewhere[name]['actual']:18.2f}"
        f"   {elsewhere[name]['signed']:20.2f}"
    )

# %% jupyter={"source_hidden": true}
# Rendered from the values above (hidden: it is prose).
display(
    Markdown(
        "On other digits the sign of $\\bar g$ agrees for "
        + " and ".join(f"{v['same sign']:.0%}" for v in elsewhere.values())
        + " of these weights (fc2, fc3; a coin gives 50%), the same removals' changes rank "
        "against the first digits' changes at "
        + " and ".join(f"{v['actual']:.2f}" for v in elsewhere.values())
        + ", and the signed prediction from the first digits ranks them at "
        + " and ".join(f"{v['signed']:.2f}" for v in elsewhere.values())
        + (
            ". Which single removals lower the loss depends on the digits that measure it: "
            "the signed term's high correlation above holds on the batch that computed both "
            "$\\bar g$ and $\\Delta L$, not beyond it."
            if max(v["signed"] for v in elsewhere.values()) < 0.5
            else "."
        )
    )
)

# %% [markdown]
# ## Fisher is not the Hessian: when OBD's shortcut holds
#
# Optimal Brain Damage (LeCun et al., 1990) uses the Hessian diagonal $H$. Our `fisher`
# criterion substitutes $E[g^2]$, the *empirical* Fisher. For cross-entropy on the output
# layer the two differ in a telling way. With class probabilities $p$ and one-hot label
# $y$, per digit:
#
# - Hessian w.r.t. a logit: $p_c(1-p_c)$, from the model's *own* uncertainty;
# - empirical Fisher: $(p_c - y_c)^2$, from the model's *error* on this label.
#
# They agree on average only when labels look like draws from the model's own $p$, that is
# near a minimum where the model is calibrated. On digits the network has memorised,
# $p_c \approx 1 - \varepsilon$ for the true class, so $H \approx \varepsilon$ but
# $F \approx \varepsilon^2$: the empirical Fisher is far too small.
#
# **Predict.** fc3 has only 1,000 weights, so its exact Hessian (1,000 × 1,000) is cheap with
# `torch.func.hessian`. On the *training* digits (loss ≈ 0.003), is the median of $F/H$
# nearer 1 or nearer 0? And on held-out validation digits?


# %%
def fc3_hessian_diagonal(digits) -> torch.Tensor:
    """Exact diagonal of the Hessian of the mean loss w.r.t. fc3.weight, shaped (10, 100).

    ``last_layer_hessian`` runs ``torch.func.hessian`` on the last layer (1,000 × 1,000);
    notebook 05 uses the same function.
    """
    return last_layer_hessian(model, digits.images, digits.labels).diagonal().reshape(10, 100)


held_out = validation.take(1000)
fisher_vs_hessian, hessian_diagonal = {}, {}
fig, ax = plt.subplots(figsize=(5, 4))
for (label, digits), marker in zip(
    [("training digits", scoring), ("validation digits", held_out)], (".", "x")
):
    H = hessian_diagonal[label] = fc3_hessian_diagonal(digits)
    Fe = gp.gradient_stats(model, [(digits.images, digits.labels)])["fc3.weight"].sq_mean
    ax.loglog(H.flatten(), Fe.flatten(), marker, markersize=3, alpha=0.6, label=label)
    with torch.no_grad():
        loss = F.cross_entropy(model(digits.images), digits.labels).item()
    fisher_vs_hessian[label] = (Fe / H).median().item()
    print(
        f"{label:17s} loss {loss:.3f}: median F/H {fisher_vs_hessian[label]:.2f}, "
        f"rank correlation {spearman(Fe.flatten().double(), H.flatten().double()):.2f}"
    )
low, high = ax.get_xlim()
ax.plot([low, high], [low, high], "k--", linewidth=1, label="F = H")
ax.set_xlabel("exact Hessian diagonal H (torch.func)")
ax.set_ylabel("empirical Fisher F = E[g²]")
ax.set_title("fc3 of the trained LeNet-300-100, one dot per weight")
ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1))
plt.show()

# %% jupyter={"source_hidden": true}
# The notebook's own check (hidden: it would give the Predict answer away).
assert fisher_vs_hessian["training digits"] < 0.3 < fisher_vs_hessian["validation digits"]

# %% [markdown]
# **Interpretation.** On the digits it was trained on, the network is so sure that the
# empirical Fisher is about 25× smaller than the Hessian (median F/H 0.04); on held-out
# digits, where it still makes mistakes, the two are close (0.89). In the figure the bulk of
# the training digits' dots lie below the line $F = H$, the validation digits' on it; the few
# weights with tiny curvature fall below it for both, as $F \propto \varepsilon^2$ while
# $H \propto \varepsilon$ predicts. Both rank the
# weights similarly (correlation ≈ 0.9), so a *ranking* inside one layer survives the substitution; the
# *balance* between the first- and second-order terms does not.
#
# With the exact Hessian the signed second-order prediction for fc3's removals is nearly
# perfect:

# %%
e = effects["fc3.weight"]
H_train = hessian_diagonal["training digits"].flatten()[e["index"]].double()
second_with_hessian = 0.5 * H_train * e["w"].square()
with_hessian = spearman(e["first"] + second_with_hessian, e["actual"])
print(
    f"fc3: −ḡw + ½Fw² {correlation['fc3.weight']['−ḡw+½Fw²']:.2f},  −ḡw + ½Hw² {with_hessian:.2f}"
)
ratio_with_hessian = (e["first"].abs().mean() / second_with_hessian.mean()).item()
display(
    Markdown(
        "And the balance of the two terms in fc3: the first term is "
        f"{first_over_second['fc3.weight']:.0f}× the second with $F$, but "
        f"{ratio_with_hessian:.1f}× with $H$, so with the true curvature the two terms "
        "are comparable and neither may be dropped. fc2's "
        f"{first_over_second['fc2.weight']:.0f}× rests on $F$ too; its exact Hessian "
        "(30,000 × 30,000) is too large to compute here, so how far $F$ falls short of $H$ "
        "in fc2 is not measured, and the ratio is an upper estimate."
    )
)

# %% jupyter={"source_hidden": true}
# The notebook's own check (hidden, like the others).
assert with_hessian > correlation["fc3.weight"]["−ḡw+½Fw²"] + 0.1

# %% [markdown]
# The Taylor expansion itself is fine; the empirical Fisher is the weak link on memorised
# data. This is one reason why scoring a trained network with its own training digits is
# delicate, and why notebook 02 tries softening the outputs (a temperature) when scoring.

# %% [markdown]
# ## Pictures: where the first layer's gradient lives
#
# Each first-layer weight connects one of 784 pixels to one of 300 hidden units. Averaging
# over the hidden units gives one number per pixel, a 28×28 picture.
#
# **Predict.** Border pixels have the same value in every digit (background). Will their
# weights have large or small gradient variance, compared with the centre?

# %%
s1 = stats["trained"]["fc1.weight"]
gp.plots.images(
    {
        "mean |ḡ| per pixel": s1.mean.abs().mean(0).reshape(28, 28),
        "mean Var[g] per pixel": s1.var.mean(0).reshape(28, 28),
    }
)

# %%
var_image = s1.var.mean(0).reshape(28, 28)
centre, border = var_image[7:21, 7:21].mean().item(), var_image[:4].mean().item()
print(f"gradient variance: centre {centre:.2e}, top border {border:.2e} ({centre / border:.1f}×)")

# %% jupyter={"source_hidden": true}
# The notebook's own check (hidden: it would give the Predict answer away).
assert centre > 2 * border

# %% [markdown]
# **Interpretation.** The variance is about 8.5 times larger in the centre, where digits
# differ. Border weights still get *some* gradient (a background pixel is a constant
# −0.42 after normalisation, not 0), but that constant input carries no information about
# the digit, which is why every criterion ends up pruning the border first. The picture does
# not say which centre weights matter: it averages over 300 hidden units.

# %% [markdown]
# ## Back to the pruned network
#
# The opening asked why taylor, built from the loss's gradient, lost to magnitude. This
# notebook found three weaknesses of its score. On a trained network $\bar g$ is mostly sampling noise, so
# $|\bar g w|$ ranks weights largely by chance; taking $|\cdot|$ throws away the sign that
# says whether a removal helps the scoring digits (on other digits that sign is noise too);
# and the first term is only half the story: in fc3 the
# second term $\tfrac12 H w^2$ is of comparable size, and the empirical Fisher that stands in
# for $H$ understates it on memorised digits. These say why taylor is a poor guide, not yet
# why magnitude, which never looks at the loss, is a better one: notebook 05 finds that
# $|w|$ predicts single removals no better, and turns to what decides when many weights go
# at once. Notebook 02 measures how unstable the rankings are, 03 and 04 prune and retrain
# with every criterion, and 05 adds the cross terms of the curvature (Optimal Brain
# Surgeon) and the one-shot methods that descend from it.

# %% [markdown]
# ## Takeaways
#
# - Pruning is three calls (`gp.trained`, `gp.prune`, `gp.evaluate`); after training,
#   magnitude can beat a criterion built from the gradient, and the gradient's statistics
#   show what weakens that criterion. The batch gradient is the mean of per-sample gradients; their second moment
#   $E[g^2]$ (empirical Fisher) and variance come almost for free from the same pass.
# - On a trained network $\bar g$ sits at the noise floor ($\bar g^2/E[g^2] \approx 1/N$)
#   while the variance stays large: first-order scores of a trained net measure mostly
#   sampling noise; the sign that $|\cdot|$ throws away says whether a removal helps only
#   the digits that measured it.
# - OBD needs the Hessian; the empirical Fisher approximates it only where the model's
#   confidence matches its accuracy. On memorised training digits it is ~25× too small.
