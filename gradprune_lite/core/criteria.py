"""Importance criteria: dict name → score tensor shaped like the weight, higher = keep.

Each criterion is one small function of a ``ScoringContext`` and reads off the parts of
the gradient decomposition it needs. The Taylor decomposition of the loss change when a
weight w is removed (set to 0) is

    ΔL ≈ −ḡ·w + ½·F·w²,

whose first-order term gives ``taylor`` (and ``snip``) and whose second-order term, with
the diagonal empirical Fisher F = E[g²], gives ``fisher`` (Optimal Brain Damage).

Every criterion is one ``Criterion`` record in ``CRITERIA`` (``core/registry.py``): its
function, its options with their defaults, whether it needs data, and the hooks of criteria
that move weights (``obs``) or keep state across rounds. The built-ins are registered in one
table at the end of this file, ``obs`` among them. Register your own with a decorator,
naming the options it reads so that ``gp.score`` can reject a misspelt one::

    from gradprune_lite.core.criteria import DATA_OPTIONS

    @gp.register_criterion("snr", options=DATA_OPTIONS)
    def snr(ctx):
        return {name: s.snr for name, s in ctx.stats.items()}

Data-driven criteria are computed in eval mode and leave the model as it was (see
``_scoring.py``): Dropout is off and BatchNorm uses its running statistics, so two calls on
the same data give identical scores.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._scoring import (
    check_batch_list,
    grad_enabled,
    prepare_batch,
    resolve_reduction,
    sample_dims,
    scoring_state,
    total_of_sample_losses,
)
from .distributed import all_reduce_sums
from .layers import prunable_weights
from .registry import Criterion, Registry, ScoringContext, declared_options
from .second_order import DEFAULTS as OBS_DEFAULTS
from .second_order import obs_prune, obs_scores

Scores = dict[str, torch.Tensor]

#: The registry: criterion name → ``Criterion`` record (reads as name → function).
CRITERIA = Registry("criterion", "Add your own with @gp.register_criterion('name').")
#: The options of every criterion built on ``gradient_stats``, with their defaults (see
#: its arguments: cross-entropy, samples along dim 0, the loss's reduction sniffed, the
#: default memory bound).
DATA_OPTIONS = {"loss_fn": None, "sample_dim": 0, "reduction": None, "max_elements": None}


def register_criterion(
    name: str,
    fn: Callable[[ScoringContext], Scores] | None = None,
    *,
    options: Iterable[str] | Mapping[str, Any] | None = None,
    needs_data: bool = True,
    weight_update: Callable | None = None,
    make_state: Callable | None = None,
):
    """Add a criterion to ``CRITERIA``; usable as ``@register_criterion("name")`` or a call.

    ``fn(ctx: ScoringContext) -> dict name → tensor shaped like the weight`` (higher = keep).

    Args:
        options: the options ``fn`` reads from ``ctx.options``, as a dict name → default
            (``gp.score`` fills in the defaults) or as names only (``fn`` keeps its own
            defaults); ``gp.score`` rejects any other option. A criterion that uses
            ``ctx.stats`` takes ``DATA_OPTIONS``. Left out, every option passes unchecked.
        needs_data: whether ``fn`` reads batches (for the docs and ``gp.prune``'s checks).
        weight_update, make_state: see ``gp.core.registry.Criterion``; ``make_state`` is
            the hook of criteria that keep state across rounds (movement pruning).

    Re-registering a name replaces it. Returns ``fn``.
    """
    declared = declared_options(options)

    def register(function: Callable) -> Callable:
        CRITERIA.add(Criterion(name, function, declared, needs_data, weight_update, make_state))
        return function

    return register if fn is None else register(fn)


def score(model: nn.Module, criterion: str, batches=None, **options) -> Scores:
    """Score every prunable weight of ``model`` by ``criterion``.

    Args:
        model: any model with ``nn.Linear`` / ``nn.Conv2d`` layers, on any device.
        criterion: a name in ``gp.CRITERIA``: random, magnitude, gradient, taylor, snip,
            fisher, grasp, synflow, or one you registered.
        batches: iterable of ``(inputs, targets)``; needed by the data-driven criteria.
        **options: per-criterion options, checked against what the criterion declares:
            ``seed`` (random); ``loss_fn``, ``sample_dim``, ``reduction``, ``max_elements``
            (the data criteria, see ``gp.gradient_stats``); ``temperature`` (grasp);
            ``input_shape`` (synflow, if no batches).

    Returns:
        dict name → float tensor shaped like the weight, on the weight's device; higher
        means more important (keep).

    Raises:
        ValueError: an unknown criterion, or an option the criterion does not take.
    """
    record = CRITERIA.record(criterion)
    options = record.with_defaults(options)
    state = record.make_state(model) if record.make_state is not None else None
    try:
        return score_with(record, model, batches, options, state)
    finally:
        close_state(state)


def score_with(record: Criterion, model: nn.Module, batches, options: dict, state) -> Scores:
    """``record``'s scores with ``options`` already checked and filled (what ``score`` and
    ``gp.prune``'s rounds share)."""
    if batches is not None:
        check_batch_list(batches)
    ctx = ScoringContext(model, batches, options, state)
    scores = record.function(ctx)
    if not isinstance(scores, dict):
        raise ValueError(
            f"criterion {record.name!r} returned a {type(scores).__name__}; it must return a "
            "dict name -> tensor shaped like the weight."
        )
    missing = [name for name in ctx.weights if not isinstance(scores.get(name), torch.Tensor)]
    if missing:
        raise ValueError(
            f"criterion {record.name!r} returned no score tensor for {missing}; it must return "
            f"a dict with a tensor shaped like each prunable weight: {list(ctx.weights)}."
        )
    return {name: scores[name].detach() for name in ctx.weights}


def close_state(state) -> None:
    """Call ``state.close()`` if the state has one (a stateful criterion's hooks)."""
    close = getattr(state, "close", None)
    if callable(close):
        close()


_MIX, _OFFSET = 0x9E3779B97F4A7C15, 0x5DEECE66D


def random_scores(ctx: ScoringContext) -> Scores:
    """Uniform random scores: the baseline every criterion must beat.

    The stream is seeded from ``seed`` through a mixing constant, never with ``seed``
    itself: a model initialised after ``torch.manual_seed(seed)`` draws its weights from
    that very stream, and "random" scores would then track the initial weights' signs.
    """
    seed = int(ctx.options.get("seed", 0))
    generator = torch.Generator().manual_seed((seed * _MIX + _OFFSET) % 2**63)
    return {
        name: torch.rand(w.shape, generator=generator).to(device=w.device, dtype=w.dtype)
        for name, w in ctx.weights.items()
    }


def magnitude_scores(ctx: ScoringContext) -> Scores:
    """|w|: traditional magnitude pruning (Han et al., 2015)."""
    return {name: w.abs() for name, w in ctx.weights.items()}


def gradient_scores(ctx: ScoringContext) -> Scores:
    """|ḡ|: how strongly the loss pulls on a weight, whatever its size."""
    return {name: s.mean.abs() for name, s in ctx.stats.items()}


def taylor_scores(ctx: ScoringContext) -> Scores:
    """|w·ḡ|: the first-order Taylor term of the loss change when w is removed."""
    return {name: (ctx.weights[name] * s.mean).abs() for name, s in ctx.stats.items()}


def snip_scores(ctx: ScoringContext) -> Scores:
    """Connection sensitivity |w·ḡ| / Σ|w·ḡ| (Lee et al., ICLR 2019)."""
    raw = taylor_scores(ctx)
    total = sum(s.sum() for s in raw.values())
    return {name: s / total.clamp(min=torch.finfo(s.dtype).tiny) for name, s in raw.items()}


def fisher_scores(ctx: ScoringContext) -> Scores:
    """½·w²·E[g²]: the second-order Taylor term with the empirical Fisher (OBD)."""
    return {name: 0.5 * ctx.weights[name].square() * s.sq_mean for name, s in ctx.stats.items()}


def grasp_scores(ctx: ScoringContext) -> Scores:
    """GraSP (Wang et al., ICLR 2020): keep weights whose removal would cut gradient flow.

    GraSP removes the weights with the largest S = −w ⊙ Hg, where g and H are the gradient
    and Hessian of the mean loss ``loss_fn(model(x) / T, y)`` on temperature-scaled outputs
    (T = ``temperature``, default 200; ``loss_fn`` defaults to cross-entropy and may reduce
    by mean, sum or none, as for ``gp.gradient_stats``). Higher-means-keep is w ⊙ Hg.
    Scored in eval mode; the model is left as it was. Under ``torch.distributed`` g and Hg
    are summed over the ranks' shards (both are sums over samples), so every rank gets
    the scores of all ranks' data.
    """
    model = ctx.model
    temperature = float(ctx.options.get("temperature", 200.0))
    loss_fn = ctx.options.get("loss_fn") or F.cross_entropy
    dims = sample_dims(ctx.options.get("sample_dim", 0))
    names = list(ctx.weights)
    weights = list(prunable_weights(model).values())
    derived = [name for name, w in zip(names, weights) if not isinstance(w, nn.Parameter)]
    if derived:
        raise ValueError(
            f"grasp differentiates parameters, but {derived} are computed from others "
            "(torch.nn.utils.prune's weight_orig, or a parametrization). Make the pruning "
            "permanent first: torch.nn.utils.prune.remove(module, 'weight')."
        )
    device = weights[0].device

    def scaled_loss(outputs, targets):
        return loss_fn(outputs / temperature, targets)

    with scoring_state(model), grad_enabled():
        batches = []
        for inputs, targets in ctx.require_batches():
            inputs, targets, n = prepare_batch(inputs, targets, device, dims)
            if n:
                batches.append((inputs, targets, n))
        # Under DDP the mean is over all ranks' samples: Σ ℓ_n / N and H·g are sums over
        # samples, so each rank's part is summed over ranks (a no-op in one process).
        (count,) = all_reduce_sums([], [sum(n for _, _, n in batches)])
        if count == 0:
            raise ValueError("grasp needs data, but batches yielded no samples.")
        reduction = ctx.options.get("reduction")
        for inputs, targets, _n in batches:
            reduction = resolve_reduction(model, scaled_loss, inputs, targets, dims, reduction)
            if reduction is not None:
                break
        for p in model.parameters():
            p.requires_grad_(False)
        for w in weights:
            w.requires_grad_(True)

        def mean_loss_part(inputs, targets, n):
            """This batch's share of the mean loss over all samples: Σ_batch ℓ_n / N."""
            outputs = model(inputs)
            return total_of_sample_losses(scaled_loss(outputs, targets), n, reduction) / count

        g_mean = [torch.zeros_like(w) for w in weights]
        for batch in batches:
            for acc, g in zip(g_mean, torch.autograd.grad(mean_loss_part(*batch), weights)):
                acc += g
        all_reduce_sums(g_mean)
        hg = [torch.zeros_like(w) for w in weights]
        for batch in batches:
            grads = torch.autograd.grad(mean_loss_part(*batch), weights, create_graph=True)
            dot = sum((g * g0).sum() for g, g0 in zip(grads, g_mean))
            for acc, h in zip(hg, torch.autograd.grad(dot, weights)):
                acc += h
        all_reduce_sums(hg)
    return {name: (w.detach() * h) for name, w, h in zip(names, weights, hg)}


def _synflow_input_shape(ctx: ScoringContext) -> tuple[int, ...]:
    shape = ctx.options.get("input_shape")
    if shape is not None:
        return tuple(shape)
    if ctx.batches is None:
        raise ValueError(
            "synflow is data-free but needs the input shape: pass input_shape=(1, 28, 28) "
            "(one sample, without the batch dimension) or any batches to take it from."
        )
    inputs, _ = next(iter(ctx.batches))
    return tuple(inputs.shape[1:])


def synflow_scores(ctx: ScoringContext) -> Scores:
    """SynFlow (Tanaka et al., NeurIPS 2020): |w ⊙ ∂R/∂w| with R = 1ᵀ(∏|W|)1, data-free.

    Computed on a copy of the model with every parameter replaced by its absolute value
    and an all-ones input; the model itself is untouched. Pruned (zero) weights stay zero,
    so calling it inside ``gp.prune`` with many rounds gives SynFlow's iterative loop.
    The copy runs in float32 on the model's device (MPS has no float64). R is a product
    over the layers, so a deep network can overflow float32; then, and only then, the
    copy is run again in float64 on the CPU (every CPU has it) and the scores are moved
    back. One host sync either way. Data-free and deterministic, so under
    ``torch.distributed`` every rank gets the same scores with no communication.
    """
    shape = _synflow_input_shape(ctx)
    weight = next(iter(ctx.weights.values()))
    dtype = torch.promote_types(weight.dtype, torch.float32)
    total, raw = _synflow_raw(ctx, shape, dtype, weight.device)
    largest = torch.stack([total, *(r.max() for r in raw)])
    if dtype != torch.float64 and not bool(torch.isfinite(largest).all()):
        _, raw = _synflow_raw(ctx, shape, torch.float64, torch.device("cpu"))
        raw = [r.to(weight.device) for r in raw]
        largest = torch.stack([r.max() for r in raw])
    # The ranking only needs relative sizes: the largest score becomes 1.
    scale = largest[-len(raw) :].max()
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return {name: (r / scale).to(ctx.weights[name].dtype) for name, r in zip(ctx.weights, raw)}


def _synflow_raw(ctx: ScoringContext, shape, dtype, device) -> tuple[torch.Tensor, list]:
    """R and |w ⊙ ∂R/∂w| per weight, on a |·| copy of the model in ``dtype`` on ``device``."""
    with grad_enabled():
        probe = copy.deepcopy(ctx.model).to(device=device, dtype=dtype)
    probe.eval()
    with torch.no_grad():
        for p in itertools.chain(probe.parameters(), probe.buffers()):
            if p.is_floating_point():
                p.abs_()
    params = prunable_weights(probe)  # keyed like ctx.weights, also behind a wrapper
    weights = [params[name] for name in ctx.weights]
    for p in probe.parameters():
        p.requires_grad_(False)
    for w in weights:
        w.requires_grad_(True)
    with grad_enabled():
        ones = torch.ones((1, *shape), dtype=dtype, device=device)
        total = probe(ones).sum()
        grads = torch.autograd.grad(total, weights)
    return total.detach(), [(w.detach() * g).abs() for w, g in zip(weights, grads)]


#: The built-in criteria, in the order they are listed (``gp.CRITERIA``, the comparison, the
#: docs). Options map to their defaults, which ``score`` fills in.
for _record in (
    Criterion("random", random_scores, {"seed": 0}, needs_data=False),
    Criterion("magnitude", magnitude_scores, {}, needs_data=False),
    Criterion("gradient", gradient_scores, DATA_OPTIONS),
    Criterion("taylor", taylor_scores, DATA_OPTIONS),
    Criterion("snip", snip_scores, DATA_OPTIONS),
    Criterion("fisher", fisher_scores, DATA_OPTIONS),
    Criterion(
        "grasp",
        grasp_scores,
        {"loss_fn": None, "temperature": 200.0, "sample_dim": 0, "reduction": None},
    ),
    Criterion("synflow", synflow_scores, {"input_shape": None}, needs_data=False),
    Criterion("obs", obs_scores, OBS_DEFAULTS, weight_update=obs_prune),
):
    CRITERIA.add(dataclasses.replace(_record, options=declared_options(_record.options)))
del _record
