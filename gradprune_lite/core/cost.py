"""What a model costs: parameters, multiply-accumulates and checkpoint bytes.

MACs are counted by PyTorch's own ``torch.utils.flop_counter.FlopCounterMode`` on a real
forward pass (it counts 2 FLOPs per multiply-accumulate of every matmul and convolution),
never from a formula of ours. They are *dense-equivalent*: a masked or CSR weight is
counted at its full size, because that is what a dense kernel multiplies. A physically
smaller model (``gp.structured_prune``) is counted at its smaller size.
"""

from __future__ import annotations

import torch
from torch import nn

from .io import checkpoint_sizes
from .layers import prunable_modules
from .masks import trained_weight
from .sparse import to_masked_dense


def _as_used(model: nn.Module) -> list[torch.Tensor]:
    """The parameters as the forward uses them: a ``torch.nn.utils.prune`` layer's
    ``weight_orig`` counts as its masked ``weight``."""
    derived = {}
    for module in prunable_modules(model).values():
        trained = trained_weight(module)
        if trained is not module.weight:
            derived[id(trained)] = module.weight
    return [derived.get(id(p), p) for p in model.parameters()]


def model_cost(model: nn.Module, example_inputs) -> dict[str, int]:
    """Cost of ``model`` on one forward pass of ``example_inputs``.

    Args:
        model: any model; ``gp.to_sparse`` models are counted as their masked dense twin,
            and a layer pruned with ``torch.nn.utils.prune`` by its masked weight.
        example_inputs: a tensor (or tuple of tensors); pass a batch of one for per-sample
            MACs.

    Returns:
        dict with ``params`` (non-zero parameter entries), ``params_dense`` (all entries),
        ``macs`` (dense-equivalent multiply-accumulates of the whole pass) and
        ``checkpoint_bytes`` (size of ``gp.save``'s sparse checkpoint).
    """
    # Imported here: torch's flop counter loads Triton where it is installed (0.8 s of a
    # 1.2 s import of gradprune_lite on a 2-core machine), which only this function needs.
    from torch.utils.flop_counter import FlopCounterMode

    dense = to_masked_dense(model)  # a copy: the forward leaves the model untouched
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        dense(*example_inputs)
    parameters = _as_used(dense)
    return {
        "params": sum(int(torch.count_nonzero(p)) for p in parameters),
        "params_dense": sum(p.numel() for p in parameters),
        "macs": counter.get_total_flops() // 2,
        "checkpoint_bytes": checkpoint_sizes(dense)["sparse_bytes"],
    }
