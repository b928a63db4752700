"""The fisher group criterion's terms for BatchNorm: per-sample gradients of γ and β.

``gp.gradient_stats`` covers the weights of prunable layers only. A unit that an affine
BatchNorm reads is the BatchNorm's output y = γ·x̂ + β, so ``structure.fisher_groups``
scores it by the OBD terms of γ[k] and β[k], which need their per-sample gradients. They
come from one forward and one backward per batch: a zero-valued probe per sample is added
to each BatchNorm's output, and its gradient is that sample's (g_γ, g_β). Kept apart from
``structure.py``, whose job is removing units, as ``stats.py`` keeps the weights' statistics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._scoring import (
    check_batch_list,
    check_loss_targets,
    checked_in_float32,
    grad_enabled,
    in_check_dtype,
    prepare_batch,
    resolve_reduction,
    scoring_state,
    total_of_sample_losses,
)
from .stats import accumulation_dtype


def _probe_gradients(
    model: nn.Module,
    norms: dict[int, nn.Module],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    n: int,
    loss_fn,
    reduction: str | None,
) -> dict[int, torch.Tensor]:
    """id(norm) → (n, 2, C): per-sample gradients (g_γ, g_β) of each BatchNorm, summed
    over its calls, from one forward and one backward of Σ_n ℓ_n (model in eval mode).

    Each call's output y = γ·x̂ + β gets a zero-valued probe a_n·x̂ + c_n added, with a_n,
    c_n of shape (C,) per sample: ∂(Σ ℓ)/∂a_n = Σ_positions ∂ℓ_n/∂y · x̂ = g_γ of sample n
    and ∂(Σ ℓ)/∂c_n = g_β, since in eval mode ℓ_n depends on sample n's y alone. x̂ is
    formed from the call's input before anything downstream can change it in place.
    """
    probes: dict[int, list[torch.Tensor]] = {key: [] for key in norms}

    def hook(module, args, output):
        x = args[0]
        if x.dim() < 2 or x.shape[0] != n:
            raise ValueError(
                f"the fisher group criterion needs the samples along dimension 0 of every "
                f"BatchNorm's input; a {type(module).__name__} got shape {tuple(x.shape)} "
                f"for {n} samples."
            )
        normalised = F.batch_norm(
            x.detach(), module.running_mean, module.running_var, training=False, eps=module.eps
        )
        shape = (n, 2, module.num_features) + (1,) * (x.dim() - 2)
        probe = torch.zeros(shape, dtype=output.dtype, device=output.device, requires_grad=True)
        probes[id(module)].append(probe)
        return output + probe[:, 0] * normalised + probe[:, 1]

    handles = [norm.register_forward_hook(hook) for norm in norms.values()]
    try:
        total = total_of_sample_losses(loss_fn(model(inputs), targets), n, reduction)
    finally:
        for handle in handles:
            handle.remove()
    flat = [probe for key in norms for probe in probes[key]]
    grads = (
        torch.autograd.grad(total, flat, allow_unused=True)
        if flat and total.requires_grad
        else [None] * len(flat)
    )
    result, position = {}, 0
    for key, norm in norms.items():
        calls = grads[position : position + len(probes[key])]
        position += len(calls)
        dtype = accumulation_dtype(norm.weight)
        summed = torch.zeros(n, 2, norm.num_features, dtype=dtype, device=norm.weight.device)
        for grad in calls:
            if grad is not None:
                summed += grad.reshape(n, 2, -1).to(dtype)
        result[key] = summed
    return result


def batchnorm_fisher(model: nn.Module, norms: dict[str, nn.Module], batches, loss_fn):
    """dict layer name → ½·(γ²·E[g_γ²] + β²·E[g_β²]), shape (out,), of its affine BatchNorm.

    Per-sample gradients as ``gp.gradient_stats`` takes them (``_scoring.py``): the model
    in eval mode, so BatchNorm normalises with its running statistics and samples do not
    interact, g_n the gradient of sample n's own loss, E the mean over all samples.
    Modes, buffers and ``requires_grad`` are restored afterwards.
    """
    for name, norm in norms.items():
        if norm.running_mean is None:
            raise ValueError(
                f"the fisher group criterion needs per-sample gradients, but the BatchNorm "
                f"after {name} has no running statistics (track_running_stats=False): even "
                "in eval mode it normalises with the batch's statistics, so samples "
                "interact. Use 'magnitude' or 'taylor', or a BatchNorm with running "
                "statistics."
            )
    loss_fn = F.cross_entropy if loss_fn is None else loss_fn
    modules = {id(norm): norm for norm in norms.values()}
    device = next(iter(modules.values())).weight.device
    sq_sums = {key: 0.0 for key in modules}
    count, reduction, checked = 0, None, False
    check_batch_list(batches)
    with scoring_state(model):
        for p in model.parameters():  # only the probes need gradients
            p.requires_grad_(False)
        for inputs, targets in batches:
            inputs, targets, n = prepare_batch(inputs, targets, device, (0, 0))
            if n == 0:
                continue
            check_loss_targets(loss_fn, targets, None)
            with grad_enabled():
                if reduction is None:
                    reduction = resolve_reduction(model, loss_fn, inputs, targets, (0, 0), None)
                if not checked and n >= 2:
                    _check_samples_apart(model, modules, inputs, targets, loss_fn, reduction)
                    checked = True
                grads = _probe_gradients(model, modules, inputs, targets, n, loss_fn, reduction)
            for key, grad in grads.items():
                sq_sums[key] = sq_sums[key] + grad.square().sum(0)
            count += n
    if count == 0:
        raise ValueError("batches yielded no samples: the fisher group criterion needs data.")
    scores = {}
    for name, norm in norms.items():
        sq_mean = sq_sums[id(norm)] / count  # (2, C): E[g_γ²], E[g_β²]
        parameters = torch.stack([norm.weight.detach(), norm.bias.detach()]).to(sq_mean.dtype)
        scores[name] = 0.5 * (parameters.square() * sq_mean).sum(0)
    return scores


def _check_samples_apart(model, norms, inputs, targets, loss_fn, reduction) -> None:
    """Raise unless sample 0's (g_γ, g_β) in a batch with sample 1 equal those of sample 0
    alone, in float32 (bfloat16's round-off would hide an interaction), as
    ``gp.gradient_stats`` checks the weights' per-sample gradients."""
    inputs, targets = in_check_dtype(inputs[:2]), in_check_dtype(targets[:2])
    with checked_in_float32(model):
        pair = _probe_gradients(model, norms, inputs, targets, 2, loss_fn, reduction)
        alone = _probe_gradients(model, norms, inputs[:1], targets[:1], 1, loss_fn, reduction)
    for key, grads in pair.items():
        difference = float((grads[0] - alone[key][0]).norm())
        scale = max(float(grads[0].norm()), float(alone[key][0].norm()))
        if difference > 1e-3 * scale + 1e-30:
            raise ValueError(
                f"the BatchNorm gradient of sample 0 computed alone differs from its share "
                f"of a batch (relative difference {difference / scale:.3g}): the samples "
                "interact inside the model or the loss, so per-sample gradients, which the "
                "fisher group criterion needs, are not defined. Use 'magnitude' or 'taylor'."
            )
