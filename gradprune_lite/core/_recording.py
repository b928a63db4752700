"""The fast path's recorded pass, and the checks that say where it is exact.

One forward/backward per batch records, for every call of a plain ``nn.Linear`` or
``nn.Conv2d``, its input x and the gradient d of the summed per-sample losses with respect
to its output. A weight's per-sample gradient is then Σ_calls d_n x_nᵀ (unfolded for a
convolution), which ``stats.py`` forms without autograd. That is exact only when

* the weight is used by nothing but those calls: the autograd graph from the loss has
  exactly as many edges into the weight as there were calls (an attention layer's
  ``out_proj``, a weight transposed for a tied decoder or any other use outside the module
  call adds edges: the weight then goes to the ``torch.func`` fallback);
* each call's input and output have the samples along dimension 0 (else fallback);
* the recorded input and output are the values the call produced: a later in-place
  operation (``ReLU(inplace=True)``) would change them, so when one is detected the batch
  is recorded again with the call's output cloned before anything downstream sees it.

Weights frozen at recording (all parameters but the prunable weights) get no gradient;
the prunable weights require grad only so that their uses appear in the graph: the
backward stops at the recorded outputs and computes no weight gradient.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import parametrize

from ._scoring import LossFn, total_of_sample_losses


def graph_leaf(module: nn.Module) -> torch.Tensor:
    """The parameter through which ``module.weight`` enters the autograd graph.

    The weight itself, or ``weight_orig`` under ``torch.nn.utils.prune`` (the weight is then
    recomputed as ``weight_orig * weight_mask`` at every call), or the original of a
    ``torch.nn.utils.parametrize`` parametrization.
    """
    if isinstance(module.weight, nn.Parameter):
        return module.weight
    original = getattr(module, "weight_orig", None)
    if isinstance(original, nn.Parameter):
        return original
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    raise ValueError(
        f"the weight of {type(module).__name__} is neither a parameter nor computed from one "
        "by torch.nn.utils.prune or a parametrization, so its gradient cannot be followed."
    )


def fast_kind(module: nn.Module) -> str | None:
    """'linear' or 'conv2d' where the hook decomposition applies to ``module``, else None."""
    if isinstance(module, nn.Linear) and type(module).forward is nn.Linear.forward:
        return "linear"
    if (
        isinstance(module, nn.Conv2d)
        and type(module).forward is nn.Conv2d.forward
        and module.padding_mode == "zeros"
        and not isinstance(module.padding, str)
    ):
        return "conv2d"
    return None


@dataclass
class _Call:
    name: str
    module: nn.Module
    x: torch.Tensor
    x_version: int | None  # None when x was cloned (nothing can change it)
    output: torch.Tensor
    output_version: int

    def changed(self) -> bool:
        return (self.x_version is not None and self.x._version != self.x_version) or (
            self.output._version != self.output_version
        )


@dataclass
class BatchRecord:
    """What one batch gave: the fast calls per weight, and which weights need the fallback.

    fast: name → [(module, x, d)] with x: (n, …, in) inputs, d: (n, …, out) output gradients.
    fallback: names whose per-sample gradients the fast path cannot form exactly.
    used: names the loss depends on in this batch (fast or fallback).
    """

    n: int
    fast: dict[str, list[tuple[nn.Module, torch.Tensor, torch.Tensor]]] = field(
        default_factory=dict
    )
    fallback: list[str] = field(default_factory=list)

    @property
    def used(self) -> set[str]:
        return set(self.fast) | set(self.fallback)


class _Recorder:
    """Forward hooks on the fast candidates' modules; clones where in-place ops were seen."""

    def __init__(self, module_names: dict[int, tuple[str, nn.Module]], clone_ids: set[int]):
        self.calls: list[_Call] = []
        self.clone_ids = clone_ids
        self.handles = [
            module.register_forward_hook(self._hook(name), with_kwargs=True)
            for name, module in module_names.values()
        ]
        self.skipped: set[str] = set()

    def _hook(self, name: str):
        def hook(module, args, kwargs, output):
            x = args[0] if args else kwargs.get("input")
            if not isinstance(x, torch.Tensor) or not output.requires_grad:
                self.skipped.add(name)
                return None
            if id(module) in self.clone_ids:
                self.calls.append(
                    _Call(name, module, x.detach().clone(), None, output, output._version)
                )
                return output.clone()
            self.calls.append(_Call(name, module, x.detach(), x._version, output, output._version))
            return None

        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def weight_uses(root: torch.Tensor, weight_ids: set[int]) -> dict[int, int]:
    """Number of graph edges into each weight (by id) in the autograd graph of ``root``."""
    counts = dict.fromkeys(weight_ids, 0)
    if root.grad_fn is None:
        return counts
    seen = {root.grad_fn}
    stack = [root.grad_fn]
    while stack:
        node = stack.pop()
        for child, _ in node.next_functions:
            if child is None:
                continue
            variable = getattr(child, "variable", None)
            if variable is not None:  # an AccumulateGrad node: a leaf tensor's use
                if id(variable) in counts:
                    counts[id(variable)] += 1
            elif child not in seen:
                seen.add(child)
                stack.append(child)
    return counts


