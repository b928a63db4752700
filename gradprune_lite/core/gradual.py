"""Gradual pruning driven by training steps, inside the user's own training loop.

``GradualPruner`` raises the sparsity along a schedule while the model trains (Zhu & Gupta,
"To prune, or not to prune", 2017, arXiv:1710.01878). Its cubic schedule, for pruning steps
t = t0, t0 + Δt, …, t0 + nΔt, is

    s_t = s_f + (s_i − s_f) · (1 − (t − t0) / (nΔt))³,

which prunes fast while many redundant weights remain and slowly near the target.
``"linear"`` grows the sparsity in equal steps and ``"exponential"`` shrinks the density
1 − s geometrically, as ``gp.sparsity_schedule`` does for rounds.

What the criteria see. The pruner runs no forward or backward pass of its own: an
optimiser step pre-hook reads every prunable weight w and its ``.grad`` g just before each
``optimizer.step()`` (after any ``GradScaler.unscale_`` and after gradient accumulation, so
g is exactly what the optimiser uses). Between two pruning steps it sums, per weight,

* g and g² over the optimiser steps of the window, which a criterion reads as
  ``ctx.stats[name].mean`` (the average batch gradient) and ``ctx.stats[name].sq_mean``
  (the average *squared batch* gradient; ``count`` is the number of steps). This is a
  coarser second moment than the per-sample E[g²] of ``gp.gradient_stats``: for batches
  of B samples it estimates ḡ² + Var[g]/B. Data criteria built on ``ctx.stats``
  (gradient, taylor, snip, fisher, and yours) therefore score from the training run's
  own gradients. Both sums restart after every pruning step.
* the state of a stateful criterion (one registered with ``make_state``,
  such as ``movement``): ``state.update(model)`` is called in the same hook and the
  criterion reads ``ctx.state``. Movement's state is cumulative over the whole run, as
  in Sanh et al.; it is not reset at pruning steps.

Data-free criteria (magnitude, random, synflow) read the weights only. Criteria that need
their own passes over data (grasp) or move the weights (obs) are refused.

Masks are applied with ``gp.apply_masks(model, masks, optimizer)`` and held through every
optimiser step by ``gp.hold_masks``; weights already pruned are ranked below every living
one, so the sparsity never decreases and no pruned weight revives.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from torch import nn

from ._validate import check_exclude, check_min_density, check_sparsity, excluded_names
from .criteria import CRITERIA, DATA_OPTIONS
from .layers import prunable_modules, prunable_weights
from .masks import apply_masks, current_masks, hold_masks, trained_weight
from .prune import _checked_scores, _lowest
from .registry import ScoringContext
from .selection import global_masks, layerwise_masks
from .stats import GradientStats, accumulation_dtype

SCHEDULES = ("cubic", "linear", "exponential")
SCOPES = ("global", "layerwise")


def gradual_sparsity(
    step: int,
    final_sparsity: float,
    start_step: int,
    end_step: int,
    schedule: str = "cubic",
    initial_sparsity: float = 0.0,
) -> float:
    """Target sparsity of the schedule at training step ``step`` (0 before ``start_step``).

    With f = (step − start_step) / (end_step − start_step) clipped to [0, 1]:
    cubic s_f + (s_i − s_f)(1 − f)³ (Zhu & Gupta 2017); linear s_i + (s_f − s_i) f;
    exponential 1 − (1 − s_i)·((1 − s_f)/(1 − s_i))^f. Exactly ``final_sparsity`` from
    ``end_step`` on.
    """
    if step < start_step:
        return 0.0
    if step >= end_step:
        return final_sparsity
    f = (step - start_step) / (end_step - start_step)
    s_i, s_f = initial_sparsity, final_sparsity
    if schedule == "cubic":
        return s_f + (s_i - s_f) * (1.0 - f) ** 3
    if schedule == "linear":
        return s_i + (s_f - s_i) * f
    return 1.0 - (1.0 - s_i) * ((1.0 - s_f) / (1.0 - s_i)) ** f


def _check_step(value, what: str, smallest: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < smallest:
        raise ValueError(f"{what} must be an integer >= {smallest}, got {value!r}.")
    return int(value)


def _check_below_one(value, what: str) -> float:
    value = check_sparsity(value)
    if value >= 1.0:
        raise ValueError(
            f"{what} must be below 1 (1 would prune every weight), got {value!r}. For 99% "
            "pass 0.99."
        )
    return value


def _criterion_record(name: str):
    """(function, accepted option names or None, moves weights?, make_state or None).

    The one place that reads the criterion registry's layout (``core/registry.py``).
    """
    record = CRITERIA.record(name)  # ValueError naming the valid criteria
    accepted = None if record.options is None else tuple(record.options)
    return record.function, accepted, record.weight_update is not None, record.make_state


class _GradientWindow:
    """Σ g and Σ g² of the prunable weights over the optimiser steps since a reset."""

    def __init__(self, modules: dict[str, nn.Module]):
        self._modules = modules
        self._sums = {}
        self._squares = {}
        for name, module in modules.items():
            dtype = accumulation_dtype(module.weight)
            self._sums[name] = torch.zeros_like(module.weight, dtype=dtype)
            self._squares[name] = torch.zeros_like(module.weight, dtype=dtype)
        self.count = 0

    @torch.no_grad()
    def update(self) -> None:
        for name, module in self._modules.items():
            grad = trained_weight(module).grad
            if grad is None:
                continue
            grad = grad.to(self._sums[name].dtype)
            self._sums[name].add_(grad)
            self._squares[name].addcmul_(grad, grad)
        self.count += 1

    def stats(self) -> dict[str, GradientStats]:
        n = max(self.count, 1)
        return {
            name: GradientStats(self._sums[name] / n, self._squares[name] / n, self.count)
            for name in self._modules
        }

    def reset(self) -> None:
        for tensor in (*self._sums.values(), *self._squares.values()):
            tensor.zero_()
        self.count = 0

    def state_dict(self) -> dict:
        return {"sums": self._sums, "squares": self._squares, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        for mine, saved in ((self._sums, state["sums"]), (self._squares, state["squares"])):
            for name, tensor in mine.items():
                tensor.copy_(saved[name])
        self.count = int(state["count"])


class _TrainingContext(ScoringContext):
    """A ``ScoringContext`` whose statistics come from the training run's own gradients."""

    def __init__(self, model, criterion, options, window, state):
        super().__init__(model, None, options, state)
        self.criterion = criterion
        self._window = window

    @property
    def stats(self) -> dict[str, GradientStats]:
        if self._window.count == 0:
            raise ValueError(
                f"criterion {self.criterion!r} needs gradients, but no optimiser step ran "
                "since the last pruning step. Attach the pruner to the optimiser that trains "
                "the model (optimizer=... or pruner.attach(optimizer)) and call "
                "pruner.step() after optimizer.step()."
            )
        return self._window.stats()

    def require_batches(self):
        raise ValueError(
            f"criterion {self.criterion!r} runs its own passes over data, which "
            "GradualPruner does not do; use a criterion that reads gradient statistics "
            "(gradient, taylor, snip, fisher, movement) or a data-free one (magnitude, "
            "random, synflow with input_shape=...)."
        )


