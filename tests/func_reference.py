"""The independent reference for per-sample gradients: torch.func vmap(grad(...)).

g_n = ∂ℓ_n/∂θ with ℓ_n the loss of sample n run through the model alone (eval mode),
for every parameter, keyed like ``model.named_parameters()`` (a tied weight once).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap


def per_sample_reference(model, batches, loss_fn=F.cross_entropy, sample_dim=(0, 0)):
    """dict name → (N, *param.shape) per-sample gradients over all batches, in order."""
    model = copy.deepcopy(model).eval()
    params = {k: v.detach() for k, v in model.named_parameters()}
    in_dim, target_dim = sample_dim

    def sample_loss(p, x, y):
        out = functional_call(model, p, (x.unsqueeze(in_dim),))
        return loss_fn(out, y.unsqueeze(target_dim)).sum()

    per_sample = vmap(grad(sample_loss), in_dims=(None, in_dim, target_dim))
    per_batch = [per_sample(params, x, y) for x, y in batches]
    return {k: torch.cat([b[k] for b in per_batch]) for k in params}


def assert_stats_match(stats, reference, rtol=1e-4, atol=1e-6):
    """mean, sq_mean and var of every entry of ``stats`` against the reference's moments."""
    for name, s in stats.items():
        g = reference[name].to(s.mean.dtype)
        assert s.count == g.shape[0], name
        for got, want in [
            (s.mean, g.mean(0)),
            (s.sq_mean, g.square().mean(0)),
            (s.var, g.var(0, unbiased=False)),
        ]:
            close = torch.isclose(got, want, rtol=rtol, atol=atol)
            worst = float((got - want).abs().max())
            assert bool(close.all()), f"{name}: {int((~close).sum())} entries off, max {worst:.3g}"
