"""Round trips with PyTorch's own pruning API, ``torch.nn.utils.prune``."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from ._hold import MASK_BUFFER, release_module
from ._validate import check_masks_match
from .layers import prunable_modules, prunable_weights


def to_torch_prune(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> nn.Module:
    """Attach ``masks`` to ``model`` the ``torch.nn.utils.prune`` way (``custom_from_mask``).

    Afterwards each layer has ``weight_orig`` and a float ``weight_mask`` buffer, and the
    state_dict keys change, as that API does. Use ``torch_prune.remove`` to make it permanent.
    """
    check_masks_match(masks, prunable_weights(model))
    for name, module in prunable_modules(model).items():
        mask = masks[name].to(module.weight.device)
        # torch's float mask takes over from our bool one; two masks on a layer would fight.
        release_module(module)
        module._buffers.pop(MASK_BUFFER, None)
        torch_prune.custom_from_mask(module, "weight", mask)
    return model


def from_torch_prune(model: nn.Module) -> dict[str, torch.Tensor]:
    """Read the masks of a model pruned with ``torch.nn.utils.prune`` as our bool dict.

    Layers without a torch pruning mask get an all-True mask. The model is not changed.
    """
    masks = {}
    for name, module in prunable_modules(model).items():
        mask = getattr(module, "weight_mask", None)
        if mask is None or not torch_prune.is_pruned(module):
            weight = module.weight
            masks[name] = torch.ones_like(weight, dtype=torch.bool)
        else:
            masks[name] = mask.detach().bool().clone()
    return masks
