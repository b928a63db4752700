"""Ranking stability: do two disjoint draws of data give the same mask?

A data-driven criterion scores weights from a finite sample of data. Score the same model
on ``n_draws`` **disjoint** random draws of ``samples_per_draw`` samples, keep the top
``1 − sparsity`` by each draw's scores, and compare every pair of draws (or, with
``n_pairs``, score ``n_pairs`` independent pairs of disjoint draws, each pair from its own
random split, so that the pairs' values are independent and give a confidence interval):

* the **Jaccard overlap** |A ∩ B| / |A ∪ B| of the kept sets (1 = the same mask);
* the **Spearman rank correlation** of the two score vectors over all weights (1 = the
  same order), with tied scores given their average rank.

Draws that share samples would flatter the criterion, so the draws never overlap.

References come with every result. ``magnitude`` ignores the data, so its overlap is 1 by
construction: perfectly *reproducible*, which says nothing about whether it keeps the
right weights. Two independent ``random`` masks that each keep a fraction p = 1 − s of N
weights share about p²N of them, so their Jaccard overlap is about
p²N / (2pN − p²N) = p / (2 − p) = (1 − s) / (1 + s): 0.053 at 90% sparsity, 0.026 at 95%.

Pairs among one set of draws share draws, so their values are correlated and their standard
deviation is no standard error; ``overlap_interval`` therefore needs ``n_pairs``.

Pass several models (say, the same architecture trained from different seeds) to see
whether a stability figure belongs to one network or to the recipe; their masks are also
compared with each other on the same draw.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ._validate import check_sparsity
from .criteria import CRITERIA, score
from .layers import prunable_weights
from .masks import mask_overlap
from .selection import global_masks, layerwise_masks

SCOPES = ("global", "layerwise")


def _doubled_ranks(values: torch.Tensor) -> torch.Tensor:
    """2 × the average rank (0 … n−1) of each element of a 1-D tensor, as exact int64.

    A run of tied values at sorted positions start … end has average rank
    (start + end) / 2, so twice it is an integer. Fixed-shape ops only (no unique, no
    host sync): each position finds its run's start by a running max and its end by a
    running min from the back.
    """
    n = len(values)
    sorted_values, order = values.sort(stable=True)
    position = torch.arange(n, device=values.device)
    starts = torch.ones(n, dtype=torch.bool, device=values.device)
    starts[1:] = sorted_values[1:] != sorted_values[:-1]
    ends = torch.ones_like(starts)
    ends[:-1] = starts[1:]
    start = torch.where(starts, position, 0).cummax(0).values
    end = torch.where(ends, position, n - 1).flip(0).cummin(0).values.flip(0)
    result = torch.empty(n, dtype=torch.int64, device=values.device)
    result[order] = start + end
    return result


def ranks(values: torch.Tensor) -> torch.Tensor:
    """Rank (0 … n−1) of each element of a 1-D tensor; tied values share their average
    rank, so ties never order themselves by position.

    float64 on the CPU; float32 on other devices (MPS has no float64), which holds the
    half-integer ranks exactly up to 2²³ elements.
    """
    dtype = torch.float64 if values.device.type == "cpu" else torch.float32
    return _doubled_ranks(values).to(dtype) / 2


def _exact_sum(products: torch.Tensor, bound: int) -> int:
    """Σ of an int64 tensor whose entries are at most ``bound`` in size, exactly: int64
    sums of chunks that cannot overflow, then Python's unbounded ints (one host sync)."""
    n = products.numel()
    chunk = max(1, min(1 << 16, (1 << 62) // max(bound, 1)))
    pad = -n % chunk
    padded = torch.nn.functional.pad(products, (0, pad)) if pad else products
    return sum(padded.reshape(-1, chunk).sum(1).tolist())


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two equally long 1-D tensors (Pearson of the ranks).

    Computed exactly in integers on the tensors' device, in no float64 (which MPS
    lacks): the centred doubled ranks 2r − (n − 1) are int64, their products and sums
    are exact, and only the final ratio is a float. Returns 0.0 when either tensor is
    constant (no order to correlate).
    """
    if a.shape != b.shape or a.dim() != 1:
        raise ValueError(f"spearman needs two 1-D tensors of one length, got {a.shape}, {b.shape}.")
    n = len(a)
    ca = _doubled_ranks(a) - (n - 1)
    cb = _doubled_ranks(b.to(a.device)) - (n - 1)
    bound = (n - 1) ** 2  # |2r − (n − 1)| <= n − 1
    norm = math.sqrt(_exact_sum(ca * ca, bound)) * math.sqrt(_exact_sum(cb * cb, bound))
    return 0.0 if norm == 0 else _exact_sum(ca * cb, bound) / norm


def t_quantile(probability: float, df: int) -> float:
    """The ``probability`` quantile of Student's t distribution with ``df`` degrees of freedom.

    Bisection on the CDF, 1/2 + ∫₀ˣ density, by Simpson's rule on 2,000 intervals (no scipy
    needed); exact to about 1e-6 for the quantiles an interval needs (0.5 < p < 0.9995).
    """
    if not 0.5 < probability < 1.0:
        raise ValueError(f"probability must be between 0.5 and 1, got {probability!r}.")
    if not isinstance(df, int) or isinstance(df, bool) or df < 1:
        raise ValueError(f"df must be an integer ≥ 1, got {df!r}.")
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def density(x: float) -> float:
        return math.exp(log_norm - (df + 1) / 2 * math.log1p(x * x / df))

    def cdf(x: float, steps: int = 2000) -> float:
        h = x / steps
        inner = sum((4 if i % 2 else 2) * density(i * h) for i in range(1, steps))
        return 0.5 + h / 3 * (density(0.0) + inner + density(x))

    low, high = 0.0, 1.0
    while cdf(high) < probability:
        low, high = high, 2 * high
    for _ in range(40):
        middle = (low + high) / 2
        low, high = (middle, high) if cdf(middle) < probability else (low, middle)
    return (low + high) / 2


def mean_interval(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the mean of independent values and its two-sided t interval,
    mean ± t(1 − (1 − confidence)/2, n − 1) · sd / √n.

    Raises:
        ValueError: with fewer than two values (one value has no spread to estimate) or a
            confidence outside (0, 1).
    """
    values = [float(v) for v in (values.flatten() if torch.is_tensor(values) else values)]
    if len(values) < 2:
        raise ValueError(
            f"an interval needs at least two independent values, got {len(values)}; measure "
            "more pairs of draws (n_pairs) or seeds."
        )
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence!r}.")
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile(1 - (1 - confidence) / 2, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def random_overlap_expected(sparsity: float) -> float:
    """Jaccard overlap of two independent random masks at ``sparsity`` s: (1 − s) / (1 + s)."""
    s = check_sparsity(sparsity)
    return (1 - s) / (1 + s)


@dataclass
class RankingStability:
    """What ``ranking_stability`` measured.

    Attributes:
        criterion, sparsity, scope, samples_per_draw: the settings.
        overlaps: (n_models, n_pairs) Jaccard overlap of the kept sets for every model and
            every pair of draws (pairs in ``itertools.combinations`` order).
        rank_correlations: (n_models, n_pairs) Spearman correlation of the scores, same order
            (``nan`` when not asked for).
        across_models: (n_model_pairs,) Jaccard overlap between the masks of two different
            models scored on the same (first) draw; empty for a single model.
        magnitude_overlap: the same draw-to-draw overlap for ``magnitude`` (1.0: data-free);
            ``nan`` when references were not asked for.
        random_overlap: measured overlap of independent ``random`` masks (mean over pairs);
            ``nan`` when references were not asked for.
        random_expected: (1 − s) / (1 + s), what ``random_overlap`` should be near.
        draws: one index tensor per draw into the data given. Without ``n_pairs`` all draws
            are pairwise disjoint; with it, pair p is ``draws[2p]``, ``draws[2p + 1]``,
            disjoint within the pair, and each pair comes from its own random split.
        independent_pairs: True when the pairs came from ``n_pairs`` independent splits
            (their values are independent, so ``overlap_interval`` applies).
    """

    criterion: str
    sparsity: float
    scope: str
    samples_per_draw: int
    overlaps: torch.Tensor
    rank_correlations: torch.Tensor
    across_models: torch.Tensor
    magnitude_overlap: float
    random_overlap: float
    random_expected: float
    draws: list[torch.Tensor]
    independent_pairs: bool = False

    @property
    def overlap(self) -> float:
        """Mean Jaccard overlap over models and pairs of draws."""
        return float(self.overlaps.mean())

    @property
    def overlap_spread(self) -> float:
        """Standard deviation of the overlaps (0.0 when there is a single value)."""
        return float(self.overlaps.std()) if self.overlaps.numel() > 1 else 0.0

    @property
    def rank_correlation(self) -> float:
        """Mean Spearman correlation over models and pairs of draws."""
        return float(self.rank_correlations.mean())

    @property
    def rank_correlation_spread(self) -> float:
        """Standard deviation of the rank correlations (0.0 for a single value)."""
        n = self.rank_correlations.numel()
        return float(self.rank_correlations.std()) if n > 1 else 0.0

    def _interval(self, values: torch.Tensor, confidence: float) -> tuple[float, float, float]:
        if not self.independent_pairs:
            raise ValueError(
                "pairs among one set of draws share draws, so they give no confidence "
                "interval; measure with n_pairs (independent pairs of disjoint draws)."
            )
        # Models scored on the same pair are not independent: average them per pair first.
        return mean_interval(values.mean(0), confidence)

    def overlap_interval(self, confidence: float = 0.95) -> tuple[float, float, float]:
        """(mean, low, high) of the Jaccard overlap over independent pairs of draws."""
        return self._interval(self.overlaps, confidence)

    def rank_correlation_interval(self, confidence: float = 0.95) -> tuple[float, float, float]:
        """(mean, low, high) of the Spearman correlation over independent pairs of draws."""
        return self._interval(self.rank_correlations, confidence)

    def __str__(self) -> str:
        # A spread needs at least two values: one pair of draws prints its value alone,
        # never "± 0.000", and a spread says what it is over.
        models, pairs = self.overlaps.shape
        with_correlation = not bool(self.rank_correlations.isnan().any())
        overlap, correlation = f"{self.overlap:.3f}", f"{self.rank_correlation:.3f}"
        if self.independent_pairs and pairs > 1:
            _, low, high = self.overlap_interval()
            overlap += f" [95% CI {low:.3f}, {high:.3f}]"
            if with_correlation:
                _, c_low, c_high = self.rank_correlation_interval()
                correlation += f" [95% CI {c_low:.3f}, {c_high:.3f}]"
            over = f" (mean over {pairs} independent pairs of draws)"
        elif self.overlaps.numel() > 1:
            overlap += f" ± {self.overlap_spread:.3f}"
            correlation += f" ± {self.rank_correlation_spread:.3f}"
            over = f" (sd over {models} model(s) × {pairs} pair(s) of draws)"
        else:
            over = " (one pair of draws: no spread)"
        correlation = f", rank correlation {correlation}" if with_correlation else ""
        text = (
            f"{self.criterion} at {self.sparsity:.0%} ({self.scope}), "
            f"{self.samples_per_draw:,} samples per draw: overlap {overlap}{correlation}"
            f"{over} (magnitude {self.magnitude_overlap:.3f}, "
            f"random {self.random_overlap:.3f}, expected {self.random_expected:.3f})"
        )
        if self.across_models.numel():
            text += f"; across models {float(self.across_models.mean()):.3f}"
        return text


def _as_tensors(data) -> tuple[torch.Tensor, torch.Tensor]:
    images = getattr(data, "images", None)
    labels = getattr(data, "labels", None)
    if images is None and isinstance(data, (tuple, list)) and len(data) == 2:
        images, labels = data
    if not (isinstance(images, torch.Tensor) and isinstance(labels, torch.Tensor)):
        raise ValueError(
            "data must be gp.Digits or a pair of tensors (inputs, targets), got "
            f"{type(data).__name__}."
        )
    if len(images) != len(labels):
        raise ValueError(
            f"data has {len(images)} inputs but {len(labels)} targets; give one target per input."
        )
    return images, labels


def _as_models(model) -> list[nn.Module]:
    models = [model] if isinstance(model, nn.Module) else list(model)
    if not models or not all(isinstance(m, nn.Module) for m in models):
        raise ValueError(
            "model must be an nn.Module or a non-empty list of them (e.g. one per training "
            "seed: [gp.trained('lenet_300_100', seed=s) for s in (0, 1)])."
        )
    shapes = [{n: tuple(w.shape) for n, w in prunable_weights(m).items()} for m in models]
    if any(s != shapes[0] for s in shapes[1:]):
        raise ValueError(
            "the models must share one architecture (the same prunable weight names and "
            "shapes) so that their masks can be compared."
        )
    return models


def _flat(scores: dict[str, torch.Tensor]) -> torch.Tensor:
    # Only the order matters: torch.cat promotes mixed dtypes, no float64 is needed.
    return torch.cat([s.flatten() for s in scores.values()])


def _check_sparsities(sparsity) -> list[float]:
    values = [sparsity] if not isinstance(sparsity, (list, tuple)) else list(sparsity)
    if not values:
        raise ValueError("sparsity is an empty sequence: give one value or several, e.g. 0.95.")
    checked = [check_sparsity(value) for value in values]
    for value in checked:
        if not 0.0 < value < 1.0:
            raise ValueError(
                f"sparsity must be strictly between 0 and 1 to compare kept sets, got {value}."
            )
    return checked


def ranking_stability(
    model: nn.Module | Sequence[nn.Module],
    criterion: str,
    data,
    sparsity: float | Sequence[float],
    *,
    n_draws: int = 2,
    n_pairs: int | None = None,
    samples_per_draw: int = 1000,
    seed: int = 0,
    scope: str = "global",
    batch_size: int = 1000,
    references: bool = True,
    correlations: bool = True,
    **options,
) -> RankingStability | dict[float, RankingStability]:
    """Score on disjoint random draws of ``data`` and compare the resulting masks.

    Args:
        model: an ``nn.Module``, or a list of models of one architecture (for example one
            per training seed). Each is scored on every draw; none is modified.
        criterion: a name in ``gp.CRITERIA``.
        data: ``gp.Digits`` or a pair of tensors ``(inputs, targets)`` with N samples.
        sparsity: fraction of weights pruned, strictly between 0 and 1; or a list of such
            fractions, all measured from one scoring of each draw (scoring is the costly
            part, selecting masks is cheap).
        n_draws: number of disjoint draws (at least 2); every pair is compared.
        n_pairs: instead, this many independent pairs of disjoint draws, each pair from its
            own random split of ``data`` (``n_draws`` must stay 2). Their values are
            independent, so ``.overlap_interval()`` gives a confidence interval.
        samples_per_draw: samples in each draw; ``n_draws * samples_per_draw`` ≤ N.
        seed: seeds the random split of ``data`` into draws (and the random reference).
        scope: ``"global"`` (one threshold) or ``"layerwise"`` (same sparsity per layer).
        batch_size: samples per forward/backward pass while scoring a draw.
        references: also measure the magnitude and random references (cheap, but skip them
            in a sweep that repeats one setting); when False both are ``nan``.
        correlations: also compute the Spearman correlations (an exact rank of every
            weight, the slowest part for a small draw); when False they are ``nan``.
        **options: passed to ``gp.score`` (e.g. ``loss_fn``, ``temperature``).

    Returns:
        a ``RankingStability`` (for a list of sparsities: a dict sparsity → one): overlaps
        and rank correlations per model and pair of draws (``.overlap``,
        ``.overlap_spread``, ``.rank_correlation`` summarise them), the overlap between
        models, the magnitude and random references, and the draws.

    Raises:
        ValueError: on an unknown criterion or scope, a sparsity outside (0, 1), fewer than
            two draws, ``n_pairs`` below 1 or given with ``n_draws`` other than 2, or more
            samples requested than ``data`` holds. Nothing is scored then.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; valid names are {sorted(CRITERIA)}.")
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}.")
    sparsities = _check_sparsities(sparsity)
    for name, value, least in (
        ("n_draws", n_draws, 2),
        ("samples_per_draw", samples_per_draw, 1),
        ("batch_size", batch_size, 1),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise ValueError(f"{name} must be an integer ≥ {least}, got {value!r}.")
    if n_pairs is not None:
        if not isinstance(n_pairs, int) or isinstance(n_pairs, bool) or n_pairs < 1:
            raise ValueError(f"n_pairs must be an integer ≥ 1 or None, got {n_pairs!r}.")
        if n_draws != 2:
            raise ValueError(
                f"give n_draws (all pairs of one set of draws) or n_pairs (independent pairs), "
                f"not both: n_pairs={n_pairs} with n_draws={n_draws}."
            )
    images, labels = _as_tensors(data)
    models = _as_models(model)
    needed = n_draws * samples_per_draw
    if needed > len(labels):
        raise ValueError(
            f"{n_draws} disjoint draws of {samples_per_draw:,} samples need {needed:,} samples, "
            f"but data holds {len(labels):,}. Use fewer or smaller draws, or more data."
        )

    if n_pairs is None:
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
        draws = [order[d * samples_per_draw : (d + 1) * samples_per_draw] for d in range(n_draws)]
        pairs = list(itertools.combinations(range(n_draws), 2))
    else:
        # One split per pair: pairs may share samples with each other (so that they are
        # independent samples of the same statistic), never within a pair.
        draws = []
        for p in range(n_pairs):
            generator = torch.Generator().manual_seed(seed + 1000 * p)
            order = torch.randperm(len(labels), generator=generator)
            draws += [order[:samples_per_draw], order[samples_per_draw : 2 * samples_per_draw]]
        pairs = [(2 * p, 2 * p + 1) for p in range(n_pairs)]
    select = global_masks if scope == "global" else layerwise_masks

    def batches_of(draw: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        parts = draw.split(batch_size)
        return [(images[p.to(images.device)], labels[p.to(labels.device)]) for p in parts]

    def pair_overlaps(scores: Sequence[dict[str, torch.Tensor]], value: float) -> list[float]:
        masks = [select(s, value) for s in scores]
        return [mask_overlap(masks[i], masks[j]) for i, j in pairs]

    def pair_correlations(scores: Sequence[dict[str, torch.Tensor]]) -> list[float]:
        flats = [_flat(s) for s in scores]
        return [spearman(flats[i], flats[j]) for i, j in pairs]

    def options_for(name: str, draw_index: int) -> dict:
        # A random "criterion" must draw independently on each draw, or it would be
        # perfectly reproducible like magnitude.
        return {**options, "seed": seed + draw_index} if name == "random" else options

    scores_per_model = [
        [
            score(m, criterion, batches_of(draw), **options_for(criterion, d))
            for d, draw in enumerate(draws)
        ]
        for m in models
    ]
    correlations_per_model = torch.tensor(
        [
            pair_correlations(s) if correlations else [math.nan] * len(pairs)
            for s in scores_per_model
        ],
        dtype=torch.float64,
    )
    reference_scores = (
        {
            "magnitude": [score(models[0], "magnitude") for _ in draws],
            "random": [score(models[0], "random", seed=seed + d) for d in range(len(draws))],
        }
        if references
        else {}
    )

    def measured_at(value: float) -> RankingStability:
        overlaps = [pair_overlaps(s, value) for s in scores_per_model]
        first_draw_masks = [select(s[0], value) for s in scores_per_model]
        across = [mask_overlap(a, b) for a, b in itertools.combinations(first_draw_masks, 2)]

        def mean_reference_overlap(reference: str) -> float:
            if reference not in reference_scores:
                return float("nan")
            values = pair_overlaps(reference_scores[reference], value)
            return sum(values) / len(values)

        return RankingStability(
            criterion=criterion,
            sparsity=value,
            scope=scope,
            samples_per_draw=samples_per_draw,
            overlaps=torch.tensor(overlaps, dtype=torch.float64),
            rank_correlations=correlations_per_model,
            across_models=torch.tensor(across, dtype=torch.float64),
            magnitude_overlap=mean_reference_overlap("magnitude"),
            random_overlap=mean_reference_overlap("random"),
            random_expected=random_overlap_expected(value),
            draws=draws,
            independent_pairs=n_pairs is not None,
        )

    if isinstance(sparsity, (list, tuple)):
        return {value: measured_at(value) for value in sparsities}
    return measured_at(sparsities[0])
