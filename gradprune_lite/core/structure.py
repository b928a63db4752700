"""Structured pruning: remove whole neurons and channels, giving a smaller dense model.

A mask zeroes weights but the matmuls keep their size, so masked models are no faster.
Removing the *k*-th output of a layer (a neuron of ``nn.Linear``, a channel of
``nn.Conv2d``) deletes row *k* of its weight and bias, the matching BatchNorm entries and
the matching input columns of every layer that reads it; every matmul shrinks.

A **group** is what produces one output unit: its weight row ``W[k]`` (all inputs and, for a
convolution, the whole kernel) and its bias ``b[k]``, and, when a BatchNorm reads the
layer's output directly, that BatchNorm's entry k, since the unit other layers read is the
BatchNorm's output y = γ·(z − μ)/√(σ² + ε) + β. A filter of zeros is not a dead channel
there: it still outputs the constant β − γ·μ/√(σ² + ε), and removing it changes the
network. Group criteria score each unit; the lowest are removed. Built-in criteria, in
``GROUP_CRITERIA``:

* ``magnitude``: ‖(W[k], b[k])‖₂, the L2 norm of the group. With a BatchNorm after the
  layer, the norm of the BatchNorm-folded row and bias (the layer that computes y in eval
  mode, as ``torch.nn.utils.fusion.fuse_conv_bn_eval`` builds it): ‖(a·W[k], β + a·(b[k] −
  μ))‖₂ with a = γ/√(σ² + ε), from the running statistics. It is 0 exactly when y is 0 for
  every input. Torch-Pruning's ``GroupMagnitudeImportance`` instead adds |γ| to the group's
  norms (and Liu et al. 2017's network slimming ranks by |γ| alone); the folded norm also
  sees the shift β, and it does not depend on the arbitrary scale of W that BatchNorm
  divides out;
* ``taylor`` (Molchanov et al., CVPR 2019): per batch the group's first-order Taylor term
  s = Σ_{w in group} g·w, squared and summed over batches. For a unit with pre-activation
  z = W[k]·x + b[k] the sum telescopes to s = Σ_samples,positions ∂L/∂z · z, the loss change
  of zeroing that unit's output to first order. With an affine BatchNorm after the layer the
  unit's output is y, and s = γ·∂L/∂γ + β·∂L/∂β = Σ ∂L/∂y · y: Molchanov et al.'s
  "gate after BN" score (their Sec. 3.2), in train and eval mode alike. (Without the
  BatchNorm's terms, s of a layer that BatchNorm normalises with batch statistics is 0 for
  every unit, as the loss does not change when z is scaled);
* ``fisher``: the group sum of the OBD term ½·p²·E[g²] (E[g²] the diagonal empirical
  Fisher of per-sample gradients, taken as ``gp.gradient_stats`` takes them: in eval mode)
  over the parameters that make the unit: Σ_{w in W[k]} ½·w²·E[g²] (weights only: the
  gradient decomposition covers weights, not biases), and with an affine BatchNorm after
  the layer, ½·γ[k]²·E[g_γ²] + ½·β[k]²·E[g_β²], the parameters that produce y. A zero
  filter there scores what its shift β is worth, not 0; a BatchNorm without γ and β
  (``affine=False``) leaves the layer's W[k], as ``taylor`` falls back to its W and b;
* ``random``: uniform scores (seed option), the baseline.

Torch-Pruning's ``DependencyGraph`` finds every layer coupled to a removal (through ReLU,
pooling, ``Flatten`` and BatchNorm) and slices them. Its dependency groups are our units:
layers whose outputs are added into one residual stream, or passed on by a depthwise
convolution, share coupled unit k, which counts once, scores the sum of its producers'
scores, and goes in one removal of its group (each group is pruned once per round, so no
index points at a unit another removal has shifted). We do not use its ``MetaPruner``: it
allocates by ratio with a fractional ``max_pruning_ratio``, while we remove an exact number
of units with an absolute minimum width per layer, and rank by our own group scores.
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ._batchnorm_fisher import batchnorm_fisher
from ._scoring import check_batch_list, eval_mode_kept
from ._validate import _as_fraction
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

#: Modules whose parameters we know how to slice (Conv2d with groups == 1 or depthwise).
SUPPORTED_TYPES = (nn.Linear, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d)
SCOPES = ("global", "layerwise")


class GroupContext:
    """What a group criterion may read.

    Attributes:
        model: the model being scored (a private copy; criteria may run it, not change it).
        layers: dict weight name → module, the layers whose outputs may be removed.
        batches: the ``batches`` given to ``structured_prune`` (or None).
        options: extra keyword options given to ``structured_prune`` (``seed``, ``loss_fn``).
        norms: dict weight name → the BatchNorm that reads that layer's output directly
            (layers without one are absent); unit k of the layer is that BatchNorm's output k.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: dict[str, nn.Module],
        batches,
        options: dict,
        norms: dict[str, nn.Module] | None = None,
    ):
        self.model = model
        self.layers = layers
        self.batches = batches
        self.options = options
        self.norms = dict(norms or {})

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


