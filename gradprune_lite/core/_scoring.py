"""What one sample is, how the loss reduces over samples, and scoring without side effects.

Conventions shared by ``gradient_stats``, ``per_sample_gradients`` and ``grasp``:

* **One sample** is one slice of the inputs and of the targets along ``sample_dim``
  (default 0, batch-first). A sequence-first model, inputs (T, N, C) and targets (T, N),
  passes ``sample_dim=1``; different dimensions for inputs and targets are given as a pair
  ``sample_dim=(1, 0)``. A sample's own loss ℓ_n is ``loss_fn`` evaluated on that sample
  alone, so a model that reshapes (N, T, C) to (N·T, C) inside is handled exactly.
* **The loss** may return the mean of the per-sample losses (``reduction='mean'``, the
  ``F.cross_entropy`` default), their sum (``'sum'``) or one loss per sample, shape (N,)
  (``'none'``). ``reduction`` is taken from the option, else from ``loss_fn.reduction``
  (``nn.CrossEntropyLoss()`` and friends), else measured once on two samples; a loss that
  is none of these raises ``ValueError`` instead of being silently scaled.
* **No side effects, deterministic scores.** The model is scored in eval mode: Dropout is
  off and BatchNorm uses its running statistics, so samples do not interact (which the
  per-sample decomposition needs) and two calls give identical scores. Train/eval flags,
  ``requires_grad`` and every buffer are restored afterwards, ``.grad`` is never touched,
  and scoring works inside ``torch.no_grad()`` and ``torch.inference_mode()``.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

REDUCTIONS = ("mean", "sum", "none")

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@contextlib.contextmanager
def grad_enabled() -> Iterator[None]:
    """Autograd on, whatever the caller's mode (``no_grad`` or ``inference_mode``)."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


@contextlib.contextmanager
def eval_mode_kept(model: nn.Module) -> Iterator[None]:
    """Eval mode inside (no BatchNorm update); every module's own mode restored on exit."""
    modes = [(module, module.training) for module in model.modules()]
    try:
        model.eval()
        yield
    finally:
        for module, training in modes:
            module.training = training


@contextlib.contextmanager
def scoring_state(model: nn.Module) -> Iterator[None]:
    """Eval mode during scoring; modes, ``requires_grad`` and buffers restored on exit."""
    with grad_enabled():
        flags = [(p, p.requires_grad) for p in model.parameters()]
        buffers = [(b, b.clone()) for b in model.buffers()]
    try:
        with eval_mode_kept(model):
            yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        with grad_enabled(), torch.no_grad():
            for buffer, saved in _changed(buffers):
                buffer.copy_(saved)


