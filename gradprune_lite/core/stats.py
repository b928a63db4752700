"""Gradient decomposition: mean, second moment and variance of per-sample gradients.

The batch gradient is the mean of per-sample gradients g_n. For every prunable weight
we accumulate, without ever looping over samples in Python,

* ``mean``    ḡ      = (1/N) Σ_n g_n            (the ordinary batch gradient),
* ``sq_mean`` E[g²]  = (1/N) Σ_n g_n²           (the diagonal empirical Fisher),
* ``var``     Var[g] = E[g²] − ḡ²,

from the activations and output gradients of one forward/backward pass per batch.

For ``nn.Linear`` with input X (N×in) and output gradient D (N×out) the per-sample
gradient is the outer product g_n = d_n x_nᵀ, so Σ_n g_n = DᵀX and Σ_n g_n² = (D²)ᵀ(X²):
one extra matmul of squares, no N×out×in tensor. ``nn.Conv2d`` goes through
``unfold``: g_n = D_n U_nᵀ summed over positions, which must be formed per sample
before squaring; the batch is processed in chunks so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .layers import prunable_modules

#: Upper bound on floats in one per-sample Conv2d gradient chunk (≈64 MB in float32).
CONV_CHUNK_ELEMENTS = 16_000_000


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


def _linear_sums(x: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ g_n and Σ g_n² for a Linear layer. x: (N, …, in), d: (N, …, out) → (out, in) twice."""
    if x.dim() == 2:
        return d.t() @ x, d.square().t() @ x.square()
    # Inputs with extra dims (sequences): a sample's gradient sums over positions, so it
    # must be formed per sample before it is squared, in bounded chunks.
    total = torch.zeros(d.shape[-1], x.shape[-1], dtype=d.dtype, device=d.device)
    total_sq = torch.zeros_like(total)
    for per_sample in _linear_per_sample(x, d):
        total += per_sample.sum(0)
        total_sq += per_sample.square_().sum(0)
    return total, total_sq


def _conv_check(module: nn.Conv2d) -> None:
    if module.padding_mode != "zeros":
        raise ValueError(
            f"gradient_stats supports Conv2d with padding_mode='zeros', "
            f"got {module.padding_mode!r}."
        )
    if isinstance(module.padding, str):
        raise ValueError("gradient_stats needs numeric Conv2d padding, not 'same' or 'valid'.")


