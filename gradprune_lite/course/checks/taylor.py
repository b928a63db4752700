"""Exercise 1: the first-order Taylor score from gradient statistics."""

from __future__ import annotations

from collections.abc import Callable

from ...core.criteria import score
from ...core.stats import gradient_stats
from ._common import call, check_same_keys, close, self_check
from ._tiny import tiny_batches, tiny_model


@self_check
def check_taylor_score(taylor_score: Callable) -> bool:
    """Check ``taylor_score(weights, stats) -> dict name → score`` (first-order Taylor).

    ``weights``: dict name → weight tensor; ``stats``: dict name → ``gp.GradientStats``.
    Reference: ``gp.score(model, "taylor", batches)``.
    """
    model, batches = tiny_model(), tiny_batches()
    stats = gradient_stats(model, batches)
    weights = {name: p.detach() for name, p in model.named_parameters() if name in stats}
    expected = score(model, "taylor", batches)
    result = call(taylor_score, "taylor_score", weights, stats)
    check_same_keys(result, expected, "taylor_score")
    for name, want in expected.items():
        got, w, g = result[name].detach(), weights[name], stats[name].mean
        if close(got, want):
            continue
        assert not (close(got, w * g) or close(got, -w * g)), (
            f"{name}: the sign is missing. A score ranks loss *changes*: take the size, |·|."
        )
        assert not close(got, g.abs()), f"{name}: that is |ḡ| alone; the weight w is missing."
        assert not close(got, w.abs()), f"{name}: that is |w| (magnitude); the gradient is missing."
        assert not close(got, (w * stats[name].sq_mean.sqrt()).abs()), (
            f"{name}: you used sqrt(E[g²]); the first-order term uses the mean gradient ḡ."
        )
        assert not close(got, 0.5 * w.square() * stats[name].sq_mean), (
            f"{name}: that is ½w²E[g²], the second-order term; the first-order one is wanted."
        )
        raise AssertionError(
            f"{name}: differs from the first-order Taylor score by up to "
            f"{float((got - want).abs().max()):.3g}; use weights[name] and stats[name].mean."
        )
