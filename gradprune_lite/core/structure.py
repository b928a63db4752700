"""Structured pruning: remove whole neurons and channels, giving a smaller dense model.

A mask zeroes weights but the matmuls keep their size, so masked models are no faster.
Removing the *k*-th output of a layer (a neuron of ``nn.Linear``, a channel of
``nn.Conv2d``) deletes row *k* of its weight and bias, the matching BatchNorm entries and
the matching input columns of every layer that reads it; every matmul shrinks.

A **group** is what produces one output unit: its weight row ``W[k]`` (all inputs and, for a
convolution, the whole kernel) and its bias ``b[k]``. Group criteria score each unit; the
lowest are removed. Built-in criteria, in ``GROUP_CRITERIA``:

* ``magnitude``: ‖(W[k], b[k])‖₂, the L2 norm of the group;
* ``taylor`` (Molchanov et al., CVPR 2019): per batch the group's first-order Taylor term
  s = Σ_{w in group} g·w, squared and summed over batches. For a unit with pre-activation
  z = W[k]·x + b[k] the sum telescopes to s = Σ_samples,positions ∂L/∂z · z, the loss change
  of zeroing that unit's output to first order;
* ``fisher``: Σ_{w in W[k]} ½·w²·E[g²], the group sum of the OBD term (weights only: the
  gradient decomposition covers weights, not biases);
* ``random``: uniform scores (seed option), the baseline.

Torch-Pruning's ``DependencyGraph`` finds every layer coupled to a removal (through ReLU,
pooling, ``Flatten`` and BatchNorm) and slices them. We do not use its ``MetaPruner``: it
allocates by ratio with a fractional ``max_pruning_ratio``, while we remove an exact number
of units with an absolute minimum width per layer, and rank by our own group scores.
"""

from __future__ import annotations

import copy
import fnmatch
import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .layers import prunable_modules
from .masks import current_masks, remove_masks
from .registry import Criterion, Registry, declared_options
from .stats import gradient_stats

if TYPE_CHECKING:  # Torch-Pruning loads when a model is pruned, not with the package
    import torch_pruning as tp

GroupScores = dict[str, torch.Tensor]
GroupCriterion = Callable[["GroupContext"], GroupScores]

#: The registry: group criterion name → ``Criterion`` record, whose function maps
#: ctx → dict layer name → 1-D scores (reads as name → function, like ``gp.CRITERIA``).
GROUP_CRITERIA = Registry(
    "group criterion", "Add your own with @gp.register_group_criterion('name')."
)

#: Modules whose parameters we know how to slice (Conv2d only with groups == 1).
SUPPORTED_TYPES = (nn.Linear, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d)
SCOPES = ("global", "layerwise")


class GroupContext:
    """What a group criterion may read.

    Attributes:
        model: the model being scored (a private copy; criteria may run it, not change it).
        layers: dict weight name → module, the layers whose outputs may be removed.
        batches: the ``batches`` given to ``structured_prune`` (or None).
        options: extra keyword options given to ``structured_prune`` (``seed``, ``loss_fn``).
    """

    def __init__(self, model: nn.Module, layers: dict[str, nn.Module], batches, options: dict):
        self.model = model
        self.layers = layers
        self.batches = batches
        self.options = options

    def require_batches(self) -> Iterable:
        if self.batches is None:
            raise ValueError(
                "this group criterion needs data: pass batches=[(inputs, targets), ...] or a "
                "DataLoader to gp.structured_prune ('magnitude' and 'random' are data-free)."
            )
        return self.batches


def register_group_criterion(
    name: str, fn: GroupCriterion | None = None, *, options=None, needs_data: bool = True
):
    """Add a group criterion to ``GROUP_CRITERIA``; a decorator or a call.

    ``fn(ctx: GroupContext) -> dict weight name → 1-D tensor`` with one score per output
    unit of each layer in ``ctx.layers`` (higher = keep). ``options`` and ``needs_data``
    are recorded as for ``gp.register_criterion``. Re-registering replaces it.
    """
    declared = declared_options(options)

    def register(function: GroupCriterion) -> GroupCriterion:
        GROUP_CRITERIA.add(Criterion(name, function, declared, needs_data))
        return function

    return register if fn is None else register(fn)


def _rows(tensor: torch.Tensor) -> torch.Tensor:
    """(out, …) → (out, everything else): one row per output unit."""
    return tensor.detach().reshape(tensor.shape[0], -1)


