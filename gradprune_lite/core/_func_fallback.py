"""Exact per-sample gradients with ``torch.func``, for weights the fast path cannot decompose.

g_n = ∂ℓ_n/∂w with ℓ_n the loss of sample n run through the model alone, computed as
``vmap(grad(ℓ))`` over a chunk of samples with ``functional_call``. The weight is passed by
its first name, so a tied weight gets its total gradient from every place it is used, and
uses outside module calls (``nn.MultiheadAttention.out_proj``) are included. Chunks hold at
most ``max_elements`` floats of per-sample gradients, summed over the weights computed.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from ._scoring import LossFn


def func_per_sample_chunks(
    model: nn.Module,
    weights: dict[str, torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss_fn: LossFn,
    dims: tuple[int, int],
    max_elements: int,
) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
    """Yield ``(start, {name: (n_chunk, *weight.shape)})`` per chunk of samples, in order.

    ``weights``: name (as in ``model.named_parameters()``) → weight tensor. Gradients are in
    the weight's dtype; the model must be in eval mode (no cross-sample interaction).
    """
    in_dim, target_dim = dims
    n = inputs.shape[in_dim]
    per_sample = sum(w.numel() for w in weights.values())
    chunk = max(1, max_elements // max(per_sample, 1))
    detached = {name: w.detach() for name, w in weights.items()}

    def sample_loss(params, x, y):
        out = functional_call(model, params, (x.unsqueeze(in_dim),), strict=False)
        # One sample alone: a mean over samples and a sum over samples agree.
        return loss_fn(out, y.unsqueeze(target_dim)).sum()

    per_sample_grad = vmap(grad(sample_loss), in_dims=(None, in_dim, target_dim))
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        with torch.inference_mode(False), torch.no_grad():
            grads = per_sample_grad(
                detached,
                inputs.narrow(in_dim, start, size),
                targets.narrow(target_dim, start, size),
            )
        yield start, grads
