"""The interactive sparsity explorer of notebook 04, built with ipywidgets.

``sparsity_explorer(model, train, test)`` returns an ``Explorer`` holding the widget box
and its parts. Two criteria, A and B, are pruned side by side from the same trained model
at the slider's sparsity. The explorer shows

- a readout: each criterion's test accuracy, its error spread over resampled scoring
  batches, the weights left, and the Jaccard overlap of the two kept sets;
- the test error against sparsity for both criteria, with a band from the resampled
  scoring batches and a cursor at the slider;
- the first layer's keep-mask of each criterion (the fraction of fc1 weights kept per input
  pixel, 28×28), auto-scaled with a colour bar, drawn at its native pixel size;
- per-layer sparsity bars for both criteria.

Choosing a criterion computes its whole curve once (scores on each scoring draw, then a
mask and an evaluation per level); every point, and every rendered picture, is cached, so
a control that returns to a point already seen costs a dictionary look-up.

Tests drive it without a browser: set ``explorer.slider.value`` and read
``explorer.readout.value``. Stable CSS classes (``gp-sparsity``, ``gp-criterion-a``,
``gp-criterion-b``, ``gp-finetune``, ``gp-readout``, ``gp-curve-image``, ``gp-mask-image``,
``gp-layer-bars``) let a browser test find the parts.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..core.criteria import score
from ..core.masks import apply_masks, mask_overlap
from ..core.selection import global_masks
from . import plots

#: Sparsity levels of the slider: dense at the left, most levels at the high end, where
#: the criteria differ.
SPARSITY_LEVELS = (0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
#: Criteria offered by default (all cheap to score).
EXPLORER_CRITERIA = ("magnitude", "taylor", "snip", "fisher", "synflow", "random")
#: Resolution of the rendered pictures; each is shown at exactly its pixel size.
DPI = 100


@dataclass
class PrunedResult:
    """One point of the explorer (criterion, sparsity, fine-tune), scored on draw 0.

    ``masks``: dict name → bool tensor (True = keep); ``per_layer``: name → fraction of the
    layer's weights removed; ``mask_image``: the first layer's kept fraction per input.
    """

    evaluation: Any  # gp.Evaluation
    masks: dict
    remaining: int
    total: int
    per_layer: dict
    mask_image: torch.Tensor


@dataclass
class Explorer:
    """The widget box and its parts; ``update()`` refreshes the readout and the pictures."""

    box: Any
    slider: Any
    criterion_a: Any
    criterion_b: Any
    finetune: Any
    readout: Any
    curve_image: Any
    mask_image: Any
    layer_image: Any
    model: nn.Module
    train: Any
    test: Any
    levels: tuple
    score_draws: list  # one list of (images, labels) batches per resampled scoring draw
    finetune_samples: int
    scores: dict = field(default_factory=dict)
    results: dict = field(default_factory=dict)
    draw_errors: dict = field(default_factory=dict)
    pictures: dict = field(default_factory=dict)

    def scores_for(self, criterion: str, draw: int = 0) -> dict[str, torch.Tensor]:
        """Scores of the dense model by ``criterion`` on scoring draw ``draw``; cached."""
        key = (criterion, draw)
        if key not in self.scores:
            options = {"seed": draw} if criterion == "random" else {}
            self.scores[key] = score(self.model, criterion, self.score_draws[draw], **options)
        return self.scores[key]

    def _evaluate_masks(self, masks: dict, finetune: bool):
        from ..experiment.evaluate import evaluate
        from ..experiment.train import fit

        pruned = copy.deepcopy(self.model)
        apply_masks(pruned, masks)
        if finetune:
            fit(
                pruned,
                self.train.take(self.finetune_samples),
                epochs=1,
                lr=0.01,
                seed=0,
                progress=False,
            )
        return evaluate(pruned, self.test)

    def result(self, criterion: str, sparsity: float, finetune: bool) -> PrunedResult:
        """Prune a copy of the model (scores of draw 0), optionally fine-tune it one epoch
        on ``finetune_samples`` training digits, evaluate; cached."""
        key = (criterion, float(sparsity), bool(finetune))
        if key not in self.results:
            masks = global_masks(self.scores_for(criterion), sparsity)
            evaluation = self._evaluate_masks(masks, finetune and sparsity > 0)
            self.results[key] = PrunedResult(
                evaluation,
                masks,
                remaining=sum(int(m.sum()) for m in masks.values()),
                total=sum(m.numel() for m in masks.values()),
                per_layer={n: 1.0 - float(m.float().mean()) for n, m in masks.items()},
                mask_image=first_layer_image(next(iter(masks.values()))),
            )
        return self.results[key]

    def errors_over_draws(self, criterion: str, sparsity: float) -> list[float]:
        """Test error (%) without fine-tuning at ``sparsity`` for each scoring draw."""
        key = (criterion, float(sparsity))
        if key not in self.draw_errors:
            errors = [self.result(criterion, sparsity, False).evaluation.error]
            for draw in range(1, len(self.score_draws)):
                masks = global_masks(self.scores_for(criterion, draw), sparsity)
                errors.append(self._evaluate_masks(masks, False).error)
            self.draw_errors[key] = errors
        return self.draw_errors[key]

    def curve(self, criterion: str) -> dict[str, list[float]]:
        """``{"mean", "low", "high"}``: error (%) at every level, draw 0 and its spread."""
        spreads = [self.errors_over_draws(criterion, s) for s in self.levels]
        return {
            "mean": [errors[0] for errors in spreads],
            "low": [min(errors) for errors in spreads],
            "high": [max(errors) for errors in spreads],
        }

    def overlap(self, sparsity: float) -> float:
        """Jaccard overlap of the kept sets of criteria A and B at ``sparsity``."""
        a = self.result(self.criterion_a.value, sparsity, False).masks
        b = self.result(self.criterion_b.value, sparsity, False).masks
        return mask_overlap(a, b)

    def _picture(self, key: tuple, draw) -> bytes:
        if key not in self.pictures:
            self.pictures[key] = plots.png_bytes(draw(), dpi=DPI)
        return self.pictures[key]

    def update(self, change=None) -> None:
        """Callback for every control: recompute (or fetch) and redraw."""
        a, b = self.criterion_a.value, self.criterion_b.value
        sparsity, finetune = self.slider.value, self.finetune.value
        # Dense, there is nothing to fine-tune: a toggle that changed nothing read as broken.
        self.finetune.disabled = sparsity == 0
        labels = {"A": a, "B": b}
        results = {label: self.result(c, sparsity, finetune) for label, c in labels.items()}
        self.readout.value = self._readout(labels, results, sparsity, finetune)

        def named(label):
            return f"{label}: {labels[label]}"

        points = None
        if finetune and sparsity > 0:
            points = {
                f"{named(label)} + fine-tune": r.evaluation.error for label, r in results.items()
            }
        self.curve_image.value = self._picture(
            ("curve", a, b, sparsity, finetune),
            lambda: plots.explorer_curve(
                self.levels,
                {named(lb): self.curve(c) for lb, c in labels.items()},
                sparsity,
                points,
            ),
        )
        self.mask_image.value = self._picture(
            ("masks", a, b, sparsity),
            lambda: plots.mask_images(
                {f"{named(lb)}, fc1 kept per pixel": r.mask_image for lb, r in results.items()}
            ),
        )
        self.layer_image.value = self._picture(
            ("layers", a, b, sparsity),
            lambda: plots.layer_sparsity_bars(
                {named(lb): r.per_layer for lb, r in results.items()}
            ),
        )

    def _readout(self, labels: dict, results: dict, sparsity: float, finetune: bool) -> str:
        tuned = finetune and sparsity > 0
        rows = []
        for label, result in results.items():
            criterion, ev = labels[label], result.evaluation
            # The spread over scoring draws is of the pruned network before fine-tuning, so a
            # fine-tuned accuracy is shown beside its own "before", not beside that spread.
            spread = error_spread(self.errors_over_draws(criterion, sparsity))
            if tuned:
                before = self.result(criterion, sparsity, False).evaluation.accuracy
                state = " + fine-tune"
                accuracy = (
                    f"<b>{ev.accuracy:.2%}</b> after fine-tuning, {before:.2%} before ({spread})"
                )
            else:
                state = ", dense: nothing to fine-tune" if finetune else ""
                accuracy = f"<b>{ev.accuracy:.2%}</b> ({spread})"
            rows.append(
                f"<b>{label}: {criterion}</b> at sparsity {sparsity:.1%}{state}: "
                f"accuracy {accuracy}, <b>{result.remaining:,}</b> of {result.total:,} "
                f"weights left ({result.remaining / result.total:.2%})"
            )
        rows.append(
            f"mask overlap of A and B (Jaccard of the kept sets, 1 = the same weights): "
            f"<b>{self.overlap(sparsity):.3f}</b>"
        )
        return "<br>".join(rows)


def error_spread(errors: list[float]) -> str:
    """Test errors (%) of one point over the scoring draws, in words: a range only when the
    draws differ (a data-free criterion such as magnitude gives every draw the same mask)."""
    low, high = f"{min(errors):.2f}", f"{max(errors):.2f}"
    if len(errors) == 1:
        return f"error {low}%"
    if low == high:
        return f"error {low}% on all {len(errors)} scoring draws"
    return f"error {low}–{high}% over {len(errors)} scoring draws"


def snapshot(widget) -> list:
    """What a widget (or a box of widgets) shows now, as static outputs.

    Widgets are drawn only by a live Jupyter front end: on GitHub or nbviewer the saved
    widget state shows nothing. Display the snapshot beside the widget,
    ``display(*gp.widgets.snapshot(explorer.box))``, and the notebook's saved outputs carry
    the explorer's state as ordinary images and HTML.

    The tree is walked in order: an ``Image`` becomes an ``IPython.display.Image`` of its
    bytes; an ``HTML`` or ``Label`` becomes ``IPython.display.HTML``; any other control
    (slider, dropdown, toggle) becomes one line ``description: value``, consecutive
    controls joined. Returns the list of display objects.
    """
    import html

    import ipywidgets as w
    from IPython.display import HTML, Image

    outputs, controls = [], []

    def flush():
        if controls:
            outputs.append(HTML(" · ".join(controls)))
            controls.clear()

    def walk(node):
        if isinstance(node, w.Box):
            for child in node.children:
                walk(child)
        elif isinstance(node, w.Image):
            flush()
            if node.value:
                outputs.append(Image(data=bytes(node.value), format=node.format))
        elif isinstance(node, (w.HTML, w.HTMLMath, w.Label)):
            flush()
            outputs.append(HTML(node.value))
        elif hasattr(node, "value"):
            shown = getattr(node, "label", None) or node.value  # a selection's label: "95.0%"
            name = node.description or type(node).__name__
            controls.append(f"<b>{html.escape(name)}</b>: {html.escape(str(shown))}")

    walk(widget)
    flush()
    return outputs


def readout_text(explorer: Explorer) -> str:
    """The readout without HTML tags, one line per row, for printing."""
    return re.sub(r"<[^>]+>", "", explorer.readout.value.replace("<br>", "\n"))


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


def _image_widget(w, css_class: str, size: tuple[int, int]):
    """An ``ipywidgets.Image`` laid out at exactly ``size`` pixels, so it is not rescaled."""
    image = w.Image(format="png", layout=w.Layout(width=f"{size[0]}px", height=f"{size[1]}px"))
    image.add_class(css_class)
    return image


def sparsity_explorer(
    model: nn.Module,
    train,
    test,
    criteria: tuple[str, ...] = EXPLORER_CRITERIA,
    levels: tuple[float, ...] = SPARSITY_LEVELS,
    score_samples: int = 1000,
    finetune_samples: int = 2000,
    draws: int = 3,
) -> Explorer:
    """Build the explorer for a trained ``model``.

    Args:
        model: the trained dense model (never modified: each point prunes a copy).
        train: ``gp.Digits``. Scoring draw ``d`` uses digits ``d·score_samples`` to
            ``(d+1)·score_samples`` (disjoint draws; draw 0 is the first ``score_samples``);
            the one-epoch fine-tune (lr 0.01) uses the first ``finetune_samples``.
        test: ``gp.Digits`` on which each point is evaluated (keep it a few thousand
            digits for sub-second moves).
        criteria: names in ``gp.CRITERIA`` offered in both dropdowns; A starts at the
            first, B at the second (or the first, if there is only one).
        levels: sparsities (fractions in [0, 1)) offered by the slider, dense at the left.
        draws: resampled scoring draws behind the stability band (at least 1).

    Returns:
        an ``Explorer``; display ``explorer.box``. It starts at the first level.
    """
    import ipywidgets as w

    if not criteria or not levels:
        raise ValueError("sparsity_explorer needs at least one criterion and one sparsity level.")
    if any(not 0.0 <= float(s) < 1.0 for s in levels):
        raise ValueError(f"levels must be sparsities in [0, 1), e.g. 0.9 for 90%; got {levels}.")
    if not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be a positive integer (e.g. 3), got {draws!r}.")
    if draws * score_samples > len(train):
        raise ValueError(
            f"{draws} disjoint scoring draws of {score_samples} digits need "
            f"{draws * score_samples:,} training digits; train has {len(train):,}. "
            "Pass fewer draws or a smaller score_samples."
        )
    levels = tuple(sorted(float(s) for s in levels))
    slider = w.SelectionSlider(
        options=[(f"{s:.1%}", s) for s in levels],
        value=levels[0],
        description="sparsity",
        continuous_update=False,
        layout=w.Layout(width="460px"),
    )
    slider.add_class("gp-sparsity")
    dropdown_a = w.Dropdown(options=list(criteria), value=criteria[0], description="A")
    dropdown_a.add_class("gp-criterion-a")
    dropdown_b = w.Dropdown(
        options=list(criteria), value=criteria[min(1, len(criteria) - 1)], description="B"
    )
    dropdown_b.add_class("gp-criterion-b")
    toggle = w.ToggleButton(
        value=False,
        description="fine-tune 1 epoch",
        tooltip=f"fine-tune each pruned network 1 epoch on {finetune_samples:,} training "
        "digits (off while the slider is at 0%: nothing is pruned)",
    )
    toggle.add_class("gp-finetune")
    readout = w.HTML()
    readout.add_class("gp-readout")
    sizes = {
        "curve": plots.pixel_size(plots.explorer_curve([0.0], {}, 0.0), DPI),
        "masks": plots.pixel_size(plots.mask_images(dict.fromkeys("AB", torch.zeros(1, 1))), DPI),
        "layers": plots.pixel_size(plots.layer_sparsity_bars({"A": {"fc": 0.0}}), DPI),
    }
    curve_image = _image_widget(w, "gp-curve-image", sizes["curve"])
    mask_image = _image_widget(w, "gp-mask-image", sizes["masks"])
    layer_image = _image_widget(w, "gp-layer-bars", sizes["layers"])
    # Pictures 480 px tall in two rows (the box about 620 px, estimated), so that a laptop's
    # window shows the slider and the pictures together; no row is wider than 900 px.
    box = w.VBox(
        [
            w.HBox([dropdown_a, dropdown_b, toggle]),
            slider,
            readout,
            curve_image,
            w.HBox([mask_image, layer_image]),
        ]
    )
    explorer = Explorer(
        box=box,
        slider=slider,
        criterion_a=dropdown_a,
        criterion_b=dropdown_b,
        finetune=toggle,
        readout=readout,
        curve_image=curve_image,
        mask_image=mask_image,
        layer_image=layer_image,
        model=model,
        train=train,
        test=test,
        levels=levels,
        score_draws=[list(_draw(train, d, score_samples).batches(250)) for d in range(draws)],
        finetune_samples=finetune_samples,
    )
    for control in (slider, dropdown_a, dropdown_b, toggle):
        control.observe(explorer.update, names="value")
    explorer.update()
    return explorer


def _draw(digits, index: int, size: int):
    """The ``index``-th disjoint block of ``size`` digits (a view, no copy)."""
    start, stop = index * size, (index + 1) * size
    return digits.slice(start, stop, f"digits {start:,} to {stop:,}")
