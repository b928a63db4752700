"""Exercise 7: the Optimal Brain Surgeon update, against a constrained least-squares solve."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._common import call, check_tensor, close, self_check


def kkt_step(fisher: torch.Tensor, w: torch.Tensor, q: int) -> torch.Tensor:
    """argmin ½ δwᵀ F δw subject to w_q + δw_q = 0, from the KKT system (no F⁻¹ formula).

    [F  e_q] [δw]   [0   ]
    [e_qᵀ 0] [μ ] = [-w_q]
    """
    n = len(w)
    system = torch.zeros(n + 1, n + 1, dtype=fisher.dtype)
    system[:n, :n] = fisher
    system[:n, n] = system[n, :n] = torch.nn.functional.one_hot(torch.tensor(q), n).to(fisher)
    rhs = torch.zeros(n + 1, dtype=fisher.dtype)
    rhs[n] = -w[q]
    return torch.linalg.solve(system, rhs)[:n]


def _problem(seed: int = 10, n: int = 12, samples: int = 40):
    generator = torch.Generator().manual_seed(seed)
    g = torch.randn(samples, n, generator=generator, dtype=torch.float64)
    fisher = g.T @ g / samples + 1e-3 * torch.eye(n, dtype=torch.float64)
    w = torch.randn(n, generator=generator, dtype=torch.float64)
    return fisher, torch.linalg.inv(fisher), w


@self_check
def check_obs_update(obs_update: Callable) -> bool:
    """Check ``obs_update(F_inv, w, q) -> δw`` (shaped like ``w``): the OBS weight change.

    Reference: the minimiser of ½ δwᵀ F δw with δw_q = −w_q, solved as a KKT system.
    """
    fisher, f_inv, w = _problem()
    for q in (0, 5, 11):
        want = kkt_step(fisher, w, q)
        got = check_tensor(
            call(obs_update, "obs_update", f_inv.clone(), w.clone(), q), w.shape, "δw"
        )
        if close(got, want, rtol=1e-6, atol=1e-9):
            continue
        assert not close(got, -want, rtol=1e-6, atol=1e-9), (
            f"q={q}: wrong sign; w_q + δw_q must be 0."
        )
        assert not close(got, -fisher[:, q] * w[q] / fisher[q, q], rtol=1e-6, atol=1e-9), (
            f"q={q}: you used F where F⁻¹ belongs (column and diagonal of F_inv)."
        )
        assert not close(got, -f_inv[:, q] * w[q], rtol=1e-6, atol=1e-9), (
            f"q={q}: divide by [F⁻¹]_qq."
        )
        assert abs(float(w[q] + got[q])) < 1e-8, f"q={q}: w_q + δw_q must be 0; it is not."
        raise AssertionError(f"q={q}: δw differs from the constrained minimiser.")


@self_check
def check_obs_saliency(obs_saliency: Callable) -> bool:
    """Check ``obs_saliency(F_inv, w) -> L`` (shaped like ``w``): ½ δwᵀ F δw for each q."""
    fisher, f_inv, w = _problem(seed=11)
    want = torch.stack([0.5 * kkt_step(fisher, w, q) @ fisher @ kkt_step(fisher, w, q)
                        for q in range(len(w))])  # fmt: skip
    got = check_tensor(call(obs_saliency, "obs_saliency", f_inv.clone(), w.clone()), w.shape, "L")
    if close(got, want, rtol=1e-6, atol=1e-10):
        return
    assert not close(got, 2 * want, rtol=1e-6), "The ½ is missing: L_q = w_q² / (2 [F⁻¹]_qq)."
    assert not close(got, w.square() * fisher.diagonal() / 2, rtol=1e-6), (
        "That is ½ w² F_qq (diagonal, OBD); OBS divides by [F⁻¹]_qq instead."
    )
    raise AssertionError("The saliency differs from ½ δwᵀ F δw of the OBS step.")
