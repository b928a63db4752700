"""How a mask holds: it lives with the parameter, not with an optimiser.

A layer with a mask (the bool buffer ``weight_keep``, True = keep) is *held* by three
things, none of which belongs to an optimiser:

* a post-accumulate-grad hook on the parameter zeroes its gradient at pruned entries
  after every backward, so ``clip_grad_norm_`` and any optimiser see zero there;
* torch's *global* optimiser step hooks (``register_optimizer_step_pre_hook`` and
  ``..._post_hook``, one pair for the whole process) multiply every held parameter an
  optimiser just stepped by its mask, and that optimiser's state tensors shaped like it
  (momentum, Adam moments) the first time they meet the mask: weight decay, stale state or
  an unusual update rule cannot move a pruned weight off zero, with any optimiser,
  including one created after pruning. The weight's multiply is skipped only where it
  provably changes nothing (see ``_after_any_step``);
* a marker object in the layer's ``__dict__`` re-establishes the first two for copies:
  ``copy.deepcopy`` gives the copy fresh parameters with no hooks, and copies the marker,
  whose ``__deepcopy__`` holds the copy's own parameter; an unpickled layer is held at the
  next optimiser step. A load post-hook re-holds a parameter replaced by
  ``load_state_dict(assign=True)``. (A forward pre-hook could do the same, but every
  forward would pay for it: 3% of a masked LeNet-300-100 epoch, measured.)

The registry maps each held parameter (weakly, by identity) to a ``_Hold``, which refers to
its layer weakly too: holding a mask never keeps a model or an optimiser alive, and
``release`` removes every hook (the global one when nothing is held any more).

Multipliers are cached in the weight's dtype (a float32 copy of the mask for a float32
weight): same-dtype tensors take CUDA's fused multi-tensor path, and on CPU a float32
multiply measured about 2× faster than one by the mask's bytes viewed as uint8. No host
synchronisation happens in any hook.

A layer pruned with ``torch.nn.utils.prune`` is held through ``weight_orig``, the tensor
its optimiser updates (``weight`` is recomputed from it before every forward).
"""

from __future__ import annotations

import weakref

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

MASK_BUFFER = "weight_keep"
#: Bit weights of one packed byte, most significant first (``numpy.packbits``' order).
_BITS = (128, 64, 32, 16, 8, 4, 2, 1)


class _Registry:
    """Held tensors → ``_Hold``, by identity and weakly: an entry dies with its tensor.

    A plain dict keyed by ``id`` with a weak reference to check identity: a lookup costs a
    dict access (torch's ``WeakIdKeyDictionary`` measured about 7 µs a lookup here, which
    every step pays once per parameter).
    """

    def __init__(self):
        self._entries: dict[int, tuple[weakref.ref, _Hold]] = {}

    def get(self, tensor) -> _Hold | None:
        entry = self._entries.get(id(tensor))
        return entry[1] if entry is not None and entry[0]() is tensor else None

    def __setitem__(self, tensor: torch.Tensor, hold: _Hold) -> None:
        key = id(tensor)

        def forget(ref, key=key, entries=self._entries):
            entry = entries.get(key)
            if entry is not None and entry[0] is ref:
                del entries[key]

        self._entries[key] = (weakref.ref(tensor, forget), hold)

    def __delitem__(self, tensor: torch.Tensor) -> None:
        del self._entries[id(tensor)]

    def __len__(self) -> int:
        return len(self._entries)


_global_hooks = ()  # the optimiser step pre- and post-hook, while anything is held


def torch_pruning_hook(module: nn.Module):
    """The ``torch.nn.utils.prune`` method that recomputes ``module.weight``, or None."""
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, torch_prune.BasePruningMethod) and hook._tensor_name == "weight":
            return hook
    return None


def trained_weight(module: nn.Module) -> torch.Tensor:
    """The tensor an optimiser updates for ``module.weight``.

    Normally ``module.weight`` itself. Under ``torch.nn.utils.prune`` it is ``weight_orig``:
    ``weight`` is then a product recomputed from it before every forward, so zeros written
    into ``weight`` would be overwritten by the next forward.
    """
    weight = module._parameters.get("weight")
    if weight is not None:  # the common case, checked first: forward pre-hooks call this
        return weight
    original = module._parameters.get("weight_orig")
    if original is not None and torch_pruning_hook(module) is not None:
        return original
    return getattr(module, "weight", None)


