"""Movement pruning (Sanh, Wolf & Rush, NeurIPS 2020): keep the weights moving away from 0.

Hard movement pruning scores each weight by how far fine-tuning has pushed it away from
zero, accumulated over the training steps t:

    S = −Σₜ wₜ · gₜ          (higher = keep),

where wₜ is the weight and gₜ the gradient of the training loss at step t, both as the
optimiser is about to use them. gₜ is the batch gradient of step t, i.e. the mean ḡ of the
per-sample gradients of the gradient decomposition (``gp.gradient_stats``) over that
step's batch, so S is the per-step ``ḡ`` times the weight, summed over steps, with the
sign flipped. Under plain SGD (w_{t+1} = wₜ − η gₜ) the term −wₜ gₜ is wₜ (w_{t+1} − wₜ)/η: positive
exactly when the step moves the weight away from zero, whatever its sign. The learning
rate the paper folds into S is a common positive factor and does not change the ranking,
so it is left out.

Movement needs state across steps, so it comes in two forms:

* ``MovementScores``: the accumulator. Call ``update(model)`` after each backward pass
  (before ``optimizer.step()``), read ``scores()`` whenever you prune. ``gp.GradualPruner``
  does both for you, from an optimiser step pre-hook.
* ``gp.score(model, "movement", batches)``: the same score for a single step whose
  gradient is ḡ over ``batches``, i.e. −w·ḡ. It is the signed first-order Taylor term
  (``taylor`` is its absolute value).
"""

from __future__ import annotations

import torch
from torch import nn

from .criteria import DATA_OPTIONS, register_criterion
from .layers import prunable_modules
from .masks import trained_weight
from .registry import ScoringContext
from .stats import accumulation_dtype


class MovementScores:
    """The running sum −Σₜ wₜ·gₜ for every prunable weight of one model.

    Args:
        model: the model being trained; its prunable weights (``gp.prunable_weights``
            names) are followed. The sums start at zero.

    Attributes:
        totals: dict name → tensor shaped like the weight (float32, or float64 for a
            float64 weight): the sum so far.
        steps: how many times ``update`` has been called.
    """

    def __init__(self, model: nn.Module):
        self._model = model
        self._modules = prunable_modules(model)
        self.totals = {
            name: torch.zeros_like(module.weight, dtype=accumulation_dtype(module.weight))
            for name, module in self._modules.items()
        }
        self.steps = 0

    @torch.no_grad()
    def update(self, model: nn.Module | None = None) -> None:
        """Add −w·g for the current weights and their ``.grad`` (one training step).

        Call it after ``loss.backward()`` and before ``optimizer.step()``: it reads each
        weight as the gradient was computed at. A weight without a gradient this step (a
        frozen layer) adds nothing. ``model``, if given, must be the model given at
        construction. Under ``torch.nn.utils.prune`` the trained tensor (``weight_orig``)
        and its gradient are used.
        """
        if model is not None and model is not self._model:
            raise ValueError(
                "MovementScores.update got a different model from the one it was built for; "
                "make one MovementScores per model."
            )
        for name, module in self._modules.items():
            weight = trained_weight(module)
            if weight.grad is None:
                continue
            total = self.totals[name]
            total.sub_(weight.detach().to(total.dtype) * weight.grad.to(total.dtype))
        self.steps += 1

    def state_dict(self) -> dict:
        """The sums and the step count, to resume accumulating after a restart."""
        return {"totals": self.totals, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        for name, total in self.totals.items():
            total.copy_(state["totals"][name])
        self.steps = int(state["steps"])

    def scores(self) -> dict[str, torch.Tensor]:
        """dict name → −Σₜ wₜ·gₜ, a copy shaped like the weight; higher = keep."""
        return {name: total.clone() for name, total in self.totals.items()}


@register_criterion("movement", options=DATA_OPTIONS, make_state=MovementScores)
def movement_scores(ctx: ScoringContext) -> dict[str, torch.Tensor]:
    """−Σₜ wₜ·gₜ (Sanh et al., 2020): accumulated when a ``MovementScores`` is attached.

    Inside ``gp.GradualPruner`` the context carries the accumulator as ``ctx.state`` and
    its sums are returned. Called from ``gp.score``, or with an accumulator that has seen
    no step yet, it is one step on ``batches``: −w·ḡ.
    """
    state = getattr(ctx, "state", None)
    if isinstance(state, MovementScores) and state.steps > 0:
        return state.scores()
    return {name: -(ctx.weights[name] * s.mean) for name, s in ctx.stats.items()}