def record_batch(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    n: int,
    loss_fn: LossFn,
    reduction: str | None,
    groups: dict[str, list[nn.Module]],
    fast_allowed: bool,
    clone_ids: set[int],
) -> BatchRecord:
    """Record one batch (grad must be enabled); see the module docstring for the checks.

    ``groups``: name → modules holding that weight (the weights to examine).
    ``fast_allowed``: False when inputs are not batch-first (everything goes to fallback).
    ``clone_ids``: ids of modules whose outputs are cloned; grows when in-place ops are seen.
    """
    weights = {name: graph_leaf(modules[0]) for name, modules in groups.items()}
    candidates = {
        id(module): (name, module)
        for name, modules in groups.items()
        if fast_allowed and all(fast_kind(m) is not None for m in modules)
        for module in modules
    }
    for p in model.parameters():
        p.requires_grad_(False)
    for w in weights.values():
        w.requires_grad_(True)
    for _attempt in range(2):
        recorder = _Recorder(candidates, clone_ids)
        try:
            total = total_of_sample_losses(loss_fn(model(inputs), targets), n, reduction)
        finally:
            recorder.remove()
        changed = [call for call in recorder.calls if call.changed()]
        if not changed:
            break
        clone_ids.update(id(call.module) for call in changed)
    else:
        raise RuntimeError("recorded layer inputs kept changing in place after cloning them.")

    uses = weight_uses(total, {id(w) for w in weights.values()})
    calls = recorder.calls
    grads = (
        torch.autograd.grad(total, [c.output for c in calls], allow_unused=True)
        if calls and total.requires_grad
        else [None] * len(calls)
    )
    reached: dict[str, list[tuple[nn.Module, torch.Tensor, torch.Tensor]]] = {}
    for call, d in zip(calls, grads):
        if d is not None:
            reached.setdefault(call.name, []).append((call.module, call.x, d.detach()))

    record = BatchRecord(n=n)
    for name, weight in weights.items():
        edges = uses[id(weight)]
        if edges == 0:
            continue
        found = reached.get(name, [])
        exact = (
            name not in recorder.skipped
            and len(found) == edges
            and all(_batch_first(module, x, d, n) for module, x, d in found)
        )
        if exact:
            record.fast[name] = found
        else:
            record.fallback.append(name)
    return record


def _batch_first(module: nn.Module, x: torch.Tensor, d: torch.Tensor, n: int) -> bool:
    """Whether a call's input and output gradient hold the n samples along dimension 0."""
    wanted_dim = 4 if fast_kind(module) == "conv2d" else None
    if wanted_dim is not None and (x.dim() != wanted_dim or d.dim() != wanted_dim):
        return False
    return x.dim() >= 2 and x.shape[0] == n and d.shape[0] == n