def refresh_derived_weight(module: nn.Module) -> None:
    """Recompute ``weight`` of a torch-pruned layer now, as its pre-hook does at forward."""
    hook = torch_pruning_hook(module)
    if hook is not None:
        hook(module, None)


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """bool tensor (any shape, any device) → uint8 tensor of ⌈numel/8⌉ packed bits."""
    flat = mask.flatten().to(torch.uint8)
    flat = torch.nn.functional.pad(flat, (0, (-flat.numel()) % 8)).view(-1, 8)
    bits = torch.tensor(_BITS, dtype=torch.uint8, device=mask.device)
    return (flat * bits).sum(dim=1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Inverse of ``pack_bits``: a bool tensor of ``shape``."""
    bits = torch.tensor(_BITS, dtype=torch.uint8, device=packed.device)
    flat = (packed.to(torch.uint8)[:, None] & bits) != 0
    return flat.flatten()[: torch.Size(shape).numel()].view(shape)


class _Hold:
    """One held layer: a weak link to it, the gradient hook's handle, cached multipliers."""

    __slots__ = (
        "module",
        "handle",
        "factors",
        "packed",
        "clean",
        "zeroed",
        "masked_grad",
        "version_before_step",
        "__weakref__",
    )

    def __init__(self, module: nn.Module):
        self.module = weakref.ref(module)
        self.handle = None
        self.factors: dict = {}  # (dtype, device) → (mask, mask version, multiplier)
        self.packed = None  # (mask, mask version, packed bits) for state_dict
        self.clean: dict = {}  # id(state tensor) → (weak ref, mask, mask version)
        # What proves the pruned entries are zero without touching them (see _after_any_step):
        self.zeroed = None  # (weight version, mask, mask version) when they were last zero
        self.masked_grad = None  # (weak ref to the grad, its version) after masking it
        self.version_before_step = None  # the weight's version as the last step began

    def mark_zeroed(self, weight: torch.Tensor) -> None:
        """Record that ``weight`` is zero at pruned entries now."""
        mask = self.mask()
        self.zeroed = (weight._version, mask, None if mask is None else mask._version)

    def provably_zero(self, weight: torch.Tensor) -> bool:
        """Whether ``weight``'s pruned entries are zero after a step of a zero-preserving
        optimiser: they were zero when last checked, nothing wrote to the weight between then
        and the step, and its gradient is the one we masked, unchanged since."""
        zeroed, seen, mask = self.zeroed, self.masked_grad, self.mask()
        return (
            zeroed is not None
            and seen is not None
            and zeroed[0] == self.version_before_step
            and zeroed[1] is mask
            and zeroed[2] == mask._version
            and seen[0]() is weight.grad
            and seen[1] == weight.grad._version
        )

    def is_clean(self, value: torch.Tensor) -> bool:
        """Whether optimiser state ``value`` was zeroed at pruned entries of the current mask."""
        entry = self.clean.get(id(value))
        mask = self.mask()
        return (
            entry is not None
            and entry[0]() is value
            and entry[1] is mask
            and entry[2] == mask._version
        )

    def mark_clean(self, value: torch.Tensor) -> None:
        if len(self.clean) > 32:  # state replaced many times (optimizer.load_state_dict)
            self.clean = {k: e for k, e in self.clean.items() if e[0]() is not None}
        mask = self.mask()
        self.clean[id(value)] = (weakref.ref(value), mask, mask._version)

    def mask(self) -> torch.Tensor | None:
        module = self.module()
        return None if module is None else module._buffers.get(MASK_BUFFER)

    def factor(self, like: torch.Tensor) -> torch.Tensor | None:
        """The mask as 0/1 in ``like``'s dtype and device (cached until the mask changes)."""
        mask = self.mask()
        if mask is None:
            return None
        key = (like.dtype, like.device)
        cached = self.factors.get(key)
        if cached is not None and cached[0] is mask and cached[1] == mask._version:
            return cached[2]
        factor = mask.to(device=like.device, dtype=like.dtype)
        self.factors[key] = (mask, mask._version, factor)
        return factor

    def mask_gradient(self, param: torch.Tensor) -> None:
        """Post-accumulate-grad hook: zero ``param.grad`` at pruned entries, in place."""
        grad = param.grad
        if grad is not None:
            factor = self.factor(grad)
            if factor is not None:
                with torch.no_grad():
                    grad.mul_(factor)
                self.masked_grad = (weakref.ref(grad), grad._version)


_HELD = _Registry()  # trained tensor → _Hold


#: Optimisers whose step leaves a weight exactly zero when its gradient and its state are
#: zero: every update is a product with the gradient or with state built only from it
#: (m/(√v+ε) with m = 0, SGD's momentum, Adagrad's g/(√Σg²+ε)), and weight decay scales the
#: weight. Exact types only: a subclass may change the step.
ZERO_PRESERVING = (
    torch.optim.SGD,
    torch.optim.Adam,
    torch.optim.AdamW,
    torch.optim.NAdam,
    torch.optim.RAdam,
    torch.optim.Adamax,
    torch.optim.Adagrad,
    torch.optim.RMSprop,
    torch.optim.Adadelta,
)


def _before_any_step(optimizer: torch.optim.Optimizer, args, kwargs) -> None:
    """Global step pre-hook: note each held weight's version, to see writes since last step."""
    if _PENDING:
        hold_pending()
    for group in optimizer.param_groups:
        for param in group["params"]:
            hold = _HELD.get(param)
            if hold is not None:
                hold.version_before_step = param._version


def _after_any_step(optimizer: torch.optim.Optimizer, args, kwargs) -> None:
    """Global step post-hook: keep the held weights ``optimizer`` stepped exactly zero.

    A weight is multiplied by its mask unless that provably changes nothing: a
    ``ZERO_PRESERVING`` optimiser stepped it, its pruned entries were zero before (no write
    since we last knew), its gradient is the one our hook masked, and its optimiser state
    was already clean. Anything else (another optimiser, a gradient set by hand or clipped,
    a weight written to, stale state) takes the multiply. A state tensor (momentum, Adam
    moments) is multiplied the first time it is seen with the current mask; from then on
    its pruned entries stay zero by themselves. Measured on LeNet-300-100, the per-step
    multiplies of weights and state were most of the masked epoch's extra cost.
    """
    preserving = type(optimizer) in ZERO_PRESERVING
    tensors, factors, held, derived = [], [], [], []
    for group in optimizer.param_groups:
        for param in group["params"]:
            hold = _HELD.get(param)
            factor = None if hold is None else hold.factor(param)
            if factor is None:
                continue
            held.append((hold, param))
            stale = False
            state = optimizer.state.get(param)
            if state:
                for value in state.values():
                    if (
                        isinstance(value, torch.Tensor)
                        and value.shape == param.shape
                        and not hold.is_clean(value)
                    ):
                        tensors.append(value)
                        factors.append(factor if value.dtype == param.dtype else hold.factor(value))
                        hold.mark_clean(value)
                        stale = True
            module = hold.module()
            if param is not module.weight:  # torch.nn.utils.prune: weight is derived
                derived.append(module)
            elif preserving and not stale and hold.provably_zero(param):
                continue
            tensors.append(param)
            factors.append(factor)
    if tensors:
        with torch.no_grad():
            torch._foreach_mul_(tensors, factors)
    for hold, param in held:
        hold.mark_zeroed(param)
    for module in derived:
        refresh_derived_weight(module)


#: Attribute of a held layer holding its ``_Marker``.
MARKER = "_gradprune_hold"
_PENDING: list = []  # weak refs to copied or unpickled layers whose masks are not held yet


class _Marker:
    """Sits in a held layer's ``__dict__`` so that copies of the layer hold their masks too.

    ``copy.deepcopy`` gives the copy fresh parameters without hooks. While it copies the
    layer it copies this marker too (after the parameters, which come first in the
    layer's ``__dict__``), and ``__deepcopy__`` then holds the copy's parameter at once.
    An unpickled layer, or a copy whose parameter was not copied yet, waits in a queue
    that the next optimiser step (or ``gp.hold_masks``) empties, masking the gradients
    it finds. A hook on every forward would do the same, at a measured 3% of a masked
    LeNet-300-100 epoch.
    """

    __slots__ = ("module", "__weakref__")

    def __init__(self, module: nn.Module):
        self.module = weakref.ref(module)

    def __deepcopy__(self, memo) -> _Marker:
        old = self.module()
        new = memo.get(id(old)) if old is not None else None
        twin = _Marker.__new__(_Marker)
        twin.module = weakref.ref(new) if new is not None else _nothing
        if new is None:
            return twin
        old_weight = trained_weight(old)
        new_weight = memo.get(id(old_weight)) if old_weight is not None else None
        if isinstance(new_weight, torch.Tensor) and MASK_BUFFER in old._buffers:
            _register(new, new_weight)
        else:
            _PENDING.append(weakref.ref(new))
            _ensure_global_hooks()
        return twin

    def __reduce__(self):
        return (_unpickled_marker, (self.module(),))


def _nothing() -> None:
    """Stands in for a dead weak reference."""
    return None


def _unpickled_marker(module: nn.Module | None) -> _Marker:
    marker = _Marker.__new__(_Marker)
    marker.module = weakref.ref(module) if module is not None else _nothing
    if module is not None:
        _PENDING.append(weakref.ref(module))
        _ensure_global_hooks()
    return marker


def hold_pending() -> None:
    """Hold the masks of copied or unpickled layers queued by ``_Marker``."""
    while _PENDING:
        module = _PENDING.pop()()
        if module is not None and MASK_BUFFER in module._buffers:
            hold_module(module)
            weight = trained_weight(module)
            _HELD.get(weight).mask_gradient(weight)  # a gradient from before we held it


def _hold_after_load(module: nn.Module, incompatible_keys) -> None:
    """Load post-hook: ``load_state_dict(assign=True)`` may have replaced the parameter."""
    if MASK_BUFFER in module._buffers:
        hold_module(module)


def _save_mask(module: nn.Module, state_dict, prefix: str, local_metadata: dict) -> None:
    """state_dict hook: the mask as packed bits in the layer's metadata, not as a key."""
    mask = module._buffers.get(MASK_BUFFER)
    if mask is None:
        return
    hold = _HELD.get(trained_weight(module))
    if hold is not None and hold.packed is not None:
        cached, version, packed = hold.packed
        if cached is mask and version == mask._version:
            local_metadata[MASK_BUFFER] = packed
            return
    packed = pack_bits(mask)
    if hold is not None:
        hold.packed = (mask, mask._version, packed)
    local_metadata[MASK_BUFFER] = packed


def _has_hook(hooks, function) -> bool:
    return any(hook is function for hook in hooks.values())


def _register_state_dict_hook(module: nn.Module) -> None:
    if _has_hook(module._state_dict_hooks, _save_mask):
        return
    if hasattr(module, "register_state_dict_post_hook"):
        module.register_state_dict_post_hook(_save_mask)
    else:  # torch < 2.2
        module._register_state_dict_hook(_save_mask)


def _ensure_global_hooks() -> None:
    global _global_hooks
    if not _global_hooks:
        _global_hooks = (
            register_optimizer_step_pre_hook(_before_any_step),
            register_optimizer_step_post_hook(_after_any_step),
        )


def _register(module: nn.Module, weight: torch.Tensor) -> _Hold:
    """Link ``weight`` (the tensor ``module`` trains) to ``module`` and hook its gradient."""
    hold = _HELD.get(weight)
    if hold is not None and hold.module() is module:
        return hold
    if hold is not None and hold.handle is not None:
        hold.handle.remove()
    hold = _Hold(module)
    if weight.requires_grad:
        hold.handle = weight.register_post_accumulate_grad_hook(hold.mask_gradient)
    _HELD[weight] = hold
    _ensure_global_hooks()
    return hold


def hold_module(module: nn.Module) -> None:
    """Hold ``module``'s mask (it must have one) through any optimiser; idempotent."""
    _register(module, trained_weight(module))
    if not isinstance(module.__dict__.get(MARKER), _Marker):
        module.__dict__[MARKER] = _Marker(module)
    _register_state_dict_hook(module)
    if not _has_hook(module._load_state_dict_post_hooks, _hold_after_load):
        module.register_load_state_dict_post_hook(_hold_after_load)


def release_module(module: nn.Module) -> None:
    """Undo ``hold_module``: no hook and no reference to ``module`` stays behind."""
    global _global_hooks
    candidates = (trained_weight(module), getattr(module, "weight", None))
    for tensor in {id(t): t for t in candidates if isinstance(t, torch.Tensor)}.values():
        hold = _HELD.get(tensor)
        if hold is not None and hold.module() is module:
            if hold.handle is not None:
                hold.handle.remove()
            del _HELD[tensor]
    for hooks, function in (
        (module._load_state_dict_post_hooks, _hold_after_load),
        (module._state_dict_hooks, _save_mask),
    ):
        for key in [k for k, hook in hooks.items() if hook is function]:
            del hooks[key]
    module.__dict__.pop(MARKER, None)
    _PENDING[:] = [ref for ref in _PENDING if ref() is not module]
    if not _HELD and not _PENDING and _global_hooks:
        for handle in _global_hooks:
            handle.remove()
        _global_hooks = ()


def is_held(module: nn.Module) -> bool:
    """Whether ``module``'s trained weight is held for ``module`` right now."""
    hold = _HELD.get(trained_weight(module))
    return hold is not None and hold.module() is module


def zero_pruned(modules, optimizer: torch.optim.Optimizer | None = None) -> None:
    """Multiply the masked weights of ``modules`` (and ``optimizer``'s state) by their masks now."""
    modules = list(modules)
    tensors, factors = [], []
    for module in modules:
        mask = module._buffers.get(MASK_BUFFER)
        if mask is None:
            continue
        weight = trained_weight(module)
        factor = mask.to(device=weight.device, dtype=weight.dtype)
        tensors.append(weight)
        factors.append(factor)
        state = optimizer.state.get(weight, {}) if optimizer is not None else {}
        for value in state.values():
            if isinstance(value, torch.Tensor) and value.shape == weight.shape:
                tensors.append(value)
                factors.append(factor.to(value.dtype))
    if tensors:
        with torch.no_grad():
            torch._foreach_mul_(tensors, factors)
    for module in modules:
        refresh_derived_weight(module)
        hold = _HELD.get(trained_weight(module))
        if hold is not None and hold.module() is module:
            hold.mark_zeroed(trained_weight(module))