def _changed(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> list:
    """The (buffer, saved) pairs whose values differ: one host sync per device, not per buffer."""
    verdicts: dict[torch.device, list] = {}
    changed = []
    for pair in pairs:
        buffer, saved = pair
        if buffer.shape != saved.shape:
            changed.append(pair)
        elif buffer.numel():
            verdicts.setdefault(buffer.device, []).append((pair, (buffer != saved).any()))
    for entries in verdicts.values():
        flags = torch.stack([flag for _, flag in entries]).tolist()
        changed += [pair for (pair, _), flag in zip(entries, flags) if flag]
    return changed


#: The dtype every exactness check runs in, whatever the model's: bfloat16's round-off
#: (eps 2⁻⁸, a 64·eps tolerance of 0.5) would hide samples that interact.
CHECK_DTYPE = torch.float32


@contextlib.contextmanager
def checked_in_float32(model: nn.Module) -> Iterator[None]:
    """Inside, every floating parameter and buffer narrower than float32 holds float32 data.

    The same tensor objects (hooks, masks and names keep working); on exit each gets its
    own original data back, so the model is bitwise what it was.
    """
    saved = []
    with grad_enabled(), torch.no_grad():
        for tensor in itertools.chain(model.parameters(), model.buffers()):
            if tensor.is_floating_point() and tensor.dtype.itemsize < CHECK_DTYPE.itemsize:
                saved.append((tensor, tensor.data))
                tensor.data = tensor.data.to(CHECK_DTYPE)
    try:
        yield
    finally:
        for tensor, data in saved:
            tensor.data = data


def in_check_dtype(t: torch.Tensor) -> torch.Tensor:
    """A floating tensor narrower than float32 as float32; anything else unchanged."""
    if t.is_floating_point() and t.dtype.itemsize < CHECK_DTYPE.itemsize:
        return t.to(CHECK_DTYPE)
    return t


def is_low_precision(model: nn.Module) -> bool:
    """Whether any floating parameter or buffer is narrower than float32 (fp16, bf16)."""
    return any(
        t.is_floating_point() and t.dtype.itemsize < CHECK_DTYPE.itemsize
        for t in itertools.chain(model.parameters(), model.buffers())
    )


_CLASS_LOSS_MODULES = (nn.CrossEntropyLoss, nn.NLLLoss)
_CLASS_LOSS_FUNCTIONS = (F.cross_entropy, F.nll_loss)


def _class_loss_settings(loss_fn) -> dict | None:
    """weight, ignore_index and reduction of a classification loss; None for other losses."""
    if isinstance(loss_fn, _CLASS_LOSS_MODULES):
        return {
            "weight": loss_fn.weight,
            "ignore_index": loss_fn.ignore_index,
            "reduction": loss_fn.reduction,
        }
    function, keywords = loss_fn, {}
    if isinstance(loss_fn, functools.partial) and not loss_fn.args:
        function, keywords = loss_fn.func, loss_fn.keywords
    if function not in _CLASS_LOSS_FUNCTIONS:
        return None
    return {
        "weight": keywords.get("weight"),
        "ignore_index": keywords.get("ignore_index", -100),
        "reduction": keywords.get("reduction", "mean"),
    }


def check_loss_targets(loss_fn: LossFn, targets: torch.Tensor, option: str | None) -> None:
    """Raise where a classification loss cannot be split into per-sample losses as given.

    * float targets of shape (n,): cross-entropy reads float targets as class
      probabilities shaped like the outputs, so these are labels in the wrong dtype;
    * ``weight=`` with reduction 'mean': the batch loss is Σ w_y ℓ / Σ w_y, divided by the
      weights of this batch's labels, not by the number of samples;
    * targets equal to ``ignore_index`` with reduction 'mean': divided by the count of
      the other samples, and a sample alone gives 0/0.

    With reduction 'sum' or 'none' both are exact: a sample's loss is w_y·ℓ, or 0 when
    ignored. Custom losses (lambdas) are not inspected; the one-sample check catches them.
    """
    settings = _class_loss_settings(loss_fn)
    if settings is None:
        return
    if targets.is_floating_point() and targets.dim() == 1:
        raise ValueError(
            f"targets are {targets.dtype} of shape {tuple(targets.shape)}, but a "
            "classification loss (cross_entropy, nll_loss) takes class indices as integers, "
            "or class probabilities shaped like the outputs (n, classes). Pass "
            "targets.long() for labels."
        )
    reduction = option or settings["reduction"]
    if reduction != "mean" or targets.is_floating_point():
        return
    fix = (
        "Pass the same loss with reduction='sum' (for example nn.CrossEntropyLoss(weight=w, "
        "reduction='sum')), whose per-sample loss is w_y·ℓ, or 0 for an ignored target: "
        "the statistics are then exact."
    )
    if settings["weight"] is not None:
        raise ValueError(
            "the loss has class weights (weight=) and reduction='mean', which divides the "
            "batch's weighted sum by the weights of its labels, not by the number of "
            f"samples, so it is not a mean of per-sample losses. {fix}"
        )
    ignore_index = settings["ignore_index"]
    if bool((targets == ignore_index).any()):
        raise ValueError(
            f"some targets equal ignore_index={ignore_index} and the loss reduces by 'mean', "
            "which divides by the number of targets not ignored, not by the number of "
            f"samples, so it is not a mean of per-sample losses (a sample alone gives 0/0). "
            f"{fix}"
        )


def check_batch_list(batches) -> None:
    """Raise if ``batches`` is one ``(inputs, targets)`` pair instead of an iterable of them.

    Iterating a pair yields the inputs tensor, then the targets tensor, and unpacking a
    tensor into (inputs, targets) fails deep inside, or silently splits its first rows.
    """
    if isinstance(batches, torch.Tensor):
        raise ValueError(
            "batches is a single tensor; pass an iterable of (inputs, targets) pairs, such as "
            "[(inputs, targets)] or a DataLoader."
        )
    if isinstance(batches, (tuple, list)) and any(isinstance(b, torch.Tensor) for b in batches):
        raise ValueError(
            f"batches holds tensors directly ({len(batches)} items); it must be an iterable "
            "of (inputs, targets) pairs. For one batch, wrap the pair in a list: "
            "batches=[(inputs, targets)] instead of batches=(inputs, targets)."
        )


def sample_dims(sample_dim: int | tuple[int, int]) -> tuple[int, int]:
    """(input dim, target dim) of one sample, from ``sample_dim`` (an int or a pair)."""
    dims = (sample_dim, sample_dim) if isinstance(sample_dim, int) else tuple(sample_dim)
    if len(dims) != 2 or not all(isinstance(d, int) and d >= 0 for d in dims):
        raise ValueError(
            f"sample_dim must be a non-negative int (the sample dimension of inputs and "
            f"targets) or a pair (input dim, target dim), got {sample_dim!r}."
        )
    return dims


def prepare_batch(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    device: torch.device,
    dims: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Move a batch to ``device`` as ordinary (non-inference) tensors; return its size n.

    Raises ``ValueError`` when inputs and targets disagree on the number of samples.
    """
    with grad_enabled():
        inputs, targets = inputs.to(device), targets.to(device)
        if inputs.is_inference():
            inputs = inputs.clone()
        if targets.is_inference():
            targets = targets.clone()
    in_dim, target_dim = dims
    if inputs.dim() <= in_dim or targets.dim() <= target_dim:
        raise ValueError(
            f"sample_dim={dims} does not fit inputs of shape {tuple(inputs.shape)} and targets "
            f"of shape {tuple(targets.shape)}."
        )
    n = inputs.shape[in_dim]
    if targets.shape[target_dim] != n:
        raise ValueError(
            f"inputs of shape {tuple(inputs.shape)} hold {n} samples along dimension {in_dim} "
            f"but targets of shape {tuple(targets.shape)} hold {targets.shape[target_dim]} along "
            f"dimension {target_dim}. One sample is one slice along sample_dim (default 0); a "
            "sequence-first model (inputs T×N×C) needs sample_dim=1, or sample_dim=(1, 0) when "
            "only the inputs are sequence-first."
        )
    return inputs, targets, n


def total_of_sample_losses(loss: torch.Tensor, n: int, reduction: str | None) -> torch.Tensor:
    """Σ_n ℓ_n from what ``loss_fn`` returned for a batch of n samples.

    ``reduction`` None means not yet known, which only happens for n = 1 (mean = sum).
    """
    if loss.dim() > 0:
        if reduction not in ("none", None) or tuple(loss.shape) != (n,):
            raise ValueError(
                f"loss_fn returned a tensor of shape {tuple(loss.shape)} for {n} samples "
                f"(reduction={reduction!r}). Return a scalar (the mean or the sum of the "
                "per-sample losses) or one loss per sample, shape (n,), with reduction='none'."
            )
        return loss.sum()
    if reduction == "none":
        raise ValueError(
            "reduction='none' says loss_fn returns one loss per sample, but it returned a "
            "scalar; pass reduction='mean' or 'sum' instead."
        )
    return loss * n if reduction == "mean" else loss


def _sample(t: torch.Tensor, dim: int, index: slice) -> torch.Tensor:
    return t.narrow(dim, index.start, index.stop - index.start)


def resolve_reduction(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    dims: tuple[int, int],
    option: str | None,
) -> str | None:
    """'mean', 'sum' or 'none' for ``loss_fn``; None while undecidable (batch of one).

    The option wins, then ``loss_fn.reduction``; otherwise the loss of two samples together
    is compared with their losses alone (mean: half the sum; sum: the sum).
    """
    if option is not None:
        if option not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {option!r}.")
        return option
    declared = getattr(loss_fn, "reduction", None)
    if declared in REDUCTIONS:
        return declared
    if loss_fn is F.cross_entropy:
        return "mean"
    in_dim, target_dim = dims
    if inputs.shape[in_dim] < 2:
        return None
    # Measured in float32: in bfloat16 the tolerance would accept both the mean and the sum.
    inputs, targets = in_check_dtype(inputs), in_check_dtype(targets)
    with torch.no_grad(), checked_in_float32(model):
        pair = loss_fn(
            model(_sample(inputs, in_dim, slice(0, 2))), _sample(targets, target_dim, slice(0, 2))
        )
        if pair.dim() > 0:
            return "none"
        alone = [
            float(
                loss_fn(
                    model(_sample(inputs, in_dim, slice(i, i + 1))),
                    _sample(targets, target_dim, slice(i, i + 1)),
                )
            )
            for i in range(2)
        ]
    together, total = float(pair), sum(alone)
    tolerance = max(1e-4, 64 * torch.finfo(pair.dtype).eps) * (abs(total) + 1e-12)
    is_sum = math.isclose(together, total, abs_tol=tolerance)
    is_mean = math.isclose(together, total / 2, abs_tol=tolerance)
    if is_sum != is_mean:
        return "sum" if is_sum else "mean"
    raise ValueError(
        f"cannot tell how loss_fn reduces over samples: on two samples together it returned "
        f"{together:.6g}, on each alone {alone[0]:.6g} and {alone[1]:.6g} (neither their mean "
        "nor their sum). Pass reduction='mean', 'sum' or 'none' to say what it returns, and "
        "check that one sample is one slice along sample_dim. A loss with class weights or "
        "ignored targets reduced by 'mean' divides by their weights or count, not by the "
        "number of samples: give it reduction='sum'."
    )
