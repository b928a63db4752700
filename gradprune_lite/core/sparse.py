"""Sparse execution: masked ``nn.Linear`` layers computing with a CSR weight.

A masked dense layer multiplies every zero. A CSR (compressed sparse row) weight stores
only the kept values, their column indices and one offset per row, and the matmul touches
only those. That pays off only when few weights are left and the batch is large enough to
amortise the irregular memory access. Measured on this project's 2-core CPU, one thread,
the whole LeNet-300-100 forward (``benchmarks/speed.py``, ``docs/PERFORMANCE.md``):

* at 0% sparsity CSR is 3-8× *slower* than dense, and still slower at 50%;
* at batch 256 it is about 1.5× faster at 90% sparsity and 3-4× at 98%;
* at batch 1 it was slower at every sparsity (0.7-0.8× at 98%): one dense matrix-vector
  product is already cheap, and each sparse call's fixed overhead costs more than the
  skipped zeros save.

The CSR weight is a buffer: the converted model is for inference, not for training.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from .masks import MASK_BUFFER, apply_masks, current_masks


class SparseLinear(nn.Module):
    """y = x Wᵀ + b with W stored as CSR (out_features × in_features).

    Inputs are (…, in_features), outputs (…, out_features), like ``nn.Linear``.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        with warnings.catch_warnings():
            # "Sparse CSR tensor support is in beta": the ops we use are covered by tests.
            warnings.simplefilter("ignore", UserWarning)
            self.register_buffer("weight", weight.detach().to_sparse_csr())
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        if self.bias is None:
            out = (self.weight @ flat.T).T
        else:  # one fused call: at batch 1 the call overhead is most of the time
            out = torch.addmm(self.bias[:, None], self.weight, flat.T).T
        return out.reshape(*x.shape[:-1], self.out_features)

    def __deepcopy__(self, memo) -> SparseLinear:
        # CSR tensors have no storage that copy.deepcopy can reach; rebuild from the values.
        twin = SparseLinear(self.weight.to_dense(), self.bias)
        twin.train(self.training)
        memo[id(self)] = twin
        return twin

    def extra_repr(self) -> str:
        nonzero = self.weight.values().numel()
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"kept={nonzero}/{self.in_features * self.out_features}"
        )

    def to_linear(self) -> nn.Linear:
        """The equivalent masked dense ``nn.Linear`` (kept positions as the mask)."""
        dense = self.weight.to_dense()
        linear = nn.Linear(
            self.in_features, self.out_features, bias=self.bias is not None, device=dense.device
        )
        with torch.no_grad():
            linear.weight.copy_(dense)
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        keep = torch.zeros_like(dense, dtype=torch.bool)
        rows = torch.repeat_interleave(
            torch.arange(self.out_features, device=dense.device),
            self.weight.crow_indices().diff(),
        )
        keep[rows, self.weight.col_indices()] = True
        apply_masks(linear, {"weight": keep})
        return linear


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def to_sparse(model: nn.Module) -> nn.Module:
    """Return a copy whose masked ``nn.Linear`` layers compute with a CSR weight.

    Only layers with a mask applied (``gp.apply_masks`` / ``gp.prune``) are converted;
    CSR stores exactly their kept entries. Other layers, masked convolutions included,
    are copied unchanged. Outputs equal the masked dense model's within float round-off
    (1e-5). The input model is not changed.

    Raises:
        ValueError: when the model has no masked ``nn.Linear`` to convert.
    """
    masks = current_masks(model)
    linear = [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and f"{name}.weight" in masks
    ]
    if not linear:
        raise ValueError(
            "to_sparse found no masked nn.Linear layer: prune the model first (gp.prune or "
            "gp.apply_masks); a dense layer gains nothing from a sparse format."
        )
    sparse = copy.deepcopy(model)
    for name in linear:
        module = sparse.get_submodule(name)
        keep = getattr(module, MASK_BUFFER)
        _replace(sparse, name, SparseLinear(module.weight * keep, module.bias))
    return sparse


def to_masked_dense(model: nn.Module) -> nn.Module:
    """A copy with every ``SparseLinear`` turned back into a masked ``nn.Linear``."""
    dense = copy.deepcopy(model)
    for name, module in list(dense.named_modules()):
        if isinstance(module, SparseLinear):
            _replace(dense, name, module.to_linear())
    return dense
