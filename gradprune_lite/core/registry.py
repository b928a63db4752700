"""What a criterion is: one record per criterion, and the table that holds them.

A ``Criterion`` record says everything ``gp.score``, ``gp.prune``, the option checks, the
results' protocol key and the docs need to know about a criterion:

* ``function(ctx) -> dict name → tensor`` (higher = keep);
* ``options``: option name → default, the only options it accepts (``None``: not declared,
  anything passes unchecked); ``gp.score`` fills in the defaults it was not given;
* ``needs_data``: whether it reads batches;
* ``weight_update``: for criteria that move the surviving weights as they prune (``obs``):
  ``weight_update(model, sparsity, select, batches, options) -> masks`` replaces the
  score → select step of a ``gp.prune`` round (see ``core/prune.py``);
* ``make_state``: for criteria that keep something across rounds, such as movement
  pruning's running sum of −w·∂L/∂w; see "Stateful criteria" below.

``Registry`` maps a name to its record. It also reads as ``dict`` name → function, which is
what ``gp.CRITERIA`` and ``gp.GROUP_CRITERIA`` were before they were registries, so
``name in gp.CRITERIA``, ``gp.CRITERIA[name](ctx)`` and ``gp.CRITERIA.pop(name)`` still work.

Stateful criteria
-----------------
``make_state(model) -> state`` is called once per ``gp.prune`` call, before its first
round, and once per ``gp.score`` call; the criterion reads the object as ``ctx.state`` in
every round. A state either updates itself (with hooks that its ``close()`` removes) or is
fed by whoever trains: movement pruning's ``gp.MovementScores`` (a running sum of −w·g)
has ``update(model)``, which ``gp.GradualPruner`` calls before every optimiser step. In
``gp.prune``'s rounds nothing feeds it, and movement then scores one step, −w·ḡ on the
batches. If the state has a ``close()`` method, ``gp.prune`` calls it when the call ends,
also on an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from torch import nn

from .layers import prunable_weights
from .stats import GradientStats, gradient_stats


class _NoDefault:
    def __repr__(self) -> str:
        return "no default"


#: The default of an option declared by name only: ``gp.score`` leaves it out, so the
#: criterion falls back to its own default.
NO_DEFAULT = _NoDefault()


@dataclass(frozen=True)
class Criterion:
    """One criterion: its function, its options with their defaults, and what it needs.

    Attributes:
        name: the name users pass (``gp.score(model, name, …)``).
        function: ``function(ctx) -> dict name → tensor`` (higher = keep).
        options: option name → default; ``None`` when not declared (nothing is checked).
        needs_data: whether the function reads ``ctx.batches``.
        weight_update: ``(model, sparsity, select, batches, options) -> masks`` for
            criteria that choose the pruned weights and move the others themselves.
        make_state: ``(model) -> state`` for criteria that keep state across rounds.
    """

    name: str
    function: Callable
    options: Mapping[str, Any] | None = None
    needs_data: bool = True
    weight_update: Callable | None = None
    make_state: Callable | None = None

    @property
    def summary(self) -> str:
        """The first line of the function's docstring."""
        return (self.function.__doc__ or "").strip().split("\n")[0]

    def with_defaults(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` after rejecting undeclared names and filling in the defaults."""
        if self.options is None:
            return dict(options)
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ValueError(
                f"criterion {self.name!r} does not take the option(s) {unknown}; its options "
                f"are {sorted(self.options) or 'none'}."
            )
        defaults = {k: v for k, v in self.options.items() if v is not NO_DEFAULT}
        return {**defaults, **options}


def declared_options(options: Iterable[str] | Mapping[str, Any] | None):
    """``options`` as a read-only name → default mapping (None stays None).

    A plain collection of names declares them without defaults (``NO_DEFAULT``: not filled
    in, so the function falls back to its own).
    """
    if options is None:
        return None
    if isinstance(options, str):
        raise ValueError(f"options must be a collection of names, got the string {options!r}.")
    if not isinstance(options, Mapping):
        options = dict.fromkeys(options, NO_DEFAULT)
    return MappingProxyType(dict(options))


class ScoringContext:
    """What a criterion may read: the model, its prunable weights, data and options.

    Attributes:
        model: the model being scored (never modified by the built-in criteria).
        weights: dict name → prunable weight tensor (detached).
        batches: the data iterable given to ``gp.score`` (or None).
        options: keyword options given to ``gp.score``, the criterion's defaults filled in.
        state: the criterion's state (``make_state``), or None for stateless criteria.
        stats: dict name → ``GradientStats``, computed on first use from ``batches``.
    """

    def __init__(self, model: nn.Module, batches, options: dict, state=None):
        self.model = model
        self.weights = {name: w.detach() for name, w in prunable_weights(model).items()}
        self.batches = batches
        self.options = options
        self.state = state
        self._stats: dict[str, GradientStats] | None = None

    @property
    def stats(self) -> dict[str, GradientStats]:
        if self._stats is None:
            self._stats = gradient_stats(
                self.model,
                self.require_batches(),
                self.options.get("loss_fn"),
                sample_dim=self.options.get("sample_dim", 0),
                reduction=self.options.get("reduction"),
                max_elements=self.options.get("max_elements"),
            )
        return self._stats

    def require_batches(self) -> Iterable:
        if self.batches is None:
            raise ValueError(
                "this criterion needs data: pass batches=[(inputs, targets), ...] or a "
                "DataLoader to gp.score (only 'random', 'magnitude' and 'synflow' are data-free)."
            )
        return self.batches


class Registry(MutableMapping):
    """Records by name, in registration order; reads as ``dict`` name → function.

    Args:
        kind: what the records are, for error messages ("criterion", "group criterion").
        hint: how to add one, appended to the unknown-name error.
    """

    def __init__(self, kind: str, hint: str = ""):
        self.kind = kind
        self.hint = hint
        self._records: dict[str, Criterion] = {}

    def add(self, record: Criterion) -> Criterion:
        """Register ``record`` (replacing one of the same name) and return it."""
        if not isinstance(record.name, str) or not record.name:
            raise ValueError(f"a {self.kind} needs a non-empty string name, got {record.name!r}.")
        if not callable(record.function):
            raise ValueError(
                f"{self.kind} {record.name!r} needs a function, got {record.function!r}."
            )
        self._records[record.name] = record
        return record

    def record(self, name: str) -> Criterion:
        """The record of ``name``; ValueError listing the valid names if there is none."""
        if name not in self._records:
            raise ValueError(
                f"unknown {self.kind} {name!r}; valid names are {sorted(self._records)}. "
                + self.hint
            )
        return self._records[name]

    def records(self) -> list[Criterion]:
        return list(self._records.values())

    def __getitem__(self, name: str) -> Callable:
        return self._records[name].function

    def __setitem__(self, name: str, function: Callable) -> None:
        """``registry[name] = function``: a criterion with undeclared options."""
        self.add(Criterion(name, function))

    def __delitem__(self, name: str) -> None:
        del self._records[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._records)})"

    def markdown(self) -> str:
        """One line per record: name, options with defaults, data, what it keeps/moves."""
        lines = [
            f"| {self.kind} | options (default) | needs data | moves weights | keeps state "
            "| what it is |",
            "|---|---|---|---|---|---|",
        ]
        for r in self.records():
            if r.options is None:
                options = "not declared"
            else:
                options = ", ".join(f"`{k}={v!r}`" for k, v in r.options.items()) or "none"
            cells = [
                f"`{r.name}`",
                options,
                "yes" if r.needs_data else "no",
                "yes" if r.weight_update else "no",
                "yes" if r.make_state else "no",
                r.summary.replace("|", "\\|"),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"