@register_group_criterion("magnitude", needs_data=False)
def magnitude_groups(ctx: GroupContext) -> GroupScores:
    """‖(W[k], b[k])‖₂ per output unit k."""
    scores = {}
    for name, module in ctx.layers.items():
        square = _rows(module.weight).square().sum(1)
        if module.bias is not None:
            square = square + module.bias.detach().square()
        scores[name] = square.sqrt()
    return scores


@register_group_criterion("taylor")
def taylor_groups(ctx: GroupContext) -> GroupScores:
    """Σ_batches (Σ_{w in group k} g·w)², g the batch gradient of the mean loss."""
    loss_fn = ctx.options.get("loss_fn") or F.cross_entropy
    device = next(ctx.model.parameters()).device
    params = []
    for module in ctx.layers.values():
        params.append(module.weight)
        if module.bias is not None:
            params.append(module.bias)
    scores = {name: torch.zeros(m.weight.shape[0], device=device) for name, m in ctx.layers.items()}
    seen = 0
    for inputs, targets in ctx.require_batches():
        if len(inputs) == 0:
            continue
        seen += len(inputs)
        loss = loss_fn(ctx.model(inputs.to(device)), targets.to(device))
        grads = iter(torch.autograd.grad(loss, params))
        for name, module in ctx.layers.items():
            first_order = (_rows(next(grads)) * _rows(module.weight)).sum(1)
            if module.bias is not None:
                first_order = first_order + next(grads) * module.bias.detach()
            scores[name] += first_order.square()
    if seen == 0:
        raise ValueError("batches yielded no samples: the taylor group criterion needs data.")
    return scores


@register_group_criterion("fisher")
def fisher_groups(ctx: GroupContext) -> GroupScores:
    """Σ_{w in W[k]} ½·w²·E[g²], from ``gp.gradient_stats``."""
    stats = gradient_stats(ctx.model, ctx.require_batches(), ctx.options.get("loss_fn"))
    names = {id(m): n for n, m in prunable_modules(ctx.model).items()}
    return {
        name: 0.5 * (_rows(module.weight).square() * _rows(stats[names[id(module)]].sq_mean)).sum(1)
        for name, module in ctx.layers.items()
    }


@register_group_criterion("random", needs_data=False)
def random_groups(ctx: GroupContext) -> GroupScores:
    """Uniform random scores from a generator seeded by the ``seed`` option (default 0)."""
    generator = torch.Generator().manual_seed(int(ctx.options.get("seed", 0)))
    return {
        name: torch.rand(module.weight.shape[0], generator=generator)
        for name, module in ctx.layers.items()
    }


def _check_supported(model: nn.Module) -> None:
    for name, module in model.named_modules():
        if not any(True for _ in module.parameters(recurse=False)):
            continue
        if not isinstance(module, SUPPORTED_TYPES):
            raise ValueError(
                f"structured_prune cannot slice {name or 'the model'} ({type(module).__name__}): "
                "supported layers with parameters are nn.Linear, nn.Conv2d (groups=1) and "
                "nn.BatchNorm1d/2d. Prune such a model with gp.prune (unstructured masks) instead."
            )
        if isinstance(module, nn.Conv2d) and module.groups != 1:
            raise ValueError(
                f"structured_prune cannot slice {name} (grouped Conv2d, groups={module.groups}): "
                "only groups=1 convolutions are supported."
            )


def _check_arguments(criterion, amount, rounds, scope, min_width, exclude, between) -> float:
    if criterion not in GROUP_CRITERIA:
        raise ValueError(
            f"unknown group criterion {criterion!r}; valid names are {sorted(GROUP_CRITERIA)}. "
            "Add your own with @gp.register_group_criterion('name')."
        )
    try:
        value = float(amount)
    except (TypeError, ValueError):
        value = math.nan
    if math.isnan(value) or not 0.0 <= value < 1.0:
        raise ValueError(
            f"amount must be a number in [0, 1) (the fraction of prunable neurons and channels "
            f"to remove), got {amount!r}. To remove half of them pass 0.5, not 50."
        )
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be a positive int, got {rounds!r}.")
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}.")
    if isinstance(min_width, bool) or not isinstance(min_width, int) or min_width < 1:
        raise ValueError(
            f"min_width must be an int >= 1 (outputs each layer keeps), got {min_width!r}."
        )
    if exclude is not None and (
        isinstance(exclude, str) or not all(isinstance(p, str) for p in exclude)
    ):
        raise ValueError(
            f"exclude must be a list of parameter-name patterns such as ['fc1.*'], got {exclude!r}."
        )
    if between is not None and not callable(between):
        raise ValueError(f"between must be a function of the model, got {between!r}.")
    return value


