"""Sparse checkpoints: store only the kept weights, where they sit, and the dense shapes.

A prunable weight is stored as its kept values (same dtype) plus their positions, as
int32 flat indices or as a packed bitmask (1 bit per weight), whichever is smaller:
indices win below about 3% density. The kept positions are the applied mask, so a kept
weight that is exactly zero stays a kept weight; an unmasked layer keeps its non-zero
entries. Entries are keyed by the ``state_dict`` key of the tensor an optimiser trains:
``fc1.weight``, or ``fc1.weight_orig`` for a layer pruned with ``torch.nn.utils.prune``
(whose float ``weight_mask`` is then stored as is). Everything else in the ``state_dict``
(biases, buffers) is stored as is. Files are read with ``torch.load(weights_only=True)`` only, and
everything is checked before the model is touched, so a bad file leaves it unchanged.
"""

from __future__ import annotations

import io
import os
import pickle

import numpy as np
import torch
from torch import nn

from .layers import prunable_modules
from .masks import apply_masks, current_masks, remove_masks, trained_weight

FORMAT = "gradprune-lite-sparse"
VERSION = 1


def _trained_keys(model: nn.Module) -> dict[str, str]:
    """``{state_dict key: prunable weight name}`` for the tensor each prunable layer trains.

    Found by identity, so wrappers' prefixes (``_orig_mod.``, ``module.``) and
    ``torch.nn.utils.prune``'s ``weight_orig`` come out right.
    """
    key_of = {id(t): key for key, t in model.state_dict(keep_vars=True).items()}
    keys = {}
    for name, module in prunable_modules(model).items():
        key = key_of.get(id(trained_weight(module)))
        if key is not None:
            keys[key] = name
    return keys


def _kept(model: nn.Module) -> dict[str, torch.Tensor]:
    """bool mask per trained tensor (by state_dict key): the applied mask, else its non-zeros."""
    masks = current_masks(model)
    modules = prunable_modules(model)
    return {
        key: masks[name] if name in masks else trained_weight(modules[name]).detach() != 0
        for key, name in _trained_keys(model).items()
    }


def _encode_positions(keep: torch.Tensor) -> dict:
    flat = keep.flatten().cpu()
    kept = int(flat.sum())
    if kept * 4 < (flat.numel() + 7) // 8:
        return {"indices": flat.nonzero().flatten().to(torch.int32)}
    packed = np.packbits(flat.numpy().astype(np.uint8))
    return {"bitmask": torch.from_numpy(packed)}


def _decode_positions(entry: dict, numel: int, name: str, path) -> torch.Tensor:
    """Flat bool mask of ``numel`` entries from an ``indices`` or ``bitmask`` record."""
    if "indices" in entry:
        indices = entry["indices"]
        if not isinstance(indices, torch.Tensor) or indices.dtype != torch.int32:
            raise ValueError(f"{path}: {name} indices are not an int32 tensor; corrupt file.")
        if len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= numel):
            raise ValueError(f"{path}: {name} indices fall outside the weight; corrupt file.")
        keep = torch.zeros(numel, dtype=torch.bool)
        keep[indices.long()] = True
        if int(keep.sum()) != len(indices):
            raise ValueError(f"{path}: {name} indices repeat; corrupt file.")
        return keep
    packed = entry.get("bitmask")
    if not isinstance(packed, torch.Tensor) or packed.dtype != torch.uint8:
        raise ValueError(f"{path}: {name} has neither indices nor a uint8 bitmask; corrupt file.")
    if packed.numel() != (numel + 7) // 8:
        raise ValueError(f"{path}: {name} bitmask has the wrong length; corrupt file.")
    bits = np.unpackbits(packed.numpy(), count=numel)
    return torch.from_numpy(bits.astype(bool))


def sparse_state(model: nn.Module) -> dict:
    """The checkpoint as a dict of tensors, strings and lists (what ``save`` writes)."""
    kept = _kept(model)
    masked = current_masks(model)
    state = model.state_dict()
    sparse = {}
    for name, keep in kept.items():
        weight = state[name].detach()
        sparse[name] = {
            "shape": list(weight.shape),
            "values": weight[keep].cpu().clone(),
            **_encode_positions(keep),
        }
    dense = {k: v.detach().cpu().clone() for k, v in state.items() if k not in sparse}
    return {
        "format": FORMAT,
        "version": VERSION,
        "sparse": sparse,
        "dense": dense,
        "masked": sorted(key for key, name in _trained_keys(model).items() if name in masked),
    }


