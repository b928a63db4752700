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

from .masks import MASK_BUFFER, apply_masks

#: Float dtypes tried for a CSR matmul kernel, in the order a fix is suggested.
_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def _csr(weight: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """CSR tensor holding exactly the ``keep`` entries of ``weight`` (kept zeros included)."""
    rows, columns = keep.nonzero(as_tuple=True)
    crow = torch.zeros(weight.shape[0] + 1, dtype=torch.int64, device=weight.device)
    crow[1:] = torch.cumsum(keep.sum(dim=1), dim=0)
    return torch.sparse_csr_tensor(
        crow, columns, weight.detach()[rows, columns], tuple(weight.shape), dtype=weight.dtype
    )


def _has_csr_kernel(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether ``addmm`` with a CSR weight runs for ``dtype`` on ``device`` (a 1×1 probe)."""
    one = torch.ones(1, 1, dtype=dtype, device=device)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            torch.addmm(one, one.to_sparse_csr(), one)
    except (NotImplementedError, RuntimeError):
        return False
    return True


def _check_csr_kernel(dtype: torch.dtype, device: torch.device, layer: str) -> None:
    if not _has_csr_kernel(dtype, device):
        working = [str(d).removeprefix("torch.") for d in _DTYPES if _has_csr_kernel(d, device)]
        raise ValueError(
            f"to_sparse: {layer} is {str(dtype).removeprefix('torch.')} on {device}, and torch "
            f"has no sparse CSR matmul kernel for that dtype there. Convert the model to "
            f"{' or '.join(working) or 'another dtype or device'} first (e.g. model.float()), "
            "or keep the masked dense model."
        )


def copy_model(model: nn.Module) -> nn.Module:
    """``copy.deepcopy(model)``, also for layers pruned with ``torch.nn.utils.prune``.

    Such a layer's ``weight`` is a tensor computed from ``weight_orig`` at the last forward,
    which ``copy.deepcopy`` refuses; the copy gets it detached (its pre-hook recomputes it).
    """
    memo = {}
    for module in model.modules():
        weight = module.__dict__.get("weight")
        if isinstance(weight, torch.Tensor) and not weight.is_leaf:
            memo[id(weight)] = weight.detach().clone()
    return copy.deepcopy(model, memo)


class SparseLinear(nn.Module):
    """y = x Wᵀ + b with W stored as CSR (out_features × in_features).

    Inputs are (…, in_features), outputs (…, out_features), like ``nn.Linear``.
    """

    def __init__(
        self, weight: torch.Tensor, bias: torch.Tensor | None, keep: torch.Tensor | None = None
    ):
        """``keep`` (bool, shaped like ``weight``): the entries to store; default its non-zeros."""
        super().__init__()
        self.out_features, self.in_features = weight.shape
        with warnings.catch_warnings():
            # "Sparse CSR tensor support is in beta": the ops we use are covered by tests.
            warnings.simplefilter("ignore", UserWarning)
            csr = weight.detach().to_sparse_csr() if keep is None else _csr(weight, keep)
            self.register_buffer("weight", csr)
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
        twin = SparseLinear(self.weight.to_dense(), self.bias, self._keep())
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
        apply_masks(linear, {"weight": self._keep()})
        return linear

    def _keep(self) -> torch.Tensor:
        """bool (out_features × in_features): the stored positions."""
        keep = torch.zeros(
            self.out_features, self.in_features, dtype=torch.bool, device=self.weight.device
        )
        rows = torch.repeat_interleave(
            torch.arange(self.out_features, device=keep.device),
            self.weight.crow_indices().diff(),
        )
        keep[rows, self.weight.col_indices()] = True
        return keep


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def to_sparse(model: nn.Module) -> nn.Module:
    """Return a copy whose masked ``nn.Linear`` layers compute with a CSR weight.

    Only layers with a mask applied (``gp.apply_masks`` / ``gp.prune``) are converted;
    CSR stores exactly their kept entries (nnz = mask.sum(), a kept weight that is exactly
    zero stored as an explicit zero). Other layers, masked convolutions included, are copied
    unchanged. Outputs equal the masked dense model's within float round-off (1e-5). The
    input model is not changed.

    Raises:
        ValueError: when the model has no masked ``nn.Linear`` to convert, or when a layer's
            dtype has no sparse CSR matmul kernel on its device (float16 and bfloat16 on
            CPU): the message names a dtype that works there.
    """
    linear = [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and module._buffers.get(MASK_BUFFER) is not None
    ]
    if not linear:
        raise ValueError(
            "to_sparse found no masked nn.Linear layer: prune the model first (gp.prune or "
            "gp.apply_masks); a dense layer gains nothing from a sparse format."
        )
    for name in linear:
        weight = model.get_submodule(name).weight
        _check_csr_kernel(weight.dtype, weight.device, name)
    sparse = copy_model(model)
    for name in linear:
        module = sparse.get_submodule(name)
        keep = getattr(module, MASK_BUFFER)
        _replace(sparse, name, SparseLinear(module.weight * keep, module.bias, keep))
    return sparse


def to_masked_dense(model: nn.Module) -> nn.Module:
    """A copy with every ``SparseLinear`` turned back into a masked ``nn.Linear``."""
    dense = copy_model(model)
    for name, module in list(dense.named_modules()):
        if isinstance(module, SparseLinear):
            _replace(dense, name, module.to_linear())
    return dense