def _run_order(model: nn.Module, example_inputs, modules: dict[str, nn.Module]) -> list[str]:
    """Names of ``modules`` in the order the forward pass calls them."""
    order: list[str] = []
    handles = [
        module.register_forward_hook(lambda *_, name=name: order.append(name))
        for name, module in modules.items()
    ]
    try:
        with torch.no_grad():
            model(*example_inputs)
    finally:
        for handle in handles:
            handle.remove()
    return list(dict.fromkeys(order))


def _removal(graph: tp.DependencyGraph, module: nn.Module, indices: Sequence[int]):
    """Torch-Pruning group that removes ``indices`` of ``module``'s outputs everywhere."""
    import torch_pruning as tp

    fn = (
        tp.prune_conv_out_channels
        if isinstance(module, nn.Conv2d)
        else tp.prune_linear_out_channels
    )
    return graph.get_pruning_group(module, fn, list(indices))


def _touched_parameters(model: nn.Module, graph: tp.DependencyGraph, module: nn.Module) -> set[str]:
    """Names of every parameter whose shape changes when ``module`` loses an output."""
    names = {id(m): n for n, m in model.named_modules()}
    touched = set()
    for dep, _ in _removal(graph, module, [0]):
        target = dep.target.module
        if isinstance(target, nn.Module) and id(target) in names:
            prefix = names[id(target)]
            touched |= {
                f"{prefix}.{p}" if prefix else p for p, _ in target.named_parameters(recurse=False)
            }
    return touched


def _candidates(model, graph, example_inputs, exclude) -> dict[str, nn.Module]:
    """Layers whose outputs may go: all Linear/Conv2d but the classifier and the excluded."""
    layers = prunable_modules(model)
    order = _run_order(model, example_inputs, layers)
    if not order:
        raise ValueError("the forward pass on example_inputs ran no nn.Linear or nn.Conv2d.")
    classifier = order[-1]
    patterns = list(exclude or [])
    parameter_names = [n for n, _ in model.named_parameters()]
    for pattern in patterns:
        if not fnmatch.filter(parameter_names, pattern):
            raise ValueError(
                f"exclude pattern {pattern!r} matches no parameter; the names are "
                f"{parameter_names}."
            )
    candidates = {}
    for name in order[:-1]:
        touched = _touched_parameters(model, graph, layers[name])
        if any(fnmatch.fnmatch(p, pattern) for p in touched for pattern in patterns):
            continue
        candidates[name] = layers[name]
    if not candidates:
        raise ValueError(
            f"nothing to prune: every hidden layer is excluded (exclude={patterns}) and the "
            f"classifier {classifier!r} keeps its outputs. Exclude fewer parameters."
        )
    return candidates


def _width(module: nn.Module) -> int:
    return module.weight.shape[0]


def _choose(scores: GroupScores, layers, remove: dict[str, int] | int, floors: dict[str, int]):
    """dict name → sorted indices to remove: per layer counts, or one global count."""
    if isinstance(remove, dict):
        return {
            name: sorted(torch.argsort(scores[name], stable=True)[:count].tolist())
            for name, count in remove.items()
            if count > 0
        }
    # Global: divide by each layer's mean so layers of different fan-in compete on the same
    # scale (an L2 norm over 800 inputs dwarfs one over 25), then take the lowest overall.
    pool = []
    for name, values in scores.items():
        mean = values.mean()
        normalised = values / mean if mean > 0 else values
        pool += [(float(s), name, i) for i, s in enumerate(normalised.tolist())]
    pool.sort(key=lambda entry: entry[0])
    room = {name: _width(layers[name]) - floors[name] for name in layers}
    chosen: dict[str, list[int]] = {name: [] for name in layers}
    for _, name, index in pool:
        if remove == 0:
            break
        if room[name] > 0:
            chosen[name].append(index)
            room[name] -= 1
            remove -= 1
    return {name: sorted(indices) for name, indices in chosen.items() if indices}


def _check_scores(scores, layers, criterion) -> None:
    for name, module in layers.items():
        values = scores.get(name)
        if not isinstance(values, torch.Tensor) or tuple(values.shape) != (_width(module),):
            raise ValueError(
                f"group criterion {criterion!r} must return one score per output of {name} "
                f"(a tensor of shape ({_width(module)},)), got "
                f"{getattr(values, 'shape', type(values).__name__)}."
            )
        if not bool(torch.isfinite(values).all()):
            raise ValueError(f"group criterion {criterion!r} gave non-finite scores for {name}.")


