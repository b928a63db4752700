"""Exercise 1: the first-order Taylor score from gradient statistics."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ...core.criteria import score
from ...core.stats import gradient_stats
from ._common import call, check_same_keys, close, self_check
from ._tiny import tiny_batches, tiny_model


def ranks_like(got: dict, want: dict, rtol: float = 1e-4) -> bool:
    """True when ``got`` orders the weights of all layers together as ``want`` does.

    A score only ranks weights (a global threshold keeps the highest), so any strictly
    increasing function of the reference, the same for every layer, is the same score:
    (w·ḡ)² or 2|w·ḡ| for |w·ḡ|. Pooled over layers, sorted by the reference: ``got`` must
    never decrease, and must increase wherever the reference rises by more than ``rtol``
    (equal reference values, e.g. the zeros of dead units, may score anything equal).
    """
    names = sorted(want)
    reference = torch.cat([want[n].reshape(-1).double() for n in names])
    candidate = torch.cat([got[n].detach().reshape(-1).double() for n in names])
    if not torch.isfinite(candidate).all():
        return False
    order = torch.argsort(reference, stable=True)
    reference, candidate = reference[order], candidate[order]
    slack = 1e-6 * float(candidate.abs().max().clamp(min=1e-30))
    rises = reference[1:] > reference[:-1] * (1 + rtol) + 1e-30
    step = candidate[1:] - candidate[:-1]
    return bool((step >= -slack).all() and (step[rises] > 0).all())


@self_check
def check_taylor_score(taylor_score: Callable) -> bool:
    """Check ``taylor_score(weights, stats) -> dict name → score`` (first-order Taylor).

    ``weights``: dict name → weight tensor; ``stats``: dict name → ``gp.GradientStats``.
    Reference: ``gp.score(model, "taylor", batches)``, |w·ḡ|. Accepted too: any score that
    ranks the weights of all layers together in the same order (``ranks_like``), such as
    (w·ḡ)², since the task asks only for a score where higher means keep.
    """
    model, batches = tiny_model(), tiny_batches()
    stats = gradient_stats(model, batches)
    weights = {name: p.detach() for name, p in model.named_parameters() if name in stats}
    expected = score(model, "taylor", batches)
    result = call(taylor_score, "taylor_score", weights, stats)
    check_same_keys(result, expected, "taylor_score")
    if ranks_like(result, expected):
        return
    for name, want in expected.items():
        got, w, g = result[name].detach(), weights[name], stats[name].mean
        if close(got, want) or ranks_like({name: got}, {name: want}):
            continue
        assert not (close(got, w * g) or close(got, -w * g)), (
            f"{name}: the sign is missing. A score ranks loss *changes*: take the size, |·|."
        )
        assert not close(got, -want), f"{name}: higher must mean keep; you ranked the other way."
        assert not close(got, g.abs()), f"{name}: that is |ḡ| alone; the weight w is missing."
        assert not close(got, w.abs()), f"{name}: that is |w| (magnitude); the gradient is missing."
        assert not close(got, (w * stats[name].sq_mean.sqrt()).abs()), (
            f"{name}: you used sqrt(E[g²]); the first-order term uses the mean gradient ḡ."
        )
        assert not close(got, 0.5 * w.square() * stats[name].sq_mean), (
            f"{name}: that is ½w²E[g²], the second-order term; the first-order one is wanted."
        )
        raise AssertionError(
            f"{name}: does not rank the weights as |w·ḡ| does; use weights[name] and "
            "stats[name].mean."
        )
    raise AssertionError(
        "Each layer alone ranks like |w·ḡ|, but not all layers together: use the same "
        "formula for every layer, with no per-layer scaling."
    )
