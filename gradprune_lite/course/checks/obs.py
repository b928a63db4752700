"""Exercise 7: Optimal Brain Surgeon on a layer, from per-sample gradients to the pruned weights.

The references never use the OBS formulas the student writes: per-sample gradients come
from ``torch.func``, and each OBS step is the minimiser of ½ δwᵀ H δw under the constraints
"δw_q = −w_q and every weight removed before stays 0", solved as one KKT linear system.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import func, nn

from ...experiment.models import lenet_300_100
from ._common import call, check_tensor, close, self_check


def kkt_step(hessian: torch.Tensor, w: torch.Tensor, q: int, removed=()) -> torch.Tensor:
    """argmin ½ δwᵀ H δw subject to w_q + δw_q = 0 and δw_s = 0 for s in ``removed``.

    Solved as the KKT system [H Eᵀ; E 0] [δw; μ] = [0; c], where the rows of E pick the
    constrained coordinates (no H⁻¹ formula). hessian: (P, P); w: (P,); returns δw: (P,).
    """
    fixed = [q, *[s for s in removed if s != q]]
    n, m = len(w), len(fixed)
    picks = torch.zeros(m, n, dtype=hessian.dtype)
    picks[torch.arange(m), torch.tensor(fixed)] = 1.0
    system = torch.zeros(n + m, n + m, dtype=hessian.dtype)
    system[:n, :n] = hessian
    system[:n, n:] = picks.T
    system[n:, :n] = picks
    rhs = torch.zeros(n + m, dtype=hessian.dtype)
    rhs[n] = -w[q]
    return torch.linalg.solve(system, rhs)[:n]


def reference_obs_prune(hessian: torch.Tensor, w: torch.Tensor, count: int):
    """OBS by KKT solves: each step removes the weight whose constrained step costs least.

    Returns (w after ``count`` removals, bool mask of the removed weights), both shaped (P,).
    """
    w, removed = w.clone(), []
    for _ in range(count):
        candidates = [q for q in range(len(w)) if q not in removed]
        steps = {q: kkt_step(hessian, w, q, removed) for q in candidates}
        q = min(candidates, key=lambda c: float(steps[c] @ hessian @ steps[c]))
        w = w + steps[q]
        w[q] = 0.0
        removed.append(q)
    pruned = torch.zeros(len(w), dtype=torch.bool)
    pruned[removed] = True
    return w, pruned


def _variant(hessian, w, count, *, saliency="obs", update=1.0, downdate=True):
    """The OBS loop with one deliberate mistake, to name what a wrong answer did."""
    inverse = torch.linalg.inv(hessian)
    w, pruned = w.clone(), torch.zeros(len(w), dtype=torch.bool)
    for _ in range(count):
        diagonal = {
            "obs": inverse.diagonal(),
            "hessian": hessian.diagonal(),  # H_qq where [H⁻¹]_qq belongs
            "obd": 1 / hessian.diagonal(),  # ½ w² H_qq, Optimal Brain Damage
        }[saliency]
        q = int((w.square() / (2 * diagonal)).masked_fill(pruned, float("inf")).argmin())
        w = w - update * w[q] / inverse[q, q] * inverse[:, q]
        w[q], pruned[q] = 0.0, True
        if downdate:
            inverse = inverse - torch.outer(inverse[:, q], inverse[q]) / inverse[q, q]
    return w, pruned


def _layer_problem(seed: int, size: int = 12, samples: int = 40):
    generator = torch.Generator().manual_seed(seed)
    g = torch.randn(samples, size, generator=generator, dtype=torch.float64)
    # Correlated gradients, so that the update (not only the choice) matters.
    g = g @ torch.randn(size, size, generator=generator, dtype=torch.float64) / size**0.5
    hessian = g.T @ g / samples + 1e-3 * torch.eye(size, dtype=torch.float64)
    return hessian, torch.randn(size, generator=generator, dtype=torch.float64)


def per_sample_fc3_reference(model: nn.Module, images: torch.Tensor, labels: torch.Tensor):
    """Per-sample gradients of each digit's own loss w.r.t. ``fc3.weight``, by torch.func.

    Returns (N, out·in), each row ``fc3.weight``'s gradient flattened row-major.
    """
    params = {n: p.detach() for n, p in model.named_parameters()}

    def loss(p, x, y):
        out = func.functional_call(model, p, (x[None],))
        return nn.functional.cross_entropy(out, y[None])

    grads = func.vmap(func.grad(loss), in_dims=(None, 0, 0))(params, images, labels)
    return grads["fc3.weight"].reshape(len(images), -1)


@self_check
def check_fc3_per_sample_gradients(fc3_per_sample_gradients: Callable) -> bool:
    """Check ``fc3_per_sample_gradients(model, images, labels) -> G`` shaped (N, 1000)."""
    model = lenet_300_100(seed=17)
    generator = torch.Generator().manual_seed(18)
    images = torch.randn(24, 1, 28, 28, generator=generator)
    labels = torch.randint(10, (24,), generator=generator)
    want = per_sample_fc3_reference(model, images, labels)
    got = call(fc3_per_sample_gradients, "fc3_per_sample_gradients", model, images, labels)
    got = check_tensor(got, want.shape, "G")
    if close(got, want, rtol=1e-4, atol=1e-7):
        return
    assert not close(got * len(images), want, rtol=1e-4, atol=1e-7), (
        "G is N times too small: use each digit's own loss, not the batch mean."
    )
    swapped = want.reshape(-1, 10, 100).transpose(1, 2).reshape(len(images), -1)
    assert not close(got, swapped, rtol=1e-4, atol=1e-7), (
        "Each row must be laid out like fc3.weight (10 × 100, row-major): outer(d_n, h_n)."
    )
    assert not close(got, -want, rtol=1e-4, atol=1e-7), (
        "Wrong sign: dℓ/dz = softmax(z) − onehot(y), not onehot(y) − softmax(z)."
    )
    raise AssertionError("G differs from torch.func's per-sample gradients of fc3.weight.")


@self_check
def check_damped_fisher(damped_fisher: Callable) -> bool:
    """Check ``damped_fisher(G, relative) -> H`` = GᵀG/N + relative·mean(diag GᵀG/N)·I."""
    generator = torch.Generator().manual_seed(19)
    g = torch.randn(6, 10, generator=generator, dtype=torch.float64)  # N < P: F is singular
    fisher = g.T @ g / len(g)
    eye = torch.eye(10, dtype=torch.float64)
    want = fisher + 0.01 * fisher.diagonal().mean() * eye
    got = check_tensor(call(damped_fisher, "damped_fisher", g.clone(), 0.01), (10, 10), "H")
    if close(got, want, rtol=1e-6, atol=1e-12):
        return
    assert not close(got, fisher, rtol=1e-6, atol=1e-12), (
        "No damping: with N < P, F = GᵀG/N is singular; add λI, λ = relative·mean(diag F)."
    )
    assert not close(got, fisher + 0.01 * eye, rtol=1e-6, atol=1e-12), (
        "λ is relative: multiply it by the mean of F's diagonal, so it scales with F."
    )
    assert not close(got, want * len(g), rtol=1e-6, atol=1e-12), (
        "Divide GᵀG by N: the Fisher is the mean of g gᵀ over the samples."
    )
    raise AssertionError("H differs from GᵀG/N + λI with λ = relative·mean(diag(GᵀG/N)).")


@self_check
def check_obs_prune(obs_prune: Callable) -> bool:
    """Check ``obs_prune(H, w, count) -> (w_new, pruned)``: ``count`` OBS steps, one at a time.

    Reference: each step is the constrained minimiser from a KKT solve over every remaining
    weight (earlier removals held at 0). Any exact method passes (inverse and rank-one
    downdate, a recomputed inverse, Cholesky, float32 inside).
    """
    for seed, count in ((20, 1), (21, 5)):
        hessian, w = _layer_problem(seed)
        want_w, want_pruned = reference_obs_prune(hessian, w, count)
        result = call(obs_prune, "obs_prune", hessian.clone(), w.clone(), count)
        assert isinstance(result, tuple) and len(result) == 2, (
            "obs_prune should return a pair (w_new, pruned)."
        )
        got_w = check_tensor(result[0], w.shape, "w_new")
        pruned = check_tensor(result[1], w.shape, "pruned")
        assert pruned.dtype == torch.bool, f"pruned should be a bool tensor, not {pruned.dtype}."
        assert int(pruned.sum()) == count, (
            f"pruned marks {int(pruned.sum())} weights; {count} were asked for."
        )
        # Loose enough for float32 inside (its inverse loses about 1e-4 here), far tighter
        # than any mistake below moves the weights.
        tolerance = {"rtol": 1e-3, "atol": 1e-5 * float(w.abs().max())}
        if torch.equal(pruned, want_pruned) and close(got_w, want_w, **tolerance):
            continue
        assert not torch.equal(got_w[~pruned], w[~pruned]), (
            f"{count} removal(s): the kept weights did not move; OBS also applies "
            "δw = −(w_q/[H⁻¹]_qq)·H⁻¹e_q, not only zeroing."
        )
        mistakes = {
            "hessian": "The saliency divides by [H⁻¹]_qq (the inverse's diagonal), not by H_qq.",
            "obd": "That is ½ w_q² H_qq (diagonal, OBD); OBS uses w_q²/(2[H⁻¹]_qq).",
            "sign": "Wrong sign of the update: δw = −(w_q/[H⁻¹]_qq)·H⁻¹e_q makes w_q + δw_q = 0.",
            "downdate": "After each removal, downdate H⁻¹ (or invert H without the removed rows "
            "and columns): without it, later updates move removed weights again.",
        }
        variants = {
            "hessian": _variant(hessian, w, count, saliency="hessian"),
            "obd": _variant(hessian, w, count, saliency="obd"),
            "sign": _variant(hessian, w, count, update=-1.0),
            "downdate": _variant(hessian, w, count, downdate=False),
        }
        for mistake, (wrong_w, wrong_pruned) in variants.items():
            # Kept weights only: whether a wrong answer re-zeroes removed ones is incidental.
            assert not (
                torch.equal(pruned, wrong_pruned)
                and close(got_w[~pruned], wrong_w[~pruned], **tolerance)
            ), mistakes[mistake]
        assert bool((got_w[pruned].abs() < tolerance["atol"]).all()), (
            "A removed weight is not 0 in w_new: set w_q = 0 after its update."
        )
        assert torch.equal(pruned, want_pruned), (
            f"{count} removal(s): a different weight was chosen; take the lowest "
            "w_q²/(2[H⁻¹]_qq) among the weights not yet removed."
        )
        raise AssertionError(
            f"{count} removal(s): the right weights, but w_new differs from the OBS update."
        )