def structured_prune(
    model: nn.Module,
    criterion: str,
    amount: float,
    batches=None,
    *,
    example_inputs,
    exclude: Sequence[str] | None = None,
    rounds: int = 1,
    between: Callable[[nn.Module], object] | None = None,
    scope: str = "global",
    min_width: int = 1,
    **options,
) -> nn.Module:
    """Remove the least important neurons and channels; return a new, smaller model.

    ``amount`` counts **units** (neurons and channels), not weights: everywhere else
    (``gp.prune``, ``gp.global_masks``) ``sparsity`` is a fraction of **weights**. A weight
    goes with either unit it connects, so the fraction of weights removed is usually larger
    than ``amount`` (half the units of two adjacent hidden layers take about three quarters
    of the weights between them); ``gp.model_cost`` of the result says how many are left.
    Unlike ``gp.prune``, which masks ``model`` in place, this leaves ``model`` as it is.

    Args:
        model: built of nn.Linear, nn.Conv2d (groups=1), nn.BatchNorm1d/2d and parameter-free
            modules; left unchanged. Masks applied to it are dropped in the result (their
            zeros stay in the weights).
        criterion: a name in ``GROUP_CRITERIA`` (magnitude, taylor, fisher, random, or yours).
        amount: fraction in [0, 1) of the prunable units (not weights) to remove: the outputs of every
            Linear/Conv2d except the classifier (the last one the forward pass runs) and
            the excluded layers.
        batches: iterable of ``(inputs, targets)`` for data-driven criteria (re-iterated
            each round).
        example_inputs: a tensor (or tuple of tensors) the model accepts, for tracing.
        exclude: fnmatch patterns of parameter names (``"fc2.*"``) that keep their shape;
            a layer loses outputs only if none of the parameters that removal slices match,
            so excluding ``fc2.weight`` also keeps every output of the layer feeding fc2.
        rounds: remove the amount in this many equal steps, re-scoring each time.
        between: ``between(small_model)`` runs after every round but the last (fine-tune).
        scope: ``"global"`` ranks all units together (scores divided by their layer's mean);
            ``"layerwise"`` removes ``round(amount × width)`` units from every layer.
        min_width: outputs every layer keeps at least (fewer if it had fewer).
        **options: passed to the criterion, e.g. ``seed`` (random), ``loss_fn``.

    Returns:
        A new model whose pruned layers are physically narrower (plain dense modules), on
        the same device, in the same train/eval mode.

    Raises:
        ValueError: for an unknown criterion, an amount outside [0, 1), an amount the
            minimum widths cannot allow, unsupported layers, or bad arguments; the model is
            untouched in every case.
    """
    fraction = _check_arguments(criterion, amount, rounds, scope, min_width, exclude, between)
    _check_supported(model)
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    import torch_pruning as tp

    small = copy.deepcopy(model)
    if current_masks(small):
        remove_masks(small)
    graph = tp.DependencyGraph().build_dependency(small, example_inputs=example_inputs)
    layers = _candidates(small, graph, example_inputs, exclude)
    widths = {name: _width(m) for name, m in layers.items()}
    floors = {name: min(min_width, width) for name, width in widths.items()}
    total = sum(widths.values())
    allowed = sum(widths[n] - floors[n] for n in layers)
    if scope == "global" and round(fraction * total) > allowed:
        raise ValueError(
            f"amount={amount} asks to remove {round(fraction * total)} of {total} units, but "
            f"min_width={min_width} lets at most {allowed} go (amount <= {allowed / total:.3f})."
        )
    for step in range(1, rounds + 1):
        goal = fraction * step / rounds
        removed = {name: widths[name] - _width(m) for name, m in layers.items()}
        if scope == "layerwise":
            remove = {
                n: min(round(goal * widths[n]), widths[n] - floors[n]) - removed[n] for n in layers
            }
        else:
            remove = round(goal * total) - sum(removed.values())
        scores = GROUP_CRITERIA[criterion](GroupContext(small, layers, batches, options))
        _check_scores(scores, layers, criterion)
        scores = {name: values.detach().float().cpu() for name, values in scores.items()}
        for name, indices in _choose(scores, layers, remove, floors).items():
            _removal(graph, layers[name], indices).prune()
        if between is not None and step < rounds:
            between(small)
    return small
