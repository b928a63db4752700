"""Exercise 5: per-sample gradient statistics of an nn.Linear layer, with hooks."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from ._common import check_tensor, close, self_check
from ._tiny import tiny_batches, tiny_model
from ._watch import Trace, watched_call

# A chunk of at least this many per-sample gradients counts as storing them; three is the
# most a correct answer allocates in that shape (torch.stack([mean, sq_mean, var])).
_CHUNK = 4


def per_sample_weight_gradients(model: nn.Module, name: str, inputs, targets) -> torch.Tensor:
    """(N, *weight.shape): each sample's own cross-entropy gradient, by ``torch.func``."""
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(p, x, y):
        out = functional_call(model, p, (x.unsqueeze(0),))
        return nn.functional.cross_entropy(out, y.unsqueeze(0))

    return vmap(grad(loss), in_dims=(None, 0, 0))(params, inputs, targets)[name]


def _stored_per_sample(trace: Trace, weight_shape: tuple, samples: int) -> tuple | None:
    """The first result shape that holds per-sample gradients of the weight, if any.

    That is (m, *weight) or (m, weight.numel()) with m >= ``_CHUNK`` (all samples or a
    chunk of them, flat or not), or any tensor of N·P entries or more, N samples and P
    weights, the size of all per-sample gradients however they are arranged. The check's
    batch and layers are sized so that no correct answer allocates any of these.
    """
    size = math.prod(weight_shape)
    for shape in trace.shapes():
        chunk = len(shape) > 1 and shape[0] >= _CHUNK and shape[1:] in (weight_shape, (size,))
        if chunk or math.prod(shape) >= samples * size:
            return shape
    return None


@self_check
def check_linear_gradient_stats(linear_gradient_stats: Callable) -> bool:
    """Check ``linear_gradient_stats(model, layer, inputs, targets) -> (mean, sq_mean, var)``.

    Each is shaped like ``layer.weight``: the mean, the second moment E[g²] and the
    (population) variance of the per-sample gradients of the mean cross-entropy loss.
    Reference: ``torch.func.vmap(grad(...))``. The model must be left without hooks.

    The exercise's goal is one forward and one backward pass that never stores a per-sample
    gradient, so the check records every tensor the student's code allocates (``_watch``)
    and rejects one shaped like N (or a chunk of at least four) per-sample gradients of the
    layer's weight, and it counts the model's forward passes (more than two: a loop over
    samples).
    """
    model = tiny_model(seed=6)
    inputs, targets = tiny_batches(seed=7, batches=1, size=40)[0]
    for name in ("1.weight", "3.weight"):
        layer = model.get_submodule(name.rsplit(".", 1)[0])
        g = per_sample_weight_gradients(model, name, inputs, targets)
        want_mean, want_sq = g.mean(0), g.square().mean(0)
        want_var = want_sq - want_mean.square()
        forwards = []
        counter = model.register_forward_pre_hook(lambda *_, seen=forwards: seen.append(1))
        try:
            result, trace = watched_call(
                linear_gradient_stats, "linear_gradient_stats", model, layer, inputs, targets
            )
        finally:
            counter.remove()
        stored = _stored_per_sample(trace, tuple(layer.weight.shape), len(targets))
        assert stored is None, (
            f"{name}: your code made a tensor of shape {stored}, per-sample gradients "
            "(torch.func.vmap or einsum?); combine d and x with matrix products instead."
        )
        assert len(forwards) <= 2, (
            f"You ran the model {len(forwards)} times (once per sample?): one forward and "
            "one backward pass over the whole batch give every x_n and d_n."
        )
        assert isinstance(result, tuple) and len(result) == 3, (
            "Return a tuple (mean, sq_mean, var) of three tensors."
        )
        shape = tuple(layer.weight.shape)
        mean, sq, var = (
            check_tensor(r, shape, w) for r, w in zip(result, ("mean", "sq_mean", "var"))
        )
        hooks = (layer._forward_hooks, layer._forward_pre_hooks, layer._backward_hooks)
        assert not any(hooks) and not layer._backward_pre_hooks, (
            "Your hooks are still registered: keep the handles and call handle.remove()."
        )
        n = len(targets)
        if not close(mean, want_mean, atol=1e-6):
            assert not close(mean, want_mean / n, atol=1e-8), (
                "mean is N times too small: the loss is a mean, so grad_output is d/N."
            )
            assert not close(mean, want_mean * n, atol=1e-5), "mean is N times too large."
            raise AssertionError(f"{name}: mean differs from the torch.func reference.")
        if not close(sq, want_sq, atol=1e-6):
            assert not close(sq, want_mean.square(), atol=1e-8), (
                "sq_mean is the square of the mean; E[g²] averages each sample's g² first."
            )
            assert not close(sq, want_sq / n**2, atol=1e-10), (
                "sq_mean is N² too small: undo the 1/N of the mean loss before squaring."
            )
            raise AssertionError(
                f"{name}: sq_mean differs from the torch.func reference; g_n = d_n x_nᵀ, "
                "so g_n² = d_n² (x_n²)ᵀ."
            )
        assert not close(var, want_sq - want_mean, atol=1e-6) or close(var, want_var, atol=1e-6), (
            "var = E[g²] − ḡ²: square the mean."
        )
        assert close(var, want_var, atol=1e-6), f"{name}: var differs from E[g²] − ḡ²."
