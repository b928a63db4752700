"""The interactive sparsity explorer of notebook 04, built with ipywidgets.

``sparsity_explorer(model, train, test)`` returns an ``Explorer`` holding the widget box
and its parts. Moving the sparsity slider, choosing a criterion or toggling fine-tuning
prunes a copy of the trained model, evaluates it, and updates a text readout and an
image (first-layer mask + per-class precision). Scores are computed once per criterion
and results cached per (criterion, sparsity, fine-tune), so a move costs one masking and
one evaluation on the first visit and nothing after.

Tests drive it without a browser: set ``explorer.slider.value`` and read
``explorer.readout.value``. Stable CSS classes (``gp-sparsity``, ``gp-criterion``,
``gp-finetune``, ``gp-readout``, ``gp-mask-image``) let a browser test find the parts.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..core.criteria import score
from ..core.masks import apply_masks
from ..core.selection import global_masks
from . import plots

#: Sparsity levels of the slider: dense at the high end, where criteria differ.
SPARSITY_LEVELS = (0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
#: Criteria offered by default (all cheap to score once).
EXPLORER_CRITERIA = ("magnitude", "taylor", "snip", "fisher", "synflow", "random")


@dataclass
class PrunedResult:
    """One point of the explorer: the evaluation and the first-layer keep-mask image."""

    evaluation: Any  # gp.Evaluation
    remaining: int
    total: int
    mask_image: torch.Tensor


@dataclass
class Explorer:
    """The widget box and its parts; ``update()`` refreshes the readout and the image."""

    box: Any
    slider: Any
    criterion: Any
    finetune: Any
    readout: Any
    mask_image: Any
    model: nn.Module
    train: Any
    test: Any
    score_batches: list
    finetune_samples: int
    scores: dict = field(default_factory=dict)
    results: dict = field(default_factory=dict)

    def scores_for(self, criterion: str) -> dict[str, torch.Tensor]:
        """Scores of the dense model by ``criterion``, computed on first use."""
        if criterion not in self.scores:
            self.scores[criterion] = score(self.model, criterion, self.score_batches)
        return self.scores[criterion]

    def result(self, criterion: str, sparsity: float, finetune: bool) -> PrunedResult:
        """Prune a copy of the model, optionally fine-tune it, evaluate; cached."""
        key = (criterion, float(sparsity), bool(finetune))
        if key not in self.results:
            from ..experiment.evaluate import evaluate
            from ..experiment.train import fit

            pruned = copy.deepcopy(self.model)
            masks = global_masks(self.scores_for(criterion), sparsity)
            apply_masks(pruned, masks)
            if finetune and sparsity > 0:
                fit(pruned, self.train.take(self.finetune_samples), epochs=1, lr=0.01,
                    seed=0, progress=False)  # fmt: skip
            remaining = sum(int(m.sum()) for m in masks.values())
            total = sum(m.numel() for m in masks.values())
            first = next(iter(masks.values()))
            self.results[key] = PrunedResult(
                evaluate(pruned, self.test), remaining, total, first_layer_image(first)
            )
        return self.results[key]

    def update(self, change=None) -> None:
        """Callback for every control: recompute (or fetch) and redraw."""
        criterion, sparsity = self.criterion.value, self.slider.value
        finetune = self.finetune.value
        res = self.result(criterion, sparsity, finetune)
        ev = res.evaluation
        self.readout.value = (
            f"<b>{criterion}</b> at sparsity {sparsity:.1%}"
            f"{' + fine-tune' if finetune else ''}: "
            f"accuracy <b>{ev.accuracy:.2%}</b>, macro precision <b>{ev.macro_precision:.2%}</b>, "
            f"remaining weights <b>{res.remaining:,}</b> of {res.total:,} "
            f"({res.remaining / res.total:.2%})"
        )
        fig = plots.mask_and_precision(
            res.mask_image, ev.precision, f"{criterion}, sparsity {sparsity:.1%}"
        )
        self.mask_image.value = plots.png_bytes(fig)


def readout_text(explorer: Explorer) -> str:
    """The readout without HTML tags, for printing."""
    return re.sub(r"<[^>]+>", "", explorer.readout.value)


def first_layer_image(mask: torch.Tensor) -> torch.Tensor:
    """A picture of a first-layer keep-mask: the fraction of weights kept per input.

    Linear on flattened 28×28 images (out × 784) → 28×28; Conv2d (out × in × kh × kw)
    → kh × kw; any other 2-D mask is shown as it is.
    """
    mask = mask.detach().cpu().float()
    if mask.dim() == 2 and mask.shape[1] == 28 * 28:
        return mask.mean(0).reshape(28, 28)
    if mask.dim() == 4:
        return mask.mean((0, 1))
    return mask.reshape(mask.shape[0], -1)


def sparsity_explorer(
    model: nn.Module,
    train,
    test,
    criteria: tuple[str, ...] = EXPLORER_CRITERIA,
    levels: tuple[float, ...] = SPARSITY_LEVELS,
    score_samples: int = 1000,
    finetune_samples: int = 2000,
) -> Explorer:
    """Build the explorer for a trained ``model``.

    Args:
        model: the trained dense model (never modified: each point prunes a copy).
        train: ``gp.Digits`` used for the data-driven scores (first ``score_samples``)
            and the one-epoch fine-tune (first ``finetune_samples``, lr 0.01).
        test: ``gp.Digits`` on which each point is evaluated (keep it a few thousand
            digits for sub-second moves).
        criteria: names in ``gp.CRITERIA`` offered in the dropdown.
        levels: sparsities (fractions in [0, 1)) offered by the slider.

    Returns:
        an ``Explorer``; display ``explorer.box``. It shows the first level and criterion.
    """
    import ipywidgets as w

    if not criteria or not levels:
        raise ValueError("sparsity_explorer needs at least one criterion and one sparsity level.")
    if any(not 0.0 <= float(s) < 1.0 for s in levels):
        raise ValueError(f"levels must be sparsities in [0, 1), e.g. 0.9 for 90%; got {levels}.")
    slider = w.SelectionSlider(
        options=[(f"{s:.1%}", float(s)) for s in levels],
        value=float(levels[0]),
        description="sparsity",
        continuous_update=False,
        layout=w.Layout(width="420px"),
    )
    slider.add_class("gp-sparsity")
    dropdown = w.Dropdown(options=list(criteria), value=criteria[0], description="criterion")
    dropdown.add_class("gp-criterion")
    toggle = w.ToggleButton(value=False, description="fine-tune 1 epoch")
    toggle.add_class("gp-finetune")
    readout = w.HTML()
    readout.add_class("gp-readout")
    image = w.Image(format="png")
    image.add_class("gp-mask-image")
    box = w.VBox([w.HBox([dropdown, toggle]), slider, readout, image])
    explorer = Explorer(
        box=box,
        slider=slider,
        criterion=dropdown,
        finetune=toggle,
        readout=readout,
        mask_image=image,
        model=model,
        train=train,
        test=test,
        score_batches=list(train.take(score_samples).batches(batch_size=250)),
        finetune_samples=finetune_samples,
    )
    for control in (slider, dropdown, toggle):
        control.observe(explorer.update, names="value")
    explorer.update()
    return explorer