def save(model: nn.Module, path: str | os.PathLike) -> None:
    """Write ``model`` to ``path`` as a sparse checkpoint (see the module docstring)."""
    torch.save(sparse_state(model), path)


def _read(path) -> dict:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"no checkpoint at {path}; check the path.") from None
    except (RuntimeError, EOFError, pickle.UnpicklingError, OSError, ValueError) as error:
        raise ValueError(
            f"{path} is not a readable checkpoint ({type(error).__name__}: {error}); the file "
            "is truncated or corrupt. Save the model again with gp.save(model, path)."
        ) from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise ValueError(f"{path} is not a gradprune-lite sparse checkpoint (written by gp.save).")
    if checkpoint.get("version") != VERSION:
        raise ValueError(
            f"{path} has checkpoint version {checkpoint.get('version')!r}; this gradprune-lite "
            f"reads version {VERSION}."
        )
    return checkpoint


def load(path: str | os.PathLike, model: nn.Module) -> nn.Module:
    """Restore a checkpoint written by ``save`` into ``model``, bit-exactly.

    The masks saved with the model are applied again (replacing any on ``model``), so
    pruned weights stay pruned in further training.

    Raises:
        ValueError: if the file is missing, corrupt, or its names, shapes or dtypes do not
            match ``model``; the model is left untouched.
    """
    checkpoint = _read(path)
    target = model.state_dict()
    sparse, dense = checkpoint.get("sparse"), checkpoint.get("dense")
    if not isinstance(sparse, dict) or not isinstance(dense, dict):
        raise ValueError(f"{path}: missing its sparse or dense part; corrupt file.")
    saved_names, model_names = set(sparse) | set(dense), set(target)
    if saved_names != model_names:
        raise ValueError(
            f"{path} does not fit this model: only in the file {sorted(saved_names - model_names)}, "
            f"only in the model {sorted(model_names - saved_names)}. Load it into the same "
            "architecture it was saved from."
        )
    restored: dict[str, torch.Tensor] = {}
    masks: dict[str, torch.Tensor] = {}
    for name, entry in sparse.items():
        expected = target[name]
        if not isinstance(entry, dict) or list(entry.get("shape", [])) != list(expected.shape):
            shape = entry.get("shape") if isinstance(entry, dict) else None
            raise ValueError(
                f"{path}: {name} has shape {shape} in the file but {list(expected.shape)} in "
                "the model. Load it into the same architecture it was saved from."
            )
        keep = _decode_positions(entry, expected.numel(), name, path)
        values = entry.get("values")
        if not isinstance(values, torch.Tensor) or values.dtype != expected.dtype:
            raise ValueError(f"{path}: {name} values are missing or of the wrong dtype.")
        if values.numel() != int(keep.sum()):
            raise ValueError(
                f"{path}: {name} stores {values.numel()} values for {int(keep.sum())} kept "
                "positions; corrupt file."
            )
        weight = torch.zeros(expected.numel(), dtype=expected.dtype)
        weight[keep] = values
        restored[name] = weight.reshape(expected.shape)
        masks[name] = keep.reshape(expected.shape)
    for name, value in dense.items():
        expected = target[name]
        if not isinstance(value, torch.Tensor) or value.shape != expected.shape:
            raise ValueError(
                f"{path}: {name} has shape {getattr(value, 'shape', None)} in the file but "
                f"{tuple(expected.shape)} in the model."
            )
        if value.dtype != expected.dtype:
            raise ValueError(f"{path}: {name} is {value.dtype} in the file, {expected.dtype} here.")
        restored[name] = value
    # Everything is checked: only now is the model written to.
    model.load_state_dict(restored, strict=True)
    remove_masks(model)
    names = _trained_keys(model)
    masked = [key for key in checkpoint.get("masked", []) if key in masks and key in names]
    if masked:
        apply_masks(model, {names[key]: masks[key] for key in masked})
    return model


def _saved_bytes(obj) -> int:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getbuffer().nbytes


def checkpoint_sizes(model: nn.Module) -> dict[str, int]:
    """Bytes of ``gp.save(model)`` against ``torch.save(model.state_dict())``.

    Returns ``{"sparse_bytes": ..., "dense_bytes": ...}``.
    """
    return {
        "sparse_bytes": _saved_bytes(sparse_state(model)),
        "dense_bytes": _saved_bytes(model.state_dict()),
    }