def _folded(module: nn.Module, norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, c), each of shape (out,): y[k] = a[k]·(W[k]·x) + c[k] is the BatchNorm's output.

    a = γ/√(σ² + ε) and c = β + a·(b − μ) from the running statistics (eval mode); without
    running statistics μ = 0 and σ² + ε = 1, without affine parameters γ = 1 and β = 0.
    """
    width = module.weight.shape[0]
    ones, zeros = torch.ones(width), torch.zeros(width)
    ones, zeros = ones.to(module.weight.device), zeros.to(module.weight.device)
    gamma = ones if norm.weight is None else norm.weight.detach()
    beta = zeros if norm.bias is None else norm.bias.detach()
    mean = zeros if norm.running_mean is None else norm.running_mean
    std = ones if norm.running_var is None else (norm.running_var + norm.eps).sqrt()
    bias = zeros if module.bias is None else module.bias.detach()
    scale = gamma / std
    return scale, beta + scale * (bias - mean)


@register_group_criterion("magnitude", needs_data=False)
def magnitude_groups(ctx: GroupContext) -> GroupScores:
    """‖(W[k], b[k])‖₂ per output unit k, with any BatchNorm after the layer folded in.

    With a BatchNorm reading the layer's output: ‖(a[k]·W[k], c[k])‖₂ (``_folded``).
    """
    scores = {}
    for name, module in ctx.layers.items():
        square = _rows(module.weight).square().sum(1)
        if name in ctx.norms:
            scale, shift = _folded(module, ctx.norms[name])
            scores[name] = (scale.square() * square + shift.square()).sqrt()
            continue
        if module.bias is not None:
            square = square + module.bias.detach().square()
        scores[name] = square.sqrt()
    return scores


def _taylor_parameters(ctx: GroupContext) -> dict[str, list[nn.Parameter]]:
    """dict weight name → the parameters whose g·w sum to unit k's output Taylor term:
    the affine BatchNorm's (γ, β) after the layer, else the layer's own (W, b)."""
    chosen = {}
    for name, module in ctx.layers.items():
        norm = ctx.norms.get(name)
        owner = norm if norm is not None and norm.weight is not None else module
        chosen[name] = [p for p in (owner.weight, owner.bias) if p is not None]
    return chosen


@register_group_criterion("taylor")
def taylor_groups(ctx: GroupContext) -> GroupScores:
    """Σ_batches (Σ_{w in group k} g·w)², g the batch gradient of the mean loss.

    With an affine BatchNorm reading the layer's output, w ranges over its (γ[k], β[k]).
    """
    loss_fn = ctx.options.get("loss_fn") or F.cross_entropy
    device = next(ctx.model.parameters()).device
    owners = _taylor_parameters(ctx)
    params = [p for group in owners.values() for p in group]
    scores = {name: torch.zeros(m.weight.shape[0], device=device) for name, m in ctx.layers.items()}
    seen = 0
    for inputs, targets in ctx.require_batches():
        if len(inputs) == 0:
            continue
        seen += len(inputs)
        loss = loss_fn(ctx.model(inputs.to(device)), targets.to(device))
        grads = iter(torch.autograd.grad(loss, params))
        for name, group in owners.items():
            first_order = (_rows(next(grads)) * _rows(group[0])).sum(1)
            if len(group) > 1:
                first_order = first_order + next(grads) * group[1].detach()
            scores[name] += first_order.square()
    if seen == 0:
        raise ValueError("batches yielded no samples: the taylor group criterion needs data.")
    return scores


@register_group_criterion("fisher")
def fisher_groups(ctx: GroupContext) -> GroupScores:
    """Σ ½·p²·E[g²] over unit k's W[k], or over (γ[k], β[k]) of an affine BatchNorm after it.

    E[g²] is the diagonal empirical Fisher, the mean over samples of squared per-sample
    gradients, in eval mode (BatchNorm on its running statistics) as ``gp.gradient_stats``
    takes it, whatever the model's mode: in train mode BatchNorm's batch statistics couple
    a batch's samples, and a per-sample gradient is not defined (``taylor``, which needs
    only batch gradients, runs the model in its own mode). For a layer whose output an
    affine BatchNorm reads, the unit is y = γ·x̂ + β, and the score is

        ½·γ[k]²·E[g_γ[k]²] + ½·β[k]²·E[g_β[k]²],

    the OBD terms of the parameters that produce y (the choice ``taylor`` makes). Why: a
    zero filter before a BatchNorm still outputs the constant β − γ·μ/√(σ² + ε), but
    Σ_{w in W[k]} ½·w²·E[g²] scores it 0, so it went first although removing it changes
    the network. Other layers, and those before a BatchNorm without γ and β
    (``affine=False``, where ``taylor`` also falls back to the layer's own parameters),
    score Σ_{w in W[k]} ½·w²·E[g²] (weights only: ``gp.gradient_stats`` covers weights,
    not biases), exactly as before; such a zero filter before a non-affine BatchNorm
    still scores 0, as no weight produces its constant (b[k] − μ)/√(σ² + ε) (``magnitude``,
    which folds the BatchNorm in, sees it).
    """
    loss_fn = ctx.options.get("loss_fn")
    batches = ctx.require_batches()
    affine = {
        name: ctx.norms[name]
        for name in ctx.layers
        if name in ctx.norms and ctx.norms[name].weight is not None
    }
    plain = [name for name in ctx.layers if name not in affine]
    if affine and plain and iter(batches) is batches:
        batches = list(batches)  # a one-shot iterator, read by two passes
    scores = batchnorm_fisher(ctx.model, affine, batches, loss_fn) if affine else {}
    if plain:
        stats = gradient_stats(ctx.model, batches, loss_fn)
        names = {id(m): n for n, m in prunable_modules(ctx.model).items()}
        for name in plain:
            module = ctx.layers[name]
            sq_mean = stats[names[id(module)]].sq_mean
            scores[name] = 0.5 * (_rows(module.weight).square() * _rows(sq_mean)).sum(1)
    return {name: scores[name] for name in ctx.layers}


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
                "supported layers with parameters are nn.Linear, nn.Conv2d (groups=1, or "
                "depthwise) and nn.BatchNorm1d/2d. Prune such a model with gp.prune "
                "(unstructured masks) instead."
            )
        if isinstance(module, nn.Conv2d) and not _plain_or_depthwise(module):
            raise ValueError(
                f"structured_prune cannot slice {name} (grouped Conv2d, groups={module.groups}, "
                f"{module.in_channels} → {module.out_channels} channels): only groups=1 and "
                "depthwise convolutions (groups = in_channels = out_channels) are supported."
            )


def _is_depthwise(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.groups == module.in_channels > 1


def _plain_or_depthwise(conv: nn.Conv2d) -> bool:
    return conv.groups == 1 or conv.groups == conv.in_channels == conv.out_channels


def _check_arguments(criterion, amount, rounds, scope, min_width, exclude, between) -> float:
    if criterion not in GROUP_CRITERIA:
        raise ValueError(
            f"unknown group criterion {criterion!r}; valid names are {sorted(GROUP_CRITERIA)}. "
            "Add your own with @gp.register_group_criterion('name')."
        )
    meaning = "the fraction of prunable neurons and channels to remove"
    value = _as_fraction(amount, "amount", meaning)
    if value == 1.0:
        raise ValueError(f"amount must be below 1 ({meaning}): every layer keeps min_width units.")
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


def _example_inputs(example_inputs, model: nn.Module) -> tuple:
    """``example_inputs`` as a tuple, its tensors on the model's device."""
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    if not isinstance(example_inputs, (tuple, list)):
        raise ValueError(
            f"example_inputs must be a tensor or a tuple of tensors the model accepts, got "
            f"{type(example_inputs).__name__}."
        )
    device = next(model.parameters()).device
    return tuple(x.to(device) if isinstance(x, torch.Tensor) else x for x in example_inputs)


def _run_order(model: nn.Module, example_inputs, modules: dict[str, nn.Module]) -> list[str]:
    """Names of ``modules`` in the order the forward pass calls them.

    Raises ``ValueError`` when the model does not accept ``example_inputs``.
    """
    order: list[str] = []
    handles = [
        module.register_forward_hook(lambda *_, name=name: order.append(name))
        for name, module in modules.items()
    ]
    try:
        with torch.no_grad():
            model(*example_inputs)
    except (RuntimeError, ValueError, TypeError, IndexError) as error:
        shapes = [tuple(x.shape) if isinstance(x, torch.Tensor) else x for x in example_inputs]
        raise ValueError(
            f"the model does not accept example_inputs of shape(s) {shapes}: its forward pass "
            f"failed with {type(error).__name__}: {error}. Pass inputs the model accepts, for "
            "example one batch of training inputs (batch dimension included)."
        ) from error
    finally:
        for handle in handles:
            handle.remove()
    return list(dict.fromkeys(order))


_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def _norms_after(model: nn.Module, example_inputs: tuple, layers: dict[str, nn.Module]):
    """dict layer name → the BatchNorm whose input is that layer's output, unchanged.

    Found by running ``example_inputs``: a BatchNorm counts only if it receives the very
    tensor the layer returned, not modified in place since (an in-place ReLU between them
    would make the folded BatchNorm the wrong function of the layer's output).
    """
    produced: dict[int, tuple[str, int]] = {}
    found: dict[str, nn.Module] = {}

    def layer_hook(_module, _inputs, output, name):
        if isinstance(output, torch.Tensor):
            produced[id(output)] = (name, output._version)

    def norm_hook(module, inputs):
        tensor = inputs[0] if inputs else None
        if isinstance(tensor, torch.Tensor) and id(tensor) in produced:
            name, version = produced[id(tensor)]
            if tensor._version == version and tensor.shape[1] == module.num_features:
                found.setdefault(name, module)

    handles = [
        m.register_forward_hook(lambda *args, name=n: layer_hook(*args, name))
        for n, m in layers.items()
    ]
    handles += [
        m.register_forward_pre_hook(norm_hook) for m in model.modules() if isinstance(m, _NORMS)
    ]
    try:
        with torch.no_grad():
            model(*example_inputs)
    finally:
        for handle in handles:
            handle.remove()
    return found


@dataclass
class _Coupled:
    """Output units that can only go together: unit k is output k of every producer.

    ``producers`` holds (layer name, the unit's index in that layer, its index in the root),
    one entry per (layer, unit), as 1-D long tensors: a residual add couples the outputs of
    every layer writing into the stream, a depthwise convolution its producer's channels.
    """

    root: nn.Module
    handler: Callable
    width: int
    producers: list[tuple[str, torch.Tensor, torch.Tensor]]


def _coupled_groups(
    model: nn.Module,
    graph: tp.DependencyGraph,
    classifier: nn.Module,
    patterns: list[str],
    order: list[str],
) -> dict[str, _Coupled]:
    """dict root layer name → its coupled units, for every group that may lose units.

    Groups and their producers come in forward order (``order``: layer names as run), so
    a criterion sees its layers as the forward pass does (a seeded draw included).

    A group is skipped when it slices an excluded parameter or contains the classifier's
    outputs (Torch-Pruning drops groups with an ignored layer's outputs).
    """
    module_names = {id(m): n for n, m in model.named_modules()}
    module_of = prunable_modules(model)
    layer_names = {id(m): n for n, m in module_of.items()}
    rank = {name: position for position, name in enumerate(order)}
    rank.update({name: len(order) for name in module_of if name not in rank})
    groups = {}
    for group in graph.get_all_groups(
        ignored_layers=[classifier], root_module_types=(nn.Conv2d, nn.Linear)
    ):
        touched, producers = set(), []
        for item in group.items:
            dep, target = item.dep, item.dep.target.module
            if not isinstance(target, nn.Module) or id(target) not in module_names:
                continue
            prefix = module_names[id(target)]
            touched |= {
                f"{prefix}.{p}" if prefix else p for p, _ in target.named_parameters(recurse=False)
            }
            if graph.is_out_channel_pruning_fn(dep.handler) and id(target) in layer_names:
                # idxs: the units in this layer; root_idxs: the same units in the root's numbering.
                producers.append((layer_names[id(target)], item.idxs, item.root_idxs))
        if any(fnmatch.fnmatch(p, pattern) for p in touched for pattern in patterns):
            continue
        if all(_is_depthwise(module_of[name]) for name, _, _ in producers):
            continue  # channels a depthwise conv only passes on: the model's input channels
        root_module = group[0].dep.target.module
        # The same (layer, unit) can be reached by two paths; it counts once.
        unique = {}
        for name, own, root in producers:
            for i, r in zip(own, root):
                unique.setdefault((name, i), r)
        merged: dict[str, tuple[list[int], list[int]]] = {}
        for (name, i), r in sorted(unique.items(), key=lambda item: rank[item[0][0]]):
            merged.setdefault(name, ([], []))
            merged[name][0].append(i)
            merged[name][1].append(r)
        groups[module_names[id(root_module)]] = _Coupled(
            root=root_module,
            handler=group[0].dep.handler,
            width=len(group[0].idxs),
            producers=[(n, torch.tensor(o), torch.tensor(r)) for n, (o, r) in merged.items()],
        )
    return dict(sorted(groups.items(), key=lambda item: rank[item[1].producers[0][0]]))


def _group_scores(layer_scores: GroupScores, groups: dict[str, _Coupled]) -> GroupScores:
    """Score of coupled unit k = the sum of its producers' scores for it."""
    totals = {}
    for root, group in groups.items():
        total = torch.zeros(group.width)
        for name, own, index in group.producers:
            total.index_add_(0, index, layer_scores[name][own])
        totals[root] = total
    return totals


def _choose(scores: GroupScores, widths: dict[str, int], remove, floors: dict[str, int]):
    """dict group → sorted unit indices to remove: per group counts, or one global count."""
    if isinstance(remove, dict):
        return {
            name: sorted(torch.argsort(scores[name], stable=True)[:count].tolist())
            for name, count in remove.items()
            if count > 0
        }
    # Global: divide by each group's mean so groups of different fan-in compete on the same
    # scale (an L2 norm over 800 inputs dwarfs one over 25), then take the lowest overall.
    pool = []
    for name, values in scores.items():
        mean = values.mean()
        normalised = values / mean if mean > 0 else values
        pool += [(float(s), name, i) for i, s in enumerate(normalised.tolist())]
    pool.sort(key=lambda entry: entry[0])
    room = {name: widths[name] - floors[name] for name in scores}
    chosen: dict[str, list[int]] = {name: [] for name in scores}
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
        width = module.weight.shape[0]
        if not isinstance(values, torch.Tensor) or tuple(values.shape) != (width,):
            raise ValueError(
                f"group criterion {criterion!r} must return one score per output of {name} "
                f"(a tensor of shape ({width},)), got "
                f"{getattr(values, 'shape', type(values).__name__)}."
            )
        if not bool(torch.isfinite(values).all()):
            raise ValueError(f"group criterion {criterion!r} gave non-finite scores for {name}.")


def _prepare(model, example_inputs, exclude):
    """The copy to prune, its dependency graph, what finds its groups, the groups, and the
    BatchNorm after each layer (``_norms_after``)."""
    import torch_pruning as tp

    small = copy.deepcopy(model)
    if current_masks(small):
        remove_masks(small)
    # Torch-Pruning's tracing calls model.eval() and leaves it so; the modes come back after.
    with eval_mode_kept(small):
        order = _run_order(small, example_inputs, prunable_modules(small))
        norms = _norms_after(small, example_inputs, prunable_modules(small))
        graph = tp.DependencyGraph().build_dependency(small, example_inputs=example_inputs)
    if not order:
        raise ValueError("the forward pass on example_inputs ran no nn.Linear or nn.Conv2d.")
    patterns = list(exclude or [])
    parameter_names = [n for n, _ in small.named_parameters()]
    for pattern in patterns:
        if not fnmatch.filter(parameter_names, pattern):
            raise ValueError(
                f"exclude pattern {pattern!r} matches no parameter; the names are "
                f"{parameter_names}."
            )
    classifier = prunable_modules(small)[order[-1]]
    groups = _coupled_groups(small, graph, classifier, patterns, order)
    if not groups:
        raise ValueError(
            f"nothing to prune: every hidden layer is excluded (exclude={patterns}) and the "
            f"classifier {order[-1]!r} keeps its outputs. Exclude fewer parameters."
        )
    return small, graph, (classifier, patterns, order), groups, norms


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

    Units are removed by coupled group (Torch-Pruning's dependency groups): layers whose
    outputs are added together (a residual stream) or tied by a depthwise convolution lose
    the same units together. Such a coupled unit counts once towards ``amount`` and
    ``min_width``, and its score is the sum of the criterion's scores for it over the
    layers that produce it. A layer whose output a BatchNorm reads directly is scored as
    that BatchNorm's output (the unit the next layer sees): ``magnitude`` folds the
    BatchNorm into the row and bias, ``taylor`` uses γ·∂L/∂γ + β·∂L/∂β (Molchanov et al.
    2019), ``fisher`` the OBD terms ½·p²·E[g²] of γ and β; a zero filter whose BatchNorm
    still shifts it is not scored 0.

    Args:
        model: built of nn.Linear, nn.Conv2d (groups=1 or depthwise), nn.BatchNorm1d/2d and
            parameter-free modules; left unchanged. Masks applied to it are dropped in the
            result (their zeros stay in the weights).
        criterion: a name in ``GROUP_CRITERIA`` (magnitude, taylor, fisher, random, or yours).
        amount: fraction in [0, 1) of the prunable units (not weights) to remove: the coupled output
            units of every Linear/Conv2d except the classifier (the last one the forward
            pass runs, and whatever is coupled to its outputs) and the excluded layers.
        batches: iterable of ``(inputs, targets)`` for data-driven criteria (re-iterated
            each round).
        example_inputs: a tensor (or tuple of tensors) the model accepts, for tracing;
            moved to the model's device.
        exclude: fnmatch patterns of parameter names (``"fc2.*"``) that keep their shape;
            a group loses units only if none of the parameters its removal slices match,
            so excluding ``fc2.weight`` also keeps every output of the layer feeding fc2.
        rounds: remove the amount in this many equal steps, re-scoring each time.
        between: ``between(small_model)`` runs after every round but the last (fine-tune).
        scope: ``"global"`` ranks all units together (scores divided by their group's mean);
            ``"layerwise"`` removes ``round(amount × width)`` units from every group.
        min_width: units every group keeps at least (fewer if it had fewer).
        **options: passed to the criterion, e.g. ``seed`` (random), ``loss_fn``.

    Returns:
        A new model whose pruned layers are physically narrower (plain dense modules), on
        the same device, every module in the train/eval mode it had in ``model``.

    Raises:
        ValueError: for an unknown criterion, an amount outside [0, 1), an amount the
            minimum widths cannot allow, unsupported layers, example_inputs the model does
            not accept, or bad arguments; the model is untouched in every case.
    """
    fraction = _check_arguments(criterion, amount, rounds, scope, min_width, exclude, between)
    if batches is not None:
        check_batch_list(batches)
    _check_supported(model)
    example_inputs = _example_inputs(example_inputs, model)
    modes = {name: module.training for name, module in model.named_modules()}
    small, graph, grouping, groups, norms = _prepare(model, example_inputs, exclude)
    widths = {name: group.width for name, group in groups.items()}
    floors = {name: min(min_width, width) for name, width in widths.items()}
    total = sum(widths.values())
    allowed = sum(widths[n] - floors[n] for n in groups)
    if scope == "global" and round(fraction * total) > allowed:
        raise ValueError(
            f"amount={amount} asks to remove {round(fraction * total)} of {total} units, but "
            f"min_width={min_width} lets at most {allowed} go (amount <= {allowed / total:.3f})."
        )
    for step in range(1, rounds + 1):
        if step > 1:  # the same roots, re-read at their current widths
            groups = _coupled_groups(small, graph, *grouping)
        goal = fraction * step / rounds
        removed = {name: widths[name] - group.width for name, group in groups.items()}
        if scope == "layerwise":
            remove = {
                n: min(round(goal * widths[n]), widths[n] - floors[n]) - removed[n] for n in groups
            }
        else:
            remove = round(goal * total) - sum(removed.values())
        modules = prunable_modules(small)
        layers = {n: modules[n] for group in groups.values() for n, _, _ in group.producers}
        context = GroupContext(
            small, layers, batches, options, {n: norms[n] for n in layers if n in norms}
        )
        scores = GROUP_CRITERIA[criterion](context)
        _check_scores(scores, layers, criterion)
        scores = {name: values.detach().float().cpu() for name, values in scores.items()}
        current = {name: group.width for name, group in groups.items()}
        chosen = _choose(_group_scores(scores, groups), current, remove, floors)
        for name, indices in chosen.items():
            graph.get_pruning_group(groups[name].root, groups[name].handler, indices).prune()
        if between is not None and step < rounds:
            between(small)
    _check_still_runs(small, example_inputs)
    for name, module in small.named_modules():
        module.training = modes.get(name, module.training)
    return small


def _check_still_runs(small: nn.Module, example_inputs: tuple) -> None:
    """Raise if the pruned model no longer accepts ``example_inputs``.

    A coupled group that reaches the model's own input (``x + layer(x)`` on the raw input)
    cannot lose units: the input keeps its width. Torch-Pruning does not see that.
    """
    try:
        with eval_mode_kept(small), torch.no_grad():
            small(*example_inputs)
    except RuntimeError as error:
        raise ValueError(
            "the pruned model no longer accepts example_inputs: a layer whose outputs were "
            "removed is coupled to the model's input (for example a residual add of the raw "
            "input). Keep that layer with exclude=['<layer>.*']. The forward pass failed "
            f"with: {error}"
        ) from error