class GradualPruner:
    """Raise the sparsity of ``model`` along a schedule while you train it.

    Use it in any loop::

        pruner = gp.GradualPruner(model, "movement", 0.9, start_step=0,
                                  end_step=3000, every=100, optimizer=optimizer)
        for inputs, targets in batches:
            optimizer.zero_grad()
            loss_fn(model(inputs), targets).backward()
            optimizer.step()
            pruner.step()          # once per optimiser step, after it

    or let ``gp.fit(model, train, ..., pruner=pruner)`` drive it (it attaches the pruner to
    its own optimiser). Training step t (0-based) is the t-th call of ``step()``. The pruner
    prunes at t = start_step, start_step + every, … below end_step, and at end_step, where
    it reaches ``final_sparsity`` exactly (``round(final_sparsity·N)`` weights masked).

    Args:
        model: the model being trained; changed in place (masks via ``gp.apply_masks``).
        criterion: a name in ``gp.CRITERIA`` (see the module docstring for what data
            criteria read here).
        final_sparsity: s_f, the fraction of prunable weights removed at the end, in [0, 1).
        start_step: t0, the first pruning step (>= 0).
        end_step: the last pruning step, t0 + nΔt (>= start_step).
        every: Δt, training steps between pruning steps (>= 1).
        schedule: ``"cubic"`` (Zhu & Gupta), ``"linear"`` or ``"exponential"``.
        initial_sparsity: s_i, the sparsity set at start_step, in [0, final_sparsity].
        optimizer: the optimiser that trains ``model``; may be given later with
            ``attach`` (``gp.fit`` does this). Any ``torch.optim.Optimizer``.
        scope: ``"global"`` (one threshold) or ``"layerwise"``.
        exclude, min_density: as for ``gp.global_masks``.
        **options: the criterion's own options (``seed`` for random, ``input_shape`` for
            synflow). Data options (``loss_fn``, ``sample_dim``, ...) do not apply: the
            pruner reads your backward passes' gradients.

    Attributes:
        step_count: training steps seen (calls of ``step``).
        history: list of (training step, sparsity) at each pruning step so far.

    Raises:
        ValueError: bad arguments, before anything changes.
    """

    def __init__(
        self,
        model: nn.Module,
        criterion: str,
        final_sparsity: float,
        start_step: int,
        end_step: int,
        every: int,
        schedule: str = "cubic",
        initial_sparsity: float = 0.0,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        scope: str = "global",
        exclude: str | Sequence[str] = (),
        min_density: float = 0.0,
        **options,
    ):
        self.final_sparsity = _check_below_one(final_sparsity, "final_sparsity")
        self.initial_sparsity = _check_below_one(initial_sparsity, "initial_sparsity")
        if self.initial_sparsity > self.final_sparsity:
            raise ValueError(
                f"initial_sparsity ({self.initial_sparsity}) must not exceed final_sparsity "
                f"({self.final_sparsity}): the sparsity only ever rises."
            )
        self.start_step = _check_step(start_step, "start_step", 0)
        self.end_step = _check_step(end_step, "end_step", 0)
        if self.end_step < self.start_step:
            raise ValueError(
                f"end_step ({end_step}) must not come before start_step ({start_step})."
            )
        self.every = _check_step(every, "every", 1)
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}.")
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}.")
        self._check_criterion(criterion, options)
        self._weights = prunable_weights(model)
        self._patterns = check_exclude(exclude)
        excluded_names(self._weights, self._patterns)  # a pattern matching nothing raises
        self.min_density = check_min_density(min_density)
        self.model, self.criterion, self.schedule, self.scope = model, criterion, schedule, scope
        self.options = options
        modules = prunable_modules(model)
        self._window = _GradientWindow(modules)
        make_state = _criterion_record(criterion)[3]
        self.state = make_state(model) if make_state is not None else None
        # One dry run on zero statistics: a criterion that cannot work here (grasp, or
        # synflow without input_shape) fails now rather than mid-training.
        self._scores(dry_run=True)
        self.step_count = 0
        self.history: list[tuple[int, float]] = []
        self.optimizer = None
        self._hook = None
        if optimizer is not None:
            self.attach(optimizer)

    @staticmethod
    def _check_criterion(criterion: str, options: dict) -> None:
        accepted, moves_weights = _criterion_record(criterion)[1:3]
        if moves_weights:
            raise ValueError(
                f"criterion {criterion!r} moves the surviving weights itself; use gp.prune "
                "for it, not GradualPruner."
            )
        given_data_options = sorted(set(options) & set(DATA_OPTIONS))
        if given_data_options:
            raise ValueError(
                f"GradualPruner reads the gradients of your own backward passes, so "
                f"{given_data_options} do not apply; leave them out."
            )
        unknown = sorted(set(options) - set(accepted)) if accepted is not None else []
        if unknown:
            raise ValueError(
                f"criterion {criterion!r} does not take the option(s) {unknown}; its options "
                f"are {sorted(accepted) or 'none'}."
            )

    def attach(self, optimizer: torch.optim.Optimizer) -> GradualPruner:
        """Read gradients at ``optimizer``'s steps and hold the masks through them.

        Replaces any optimiser attached before. Returns the pruner.
        """
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ValueError(f"optimizer must be a torch.optim.Optimizer, got {optimizer!r}.")
        self.detach()
        hold_masks(self.model, optimizer)
        self._hook = optimizer.register_step_pre_hook(self._before_optimizer_step)
        self.optimizer = optimizer
        return self

    def detach(self) -> None:
        """Stop reading gradients (the masks stay, and stay held by ``hold_masks``)."""
        if self._hook is not None:
            self._hook.remove()
        self._hook, self.optimizer = None, None

    def _before_optimizer_step(self, optimizer, args, kwargs) -> None:
        self._window.update()
        if self.state is not None:
            self.state.update(self.model)

    def sparsity_at(self, step: int) -> float:
        """The schedule's target sparsity at training step ``step`` (0 before start_step)."""
        return gradual_sparsity(
            step,
            self.final_sparsity,
            self.start_step,
            self.end_step,
            self.schedule,
            self.initial_sparsity,
        )

    def is_pruning_step(self, step: int) -> bool:
        """True at start_step, start_step + every, … below end_step, and at end_step."""
        if step == self.end_step:
            return True
        return (
            self.start_step <= step < self.end_step and (step - self.start_step) % self.every == 0
        )

    @property
    def pruning_steps(self) -> list[int]:
        """Every training step at which the pruner prunes, in order."""
        steps = list(range(self.start_step, self.end_step, self.every))
        return [*steps, self.end_step]

    def step(self) -> bool:
        """Advance one training step; prune if it is a pruning step. Returns whether it did.

        Call it once per optimiser step, after ``optimizer.step()``.
        """
        if self.optimizer is None:
            raise ValueError(
                "GradualPruner has no optimiser: pass optimizer=... or call "
                "pruner.attach(optimizer) before training (gp.fit(..., pruner=) does it)."
            )
        step = self.step_count
        self.step_count += 1
        if not self.is_pruning_step(step):
            return False
        self.prune_now(self.sparsity_at(step))
        self.history.append((step, self.sparsity_at(step)))
        return True

    def _scores(self, dry_run: bool = False) -> dict[str, torch.Tensor]:
        window = _GradientWindow(prunable_modules(self.model)) if dry_run else self._window
        if dry_run:
            window.count = 1  # zero statistics, only to see that the criterion runs
        ctx = _TrainingContext(self.model, self.criterion, self.options, window, self.state)
        scores = _criterion_record(self.criterion)[0](ctx)
        return _checked_scores(
            {name: scores[name].detach() for name in ctx.weights}, self._weights, self.criterion
        )

    def state_dict(self) -> dict:
        """What resuming needs: the step count, the history and the gathered statistics.

        Save it beside the model (whose masks ``gp.save`` keeps) and the optimiser; to
        resume, build the pruner with the same arguments and call ``load_state_dict``.
        """
        return {
            "step_count": self.step_count,
            "history": list(self.history),
            "window": self._window.state_dict(),
            "state": self.state.state_dict() if self.state is not None else None,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state_dict()``'s output (same model layout and criterion)."""
        self._window.load_state_dict(state["window"])
        if self.state is not None:
            self.state.load_state_dict(state["state"])
        self.step_count = int(state["step_count"])
        self.history = [(int(t), float(s)) for t, s in state["history"]]

    def prune_now(self, sparsity: float) -> dict[str, torch.Tensor]:
        """Score with the statistics gathered so far and prune to ``sparsity`` now.

        Weights already pruned rank below every living one, so they stay pruned and
        exactly ``round(sparsity·N)`` weights end masked. The gradient window restarts.
        Returns the masks applied (dict name → bool, True = keep).
        """
        sparsity = _check_below_one(sparsity, "sparsity")
        scores = self._scores()
        for name, mask in current_masks(self.model).items():
            scores[name] = scores[name].masked_fill(~mask, _lowest(scores[name].dtype))
        select = global_masks if self.scope == "global" else layerwise_masks
        masks = select(scores, sparsity, exclude=self._patterns, min_density=self.min_density)
        apply_masks(self.model, masks, self.optimizer)
        self._window.reset()
        return masks