def _conv_per_sample(
    module: nn.Conv2d, x: torch.Tensor, d: torch.Tensor, max_elements: int = CONV_CHUNK_ELEMENTS
) -> Iterator[torch.Tensor]:
    """Per-sample gradients of a Conv2d weight, in chunks of at most ``max_elements`` floats.

    x: (N, C, H, W) layer inputs, d: (N, O, H', W') output gradients → yields (n, *weight.shape).
    """
    _conv_check(module)
    groups = module.groups
    out_channels = module.out_channels
    weight_shape = module.weight.shape
    chunk = max(1, max_elements // max(weight_shape.numel(), 1))
    for start in range(0, x.shape[0], chunk):
        xs = x[start : start + chunk]
        ds = d[start : start + chunk]
        n = xs.shape[0]
        # unfolded: (n, C·kh·kw, L); grouped view: (n, G, C/G·kh·kw, L)
        unfolded = F.unfold(
            xs,
            module.kernel_size,
            dilation=module.dilation,
            padding=module.padding,
            stride=module.stride,
        )
        unfolded = unfolded.reshape(n, groups, -1, unfolded.shape[-1])
        grads = ds.reshape(n, groups, out_channels // groups, -1)
        yield torch.einsum("ngol,ngil->ngoi", grads, unfolded).reshape(n, *weight_shape)


def _linear_per_sample(
    x: torch.Tensor, d: torch.Tensor, max_elements: int = CONV_CHUNK_ELEMENTS
) -> Iterator[torch.Tensor]:
    """Per-sample gradients of a Linear weight in bounded chunks. x: (N, …, in), d: (N, …, out)."""
    x = x.reshape(x.shape[0], -1, x.shape[-1])
    d = d.reshape(d.shape[0], -1, d.shape[-1])
    chunk = max(1, max_elements // max(x.shape[-1] * d.shape[-1], 1))
    for start in range(0, x.shape[0], chunk):
        yield torch.einsum("nto,nti->noi", d[start : start + chunk], x[start : start + chunk])


def _conv_sums(
    module: nn.Conv2d, x: torch.Tensor, d: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ g_n and Σ g_n² for a Conv2d layer. x: (N, C, H, W), d: (N, O, H', W')."""
    total = torch.zeros(module.weight.shape, dtype=d.dtype, device=d.device)
    total_sq = torch.zeros_like(total)
    for per_sample in _conv_per_sample(module, x, d):
        total += per_sample.sum(0)
        total_sq += per_sample.square_().sum(0)
    return total, total_sq


class _OutputRecorder:
    """Forward hooks that remember each prunable layer's input and output for one pass.

    Where a layer's output does not require grad (all parameters are frozen during the
    pass, so the first layer's output does not), the hook hands a fresh leaf downstream:
    the graph then starts there and autograd never computes input or weight gradients
    that the statistics do not need.
    """

    def __init__(self, modules: dict[str, nn.Module]):
        self.calls: list[tuple[str, nn.Module, torch.Tensor, torch.Tensor]] = []
        self.handles = [
            module.register_forward_hook(self._hook(name)) for name, module in modules.items()
        ]

    def _hook(self, name: str):
        def hook(module, inputs, output):
            if not output.requires_grad:
                output = output.detach().requires_grad_(True)
            self.calls.append((name, module, inputs[0].detach(), output))
            return output

        return hook

    def remove(self):
        for handle in self.handles:
            handle.remove()


def _recorded_passes(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None,
    modules: dict[str, nn.Module],
) -> Iterator[tuple[int, list[tuple[str, nn.Module, torch.Tensor, torch.Tensor]]]]:
    """One forward/backward per batch; yields (n, [(name, module, input, output grad)]).

    Weights are frozen during the pass (restored after), so autograd computes only the
    output gradients the decomposition needs. The loss is a mean; scaling it by n makes
    each output-gradient row the gradient of that sample's own loss.
    """
    loss_fn = F.cross_entropy if loss_fn is None else loss_fn
    device = next(model.parameters()).device
    params = list(model.parameters())
    saved_flags = [p.requires_grad for p in params]
    recorder = _OutputRecorder(modules)
    try:
        for p in params:
            p.requires_grad_(False)
        for inputs, targets in batches:
            inputs, targets = inputs.to(device), targets.to(device)
            n = inputs.shape[0]
            if n == 0:
                continue
            recorder.calls.clear()
            loss = loss_fn(model(inputs), targets) * n
            outputs = [call[3] for call in recorder.calls]
            grads = torch.autograd.grad(loss, outputs, allow_unused=True)
            yield (
                n,
                [
                    (name, module, x, d)
                    for (name, module, x, _), d in zip(recorder.calls, grads)
                    if d is not None
                ],
            )
    finally:
        recorder.remove()
        recorder.calls.clear()
        for p, flag in zip(params, saved_flags):
            p.requires_grad_(flag)


def _no_samples_error() -> ValueError:
    return ValueError(
        "batches yielded no samples: gradient statistics need data. Pass an iterable of "
        "(inputs, targets), e.g. a DataLoader or [(x, y)]."
    )


def per_sample_gradients(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    *,
    names: Iterable[str] | None = None,
    max_elements: int = CONV_CHUNK_ELEMENTS,
) -> Iterator[tuple[str, torch.Tensor]]:
    """Per-sample gradients g_n of prunable weights, streamed in bounded chunks.

    The same pass as ``gradient_stats`` (one source of truth), without reducing over samples:
    second-order methods (``obs``) build the empirical Fisher F = (1/N) Σ g_n g_nᵀ from these.

    Args:
        model, batches, loss_fn: as for ``gradient_stats``.
        names: prunable weight names to produce (default: all).
        max_elements: upper bound on floats in one yielded chunk.

    Yields:
        ``(name, chunk)`` with chunk shaped (n, *weight.shape): the gradients of n samples'
        own losses. For each name, the chunks cover every sample, in batch order.
    """
    modules = prunable_modules(model)
    if names is not None:
        wanted = list(names)
        unknown = [name for name in wanted if name not in modules]
        if unknown:
            raise ValueError(f"no prunable weight named {unknown}; choose from {list(modules)}.")
        modules = {name: modules[name] for name in wanted}
    count = 0
    for n, calls in _recorded_passes(model, batches, loss_fn, modules):
        for name, module, x, d in calls:
            if isinstance(module, nn.Conv2d):
                chunks = _conv_per_sample(module, x, d, max_elements)
            else:
                chunks = _linear_per_sample(x, d, max_elements)
            for chunk in chunks:
                yield name, chunk
        count += n
    if count == 0:
        raise _no_samples_error()


def gradient_stats(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, GradientStats]:
    """Decompose the gradient of every prunable weight into per-sample statistics.

    Args:
        model: any ``nn.Module``; its prunable weights are the ``weight`` of every
            ``nn.Linear`` and ``nn.Conv2d``. It is not modified and ``.grad`` is not touched.
        batches: an iterable of ``(inputs, targets)``, a DataLoader included. Inputs are
            moved to the model's device.
        loss_fn: ``loss_fn(outputs, targets)`` returning the **mean** of per-sample losses
            (the default is ``F.cross_entropy``). The mean matters: the statistics are of the
            per-sample gradients, which we recover by scaling the batch loss by its size.

    Returns:
        dict name → ``GradientStats`` with ``.mean``, ``.sq_mean``, ``.var`` (shaped like
        the weight) and ``.count`` (the number of samples).

    Raises:
        ValueError: when ``batches`` yields no samples, or the model has no prunable layers.
    """
    modules = prunable_modules(model)
    sums: dict[str, torch.Tensor] = {}
    sq_sums: dict[str, torch.Tensor] = {}
    count = 0
    for n, calls in _recorded_passes(model, batches, loss_fn, modules):
        for name, module, x, d in calls:
            if isinstance(module, nn.Conv2d):
                total, total_sq = _conv_sums(module, x, d)
            else:
                total, total_sq = _linear_sums(x, d)
            if name in sums:
                sums[name] += total
                sq_sums[name] += total_sq
            else:
                sums[name], sq_sums[name] = total, total_sq
        count += n
    if count == 0:
        raise _no_samples_error()
    missing = [name for name in modules if name not in sums]
    if missing:
        raise ValueError(
            f"no gradient reached {missing}: these layers are not used in the forward pass "
            "or do not affect the loss."
        )
    return {
        name: GradientStats(mean=sums[name] / count, sq_mean=sq_sums[name] / count, count=count)
        for name in modules
    }
