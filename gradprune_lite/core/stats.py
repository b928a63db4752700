"""Gradient decomposition: mean, second moment and variance of per-sample gradients.

The batch gradient is the mean of per-sample gradients g_n (the gradient of sample n's
own loss). For every prunable weight we accumulate, in at least float32,

* ``mean``    ḡ      = (1/N) Σ_n g_n            (the ordinary batch gradient),
* ``sq_mean`` E[g²]  = (1/N) Σ_n g_n²           (the diagonal empirical Fisher),
* ``var``     Var[g] = E[g²] − ḡ²,

without ever looping over samples in Python. What one sample is, how the loss reduces
and how the model is kept unchanged are set out in ``_scoring.py``.

**Fast path** (plain ``nn.Linear`` and ``nn.Conv2d``). For a Linear layer with input X
(N×in) and output gradient D (N×out) the per-sample gradient is the outer product
g_n = d_n x_nᵀ, so Σ_n g_n = DᵀX and Σ_n g_n² = (D²)ᵀ(X²): one extra matmul of squares, no
N×out×in tensor. A Conv2d goes through ``unfold``: g_n = D_n U_nᵀ summed over positions,
which must be formed per sample before squaring, in chunks. A layer called several times,
or a weight shared by several layers, gets the per-sample *sum* over its calls before the
square.

**Fallback** (``_func_fallback.py``): wherever the fast path cannot be exact (see
``_recording.py``: a weight used outside its module's call, inputs that are not batch-first,
other layer types), per-sample gradients come from ``torch.func`` ``vmap(grad)``.

**One batch, step by step** (read in this order: ``_recorded_batches`` here, then
``_recording.record_batch``, then ``_fast_sums`` / ``_fallback_chunks`` here):

1. ``_scoring``: put the model in scoring state (eval mode, flags and buffers restored
   afterwards), move the batch to the weights' device, and find how the loss reduces over
   samples (``resolve_reduction``: the option, ``loss_fn.reduction``, or a measurement on
   two samples), so that the recorded backward is of the *sum* of per-sample losses.
2. ``_recording.record_batch``: one forward and one backward. Hooks keep each call's input
   x and output gradient d; counting the autograd graph's edges into each weight shows
   whether the calls are its only uses; an in-place op after a call triggers one more
   recording with that call's output cloned. Each weight is sorted into ``fast`` (exact
   from x and d) or ``fallback``.
3. Once, on the first batch of two or more samples, ``_check_first_sample_alone``
   recomputes sample 0's gradient from a pass of sample 0 alone and compares it with its
   share of the batch: samples that interact, or that do not lie along the sample
   dimension, fail loudly here instead of giving wrong statistics.
4. ``_fast_sums`` forms Σ_n g_n and Σ_n g_n² from x and d in chunks (``_call_per_sample``;
   a Linear called once on (N, in) inputs needs only a matmul of squares); ``_fallback_chunks`` streams
   ``torch.func`` per-sample gradients for the rest. Both add into float32-or-wider sums,
   divided by N at the end.

**When the fast path is exact.** For a plain ``nn.Linear`` / ``nn.Conv2d`` weight whose
only uses are its module's calls (checked by the edge count), whose calls see the samples
along dimension 0, and whose samples do not interact (checked on sample 0): then
g_n = Σ_calls d_n x_nᵀ exactly (up to float round-off), which the tests check against
``torch.func`` (``tests/test_stats.py``, ``tests/test_stats_property.py``). Anything else
takes the fallback, which is ``torch.func`` itself.

**Memory bound.** Every per-sample tensor formed in one chunk (per-sample gradients,
unfolded convolution inputs) holds at most ``max_elements`` floats
(``CHUNK_ELEMENTS`` = 16 M, 64 MB in float32), unless one sample alone is larger, in which
case a chunk is one sample.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ._func_fallback import func_per_sample_chunks
from ._recording import BatchRecord, fast_kind, record_batch
from ._scoring import (
    check_batch_list,
    check_loss_targets,
    checked_in_float32,
    grad_enabled,
    in_check_dtype,
    is_low_precision,
    prepare_batch,
    resolve_reduction,
    sample_dims,
    scoring_state,
)
from .distributed import all_reduce_named_sums
from .layers import prunable_groups

#: Upper bound on floats in one chunk of per-sample tensors (≈64 MB in float32).
CHUNK_ELEMENTS = 16_000_000
#: The former name of ``CHUNK_ELEMENTS``.
CONV_CHUNK_ELEMENTS = CHUNK_ELEMENTS

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Calls = list[tuple[nn.Module, torch.Tensor, torch.Tensor]]


@dataclass
class GradientStats:
    """Per-sample gradient statistics of one weight tensor.

    Attributes:
        mean: ḡ, shaped like the weight.
        sq_mean: E[g²], the diagonal empirical Fisher, shaped like the weight.
        count: N, the number of samples averaged.
    """

    mean: torch.Tensor
    sq_mean: torch.Tensor
    count: int

    @property
    def var(self) -> torch.Tensor:
        """Var[g] = E[g²] − ḡ² (population variance), clamped at 0 against round-off."""
        return (self.sq_mean - self.mean.square()).clamp_(min=0)

    @property
    def snr(self) -> torch.Tensor:
        """Signal-to-noise ratio ḡ² / Var[g]; large where samples agree on the gradient."""
        return self.mean.square() / self.var.clamp(min=torch.finfo(self.mean.dtype).tiny)


def accumulation_dtype(weight: torch.Tensor) -> torch.dtype:
    """float32 for float16/bfloat16/float32 weights, float64 for float64 ones."""
    return torch.promote_types(weight.dtype, torch.float32)


# ---------------------------------------------------------------------------------------
# Fast path: per-sample gradients from recorded inputs and output gradients.


def _conv_unfold(module: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """x: (n, C, H, W) → (n, G, C/G·kh·kw, L) patches, L output positions."""
    unfolded = F.unfold(
        x,
        module.kernel_size,
        dilation=module.dilation,
        padding=module.padding,
        stride=module.stride,
    )
    return unfolded.reshape(x.shape[0], module.groups, -1, unfolded.shape[-1])


def _call_per_sample(module: nn.Module, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Per-sample gradients of one call: x, d batch-first → (n, *weight.shape)."""
    n = x.shape[0]
    if fast_kind(module) == "conv2d":
        unfolded = _conv_unfold(module, x)
        grads = d.reshape(n, module.groups, module.out_channels // module.groups, -1)
        return torch.einsum("ngol,ngil->ngoi", grads, unfolded).reshape(n, *module.weight.shape)
    x = x.reshape(n, -1, x.shape[-1])
    d = d.reshape(n, -1, d.shape[-1])
    return torch.einsum("nto,nti->noi", d, x)


def _per_sample_floats(module: nn.Module, x: torch.Tensor, d: torch.Tensor) -> int:
    """Largest per-sample tensor one call forms: the gradient, the unfold, or x and d."""
    sizes = [module.weight.numel(), x[0].numel(), d[0].numel()]
    if fast_kind(module) == "conv2d":
        positions = d[0].numel() // module.out_channels
        sizes.append(module.weight[0].numel() * module.groups * positions)
    return max(sizes)


def _fast_chunks(calls: Calls, max_elements: int, dtype: torch.dtype) -> Iterator[torch.Tensor]:
    """Per-sample gradients summed over a weight's calls: (n_chunk, *weight.shape) chunks."""
    n = calls[0][1].shape[0]
    per_sample = max(_per_sample_floats(module, x, d) for module, x, d in calls)
    chunk = max(1, max_elements // per_sample)
    for start in range(0, n, chunk):
        total = None
        for module, x, d in calls:
            xs = x[start : start + chunk].to(dtype)
            ds = d[start : start + chunk].to(dtype)
            grads = _call_per_sample(module, xs, ds)
            total = grads if total is None else total.add_(grads)
        yield total


def _fast_sums(
    calls: Calls, max_elements: int, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ_n g_n and Σ_n g_n² of one weight from its recorded calls."""
    module, x, d = calls[0]
    if len(calls) == 1 and fast_kind(module) == "linear" and x.dim() == 2:
        x, d = x.to(dtype), d.to(dtype)
        return d.t() @ x, d.square().t() @ x.square()
    total = torch.zeros(module.weight.shape, dtype=dtype, device=x.device)
    total_sq = torch.zeros_like(total)
    for grads in _fast_chunks(calls, max_elements, dtype):
        total += grads.sum(0)
        total_sq += grads.square_().sum(0)
    return total, total_sq


# ---------------------------------------------------------------------------------------
# The pass shared by gradient_stats and per_sample_gradients.


@dataclass
class _Batch:
    record: BatchRecord
    inputs: torch.Tensor
    targets: torch.Tensor


def _recorded_batches(
    model: nn.Module,
    batches: Batches,
    loss_fn: LossFn | None,
    groups: dict[str, list[nn.Module]],
    sample_dim: int | tuple[int, int],
    reduction: str | None,
) -> Iterator[_Batch]:
    """Record every non-empty batch in scoring state (eval mode, restored afterwards)."""
    check_batch_list(batches)
    loss_fn = F.cross_entropy if loss_fn is None else loss_fn
    dims = sample_dims(sample_dim)
    device = next(iter(groups.values()))[0].weight.device
    clone_ids: set[int] = set()
    resolved = None
    checked = False
    with scoring_state(model):
        for inputs, targets in batches:
            inputs, targets, n = prepare_batch(inputs, targets, device, dims)
            if n == 0:
                continue
            check_loss_targets(loss_fn, targets, reduction)
            with grad_enabled():
                if resolved is None:
                    resolved = resolve_reduction(model, loss_fn, inputs, targets, dims, reduction)
                record = record_batch(
                    model, inputs, targets, n, loss_fn, resolved, groups, dims[0] == 0, clone_ids
                )
                if not checked and n >= 2 and record.fast:
                    check = (model, inputs, targets, n, loss_fn, resolved, groups, clone_ids)
                    _check_samples_independent(record, dims, *check)
                    checked = True
            yield _Batch(record, inputs, targets)


#: model → the structures (see ``_structure``) whose samples were found independent. Weak
#: keys: a deleted model leaves nothing behind.
_INDEPENDENT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _structure(model, record, dims, inputs, targets, loss_fn, reduction) -> tuple:
    """What decides whether samples interact: modules, parameter shapes and dtypes, the
    fast-path weights, the shape of one sample, and the loss (a weak reference: a new loss
    at a dead one's address is another key).
    """
    return (
        tuple((name, type(module)) for name, module in model.named_modules()),
        tuple((name, p.shape, p.dtype) for name, p in model.named_parameters()),
        tuple(sorted(record.fast)),
        (inputs.shape[1:], inputs.dtype, targets.shape[1:], targets.dtype, dims),
        weakref.ref(loss_fn),
        reduction,
    )


def _check_samples_independent(record, dims, model, inputs, targets, n, loss_fn, *rest) -> None:
    """``_check_first_sample_alone`` in float32 whatever the model's dtype, once per structure.

    A float16/bfloat16 model is checked on a float32 recording of the same batch (the
    model's own tensors hold float32 data meanwhile, then get theirs back): in bfloat16
    the round-off tolerance would be 0.5 and would accept samples that interact. Whether
    samples interact is a property of the model's structure and the loss, so a structure
    that passed is not checked again: the check cost a third of a LeNet-300-100 call.
    """
    try:
        structure = _structure(model, record, dims, inputs, targets, loss_fn, rest[0])
        if structure in _INDEPENDENT.get(model, ()):
            return
    except TypeError:  # a loss that takes no weak reference or no hash: check every call
        structure = None
    _check_in_float32(record, dims, model, inputs, targets, n, loss_fn, *rest)
    if structure is not None:
        _INDEPENDENT.setdefault(model, set()).add(structure)


def _check_in_float32(record, dims, model, inputs, targets, n, loss_fn, *rest) -> None:
    if not is_low_precision(model):
        first_target = targets.narrow(dims[1], 0, 1)
        _check_first_sample_alone(model, record, inputs[:1], first_target, loss_fn)
        return
    reduction, groups, clone_ids = rest
    inputs, targets = in_check_dtype(inputs), in_check_dtype(targets)
    fast_groups = {name: groups[name] for name in record.fast}
    with checked_in_float32(model):
        wide = record_batch(
            model, inputs, targets, n, loss_fn, reduction, fast_groups, True, set(clone_ids)
        )
        if wide.fast:
            first_target = targets.narrow(dims[1], 0, 1)
            _check_first_sample_alone(model, wide, inputs[:1], first_target, loss_fn)


def _check_first_sample_alone(
    model: nn.Module,
    record: BatchRecord,
    first_input: torch.Tensor,
    first_target: torch.Tensor,
    loss_fn: LossFn,
) -> None:
    """Raise unless sample 0's fast-path gradient equals its gradient computed alone.

    The fast path reads each sample's gradient off the batch pass, which assumes the
    samples are independent and lie along dimension 0. One extra forward/backward of one
    sample tests both (once per call, on the first batch): samples that interact (attention
    across dimension 0 of a sequence-first model, a contrastive loss) or time steps taken
    for samples give a different gradient. Round-off stays far below the tolerance.
    """
    names = list(record.fast)
    # The weight tensors each call used (recomputed per call under torch.nn.utils.prune).
    used: dict[str, dict[int, torch.Tensor]] = {name: {} for name in names}
    modules = {id(m): (name, m) for name in names for m, _, _ in record.fast[name]}

    def remember(name: str):
        def hook(module, args, output):
            used[name].setdefault(id(module.weight), module.weight)

        return hook

    handles = [module.register_forward_hook(remember(name)) for name, module in modules.values()]
    try:
        loss = loss_fn(model(first_input), first_target).sum()
    finally:
        for handle in handles:
            handle.remove()
    tensors = [(name, t) for name in names for t in used[name].values()]
    grads = torch.autograd.grad(loss, [t for _, t in tensors], allow_unused=True)
    norms = []  # per name: ‖got − expected‖, ‖got‖, ‖expected‖, read in one host sync
    for name in names:
        weight = record.fast[name][0][0].weight
        dtype = accumulation_dtype(weight)
        first = [(module, x[:1], d[:1]) for module, x, d in record.fast[name]]
        got = next(_fast_chunks(first, CHUNK_ELEMENTS, dtype))[0]
        expected = torch.zeros_like(got)
        for (owner, _), g in zip(tensors, grads):
            if owner == name and g is not None:
                expected += g.to(dtype)
        norms.append(torch.stack([(got - expected).norm(), got.norm(), expected.norm()]).float())
    measured = torch.stack(norms).tolist() if norms else []
    for name, (difference, *sizes) in zip(names, measured):
        weight = record.fast[name][0][0].weight
        tolerance = max(1e-3, 64 * torch.finfo(weight.dtype).eps)
        scale = max(sizes)
        if difference > tolerance * scale + 1e-30:
            raise ValueError(
                f"the gradient of sample 0 computed alone differs from its share of the batch "
                f"(relative difference {difference / scale:.3g} in {name!r}): the samples "
                "interact inside the model or the loss, or they are not along dimension 0. "
                "One sample must be one slice along sample_dim (a sequence-first model needs "
                "sample_dim=1) and must not depend on the other samples of the batch (no "
                "attention across the batch dimension, no loss that compares samples). A "
                "loss with class weights or ignore_index reduced by 'mean' also fails here: "
                "give it reduction='sum'."
            )


def _fallback_chunks(
    model: nn.Module,
    batch: _Batch,
    groups: dict[str, list[nn.Module]],
    loss_fn: LossFn | None,
    sample_dim: int | tuple[int, int],
    max_elements: int,
) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
    weights = {name: groups[name][0].weight for name in batch.record.fallback}
    derived = [name for name, weight in weights.items() if not isinstance(weight, nn.Parameter)]
    if derived:
        raise ValueError(
            f"{derived} are computed from other parameters (torch.nn.utils.prune's "
            "weight_orig, or a parametrization), and these layers need the torch.func "
            "fallback, which differentiates parameters only. Make the pruning permanent "
            "first: torch.nn.utils.prune.remove(module, 'weight')."
        )
    return func_per_sample_chunks(
        model,
        weights,
        batch.inputs,
        batch.targets,
        F.cross_entropy if loss_fn is None else loss_fn,
        sample_dims(sample_dim),
        max_elements,
    )


def _selected_groups(model: nn.Module, names: Iterable[str] | None) -> dict[str, list[nn.Module]]:
    groups = prunable_groups(model)
    if names is None:
        return groups
    wanted = list(names)
    unknown = [name for name in wanted if name not in groups]
    if unknown:
        raise ValueError(f"no prunable weight named {unknown}; choose from {list(groups)}.")
    return {name: groups[name] for name in wanted}


def _no_samples_error() -> ValueError:
    return ValueError(
        "batches yielded no samples: gradient statistics need data. Pass an iterable of "
        "(inputs, targets), e.g. a DataLoader or [(x, y)]."
    )


def _no_gradient_error(missing: list[str]) -> ValueError:
    return ValueError(
        f"no gradient reached {missing}: the loss does not depend on these weights in any "
        "batch (the layer is never used in the forward pass, or its output never reaches the "
        "loss). Score a model whose prunable layers all contribute to the output."
    )


def _zero_sums(groups: dict[str, list[nn.Module]]) -> Callable[[str], torch.Tensor]:
    """name → zeros like that weight's sums: a DDP rank whose data never reached it."""

    def zeros(name: str) -> torch.Tensor:
        weight = groups[name][0].weight
        return torch.zeros(weight.shape, dtype=accumulation_dtype(weight), device=weight.device)

    return zeros


def _check_max_elements(max_elements: int) -> int:
    if isinstance(max_elements, bool) or not isinstance(max_elements, int) or max_elements < 1:
        raise ValueError(f"max_elements must be a positive int, got {max_elements!r}.")
    return max_elements


def per_sample_gradients(
    model: nn.Module,
    batches: Batches,
    loss_fn: LossFn | None = None,
    *,
    names: Iterable[str] | None = None,
    max_elements: int | None = None,
    sample_dim: int | tuple[int, int] = 0,
    reduction: str | None = None,
) -> Iterator[tuple[str, torch.Tensor]]:
    """Per-sample gradients g_n of prunable weights, streamed in bounded chunks.

    The same pass as ``gradient_stats`` (one source of truth), without reducing over samples:
    second-order methods (``obs``) build the empirical Fisher F = (1/N) Σ g_n g_nᵀ from these.
    A layer called twice gets the per-sample sum over its calls; a tied weight is one entry
    with its total gradient.

    Args:
        model, batches, loss_fn, sample_dim, reduction: as for ``gradient_stats``.
        names: prunable weight names to produce (default: all).
        max_elements: upper bound on floats in one yielded chunk (default ``CHUNK_ELEMENTS``).

    Yields:
        ``(name, chunk)`` with chunk shaped (n, *weight.shape), in at least float32: the
        gradients of n samples' own losses. For each name, the chunks cover every sample, in
        batch order (a weight the loss does not depend on in a batch gets zeros there).

    Raises:
        ValueError: no samples, no prunable layer, an unknown name, a weight that no batch's
            loss depends on, or a loss / sample dimension that cannot be decomposed.
    """
    max_elements = _check_max_elements(CHUNK_ELEMENTS if max_elements is None else max_elements)
    groups = _selected_groups(model, names)
    count = 0
    used: set[str] = set()
    for batch in _recorded_batches(model, batches, loss_fn, groups, sample_dim, reduction):
        record = batch.record
        used |= record.used
        for name, calls in record.fast.items():
            dtype = accumulation_dtype(groups[name][0].weight)
            for chunk in _fast_chunks(calls, max_elements, dtype):
                yield name, chunk
        if record.fallback:
            chunks = _fallback_chunks(model, batch, groups, loss_fn, sample_dim, max_elements)
            for _start, grads in chunks:
                for name, chunk in grads.items():
                    yield name, chunk.to(accumulation_dtype(chunk))
        for name in groups:
            if name not in record.used:
                weight = groups[name][0].weight
                chunk_size = max(1, max_elements // max(weight.numel(), 1))
                for start in range(0, record.n, chunk_size):
                    size = min(chunk_size, record.n - start)
                    shape = (size, *weight.shape)
                    yield (
                        name,
                        torch.zeros(shape, dtype=accumulation_dtype(weight), device=weight.device),
                    )
        count += record.n
    if count == 0:
        raise _no_samples_error()
    missing = [name for name in groups if name not in used]
    if missing:
        raise _no_gradient_error(missing)


def gradient_stats(
    model: nn.Module,
    batches: Batches,
    loss_fn: LossFn | None = None,
    *,
    sample_dim: int | tuple[int, int] = 0,
    reduction: str | None = None,
    max_elements: int | None = None,
) -> dict[str, GradientStats]:
    """Decompose the gradient of every prunable weight into per-sample statistics.

    Args:
        model: any ``nn.Module``; its prunable weights are listed in ``gp.PRUNABLE_TYPES``
            (a tied weight is one entry, under its first name). It is scored in eval mode
            and left exactly as it was (modes, buffers, ``requires_grad``; ``.grad`` is not
            touched), also inside ``torch.no_grad()`` or ``torch.inference_mode()``.
        batches: an iterable of ``(inputs, targets)``, a DataLoader included. Inputs are
            moved to the model's device.
        loss_fn: ``loss_fn(outputs, targets)``; the default is ``F.cross_entropy``. It may
            return the mean of the per-sample losses, their sum, or one loss per sample.
        sample_dim: the dimension of inputs and targets that indexes samples (default 0);
            a pair ``(input dim, target dim)`` when they differ, e.g. ``1`` for
            sequence-first (T, N, C) inputs with (T, N) targets.
        reduction: ``'mean'``, ``'sum'`` or ``'none'``: what ``loss_fn`` returns. By default
            read from ``loss_fn.reduction`` or measured on two samples.
        max_elements: the memory bound, floats in one chunk of per-sample tensors
            (default ``CHUNK_ELEMENTS`` = 16 M).

    Returns:
        dict name → ``GradientStats`` with ``.mean``, ``.sq_mean``, ``.var`` (shaped like
        the weight, float32 or wider) and ``.count`` (the number of samples).

    Under ``torch.distributed`` (an initialised process group, e.g. DDP under ``torchrun``)
    each rank passes its own shard; the sums and counts are all-reduced before the means
    are formed, so every rank returns the statistics of all ranks' data, bit for bit the
    same on every rank (``gradprune_lite/core/distributed.py``). Every rank must call it.

    Raises:
        ValueError: when ``batches`` yields no samples, the model has no prunable layers, a
            prunable weight gets no gradient, or the loss cannot be split into samples.
    """
    max_elements = _check_max_elements(CHUNK_ELEMENTS if max_elements is None else max_elements)
    groups = prunable_groups(model)
    sums: dict[str, torch.Tensor] = {}
    sq_sums: dict[str, torch.Tensor] = {}

    def add(name: str, total: torch.Tensor, total_sq: torch.Tensor) -> None:
        if name in sums:
            sums[name] += total
            sq_sums[name] += total_sq
        else:
            sums[name], sq_sums[name] = total, total_sq

    count = 0
    for batch in _recorded_batches(model, batches, loss_fn, groups, sample_dim, reduction):
        record = batch.record
        for name, calls in record.fast.items():
            dtype = accumulation_dtype(groups[name][0].weight)
            add(name, *_fast_sums(calls, max_elements, dtype))
        if record.fallback:
            chunks = _fallback_chunks(model, batch, groups, loss_fn, sample_dim, max_elements)
            for _start, grads in chunks:
                for name, chunk in grads.items():
                    chunk = chunk.to(accumulation_dtype(chunk))
                    add(name, chunk.sum(0), chunk.square().sum(0))
        count += record.n
    # Under DDP: the sums and the count of all ranks' shards (a no-op in one process).
    count = all_reduce_named_sums((sums, sq_sums), list(groups), count, _zero_sums(groups))
    if count == 0:
        raise _no_samples_error()
    missing = [name for name in groups if name not in sums]
    if missing:
        raise _no_gradient_error(missing)
    return {
        # In place: the sums are this call's own tensors, and a new weight-sized tensor
        # each costs more than the division on a small model.
        name: GradientStats(
            mean=sums[name].div_(count), sq_mean=sq_sums[name].div_(count), count=count
        )
        for name in groups
    }
