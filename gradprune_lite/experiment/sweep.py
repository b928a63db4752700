"""Notebook 04's sweep: prune the trained reference once, fine-tune one epoch, evaluate.

One run is ``prune_and_finetune(dense, criterion, sparsity, seed, train, validation,
test)``. ``scripts/sweep_04.py`` runs it for every (criterion, sparsity, seed) of
``CRITERIA_SWEPT`` × ``LEVELS`` × ``SEEDS`` (54 fits, too long for a notebook within its
time budget) and writes ``docs/results/notebook04/runs.csv``; notebook 04 reads that
file with ``read_runs`` and reruns seed 0 at 98% live with the same function, so a
student sees that the file is what this code produces. Keeping the protocol in this one
function is what makes the two the same run.

The file's first lines are ``# key: value`` provenance (command, date, torch, CPU,
threads, wall time), read by ``read_provenance``; the rest is CSV, one row per run.
"""

from __future__ import annotations

import copy
import csv
import itertools
from pathlib import Path
from typing import NamedTuple

from torch import nn

from ..core._validate import check_sparsity
from ..core.criteria import CRITERIA, score
from ..core.masks import apply_masks
from ..core.selection import global_masks
from .data import Digits
from .evaluate import evaluate
from .train import fit

#: What the notebook sweeps: sparsities, criteria (snip ranks as taylor, gradient is left
#: out; the notebook says why) and seeds.
LEVELS = (0.92, 0.95, 0.98)
CRITERIA_SWEPT = ("magnitude", "taylor", "fisher", "grasp", "synflow", "random")
SEEDS = (0, 1, 2)
#: Scoring: the first ``SCORING_BATCHES`` batches of ``SCORING_BATCH_SIZE`` digits of a
#: seeded shuffle of the training digits (1,000 digits, a different draw per seed).
SCORING_BATCH_SIZE = 250
SCORING_BATCHES = 4
#: Fine-tuning: ``gp.fit``'s SGD (batch 128, momentum 0.9), one epoch, cosine to 0.
FINETUNE = {"epochs": 1, "lr": 0.05, "schedule": "cosine"}
#: The CSV's columns, in order.
COLUMNS = (
    "criterion",
    "sparsity",
    "seed",
    "untuned_test_error",
    "tuned_test_error",
    "tuned_validation_error",
)


class SweepRun(NamedTuple):
    """The errors (%) of one pruned network: test right after pruning, test and
    validation after fine-tuning."""

    untuned_test: float
    tuned_test: float
    tuned_validation: float


def scoring_batches(train: Digits, seed: int) -> list:
    """The 1,000 scoring digits of ``seed``: 4 batches of 250 of a shuffle seeded by it."""
    shuffled = train.batches(batch_size=SCORING_BATCH_SIZE, shuffle=True, seed=seed)
    return list(itertools.islice(shuffled, SCORING_BATCHES))


def prune_and_finetune(
    dense: nn.Module,
    criterion: str,
    sparsity: float,
    seed: int,
    train: Digits,
    validation: Digits,
    test: Digits,
) -> SweepRun:
    """One run of notebook 04's sweep; ``dense`` is not changed.

    Scores ``dense`` by ``criterion`` on ``scoring_batches(train, seed)`` (scoring has no
    side effects; ``random`` gets ``seed=seed``, so its masks differ per seed too), masks
    the lowest ``sparsity`` of the weights of a copy with one global threshold
    (``gp.global_masks``), measures the test error, fine-tunes the copy one epoch on all
    of ``train`` (``FINETUNE``; ``seed`` fixes the order of the batches, masks held) and
    measures test and validation error. The seed is the run's only source of randomness
    (the global RNG is not read), so a run repeats exactly on the same processor and
    thread count: that is what lets ``scripts/sweep_04.py`` and the notebook's live run
    be compared to the last digit.

    Args:
        dense: the trained reference (``gp.trained("lenet_300_100")`` in the notebook).
        criterion: a name in ``gp.CRITERIA`` that only scores (not ``obs``, which moves
            weights, nor ``movement``, which scores during training).
        sparsity: the fraction of weights to prune, in [0, 1].
        seed: draws the scoring digits, seeds ``random`` and orders fine-tuning's batches.
        train, validation, test: ``gp.splits()``.

    Returns:
        ``SweepRun(untuned_test, tuned_test, tuned_validation)``, errors in percent.

    Raises:
        ValueError: an unknown criterion, one this protocol cannot run, a sparsity
            outside [0, 1], a seed that is not a non-negative integer, or data that is
            not ``Digits``; checked before anything is computed.
    """
    record = CRITERIA.record(criterion)
    if record.weight_update is not None or record.make_state is not None:
        raise ValueError(
            f"criterion {criterion!r} {'moves weights' if record.weight_update else 'keeps state'}"
            ", so scoring and masking once is not its protocol; use gp.prune (or "
            "gp.GradualPruner for movement) instead."
        )
    sparsity = check_sparsity(sparsity)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    for name, digits in (("train", train), ("validation", validation), ("test", test)):
        if not isinstance(digits, Digits):
            raise ValueError(
                f"{name} must be gp.Digits (one of gp.splits()), got {type(digits).__name__}."
            )
    options = {"seed": seed} if criterion == "random" else {}
    scores = score(dense, criterion, scoring_batches(train, seed), **options)
    pruned = copy.deepcopy(dense)
    apply_masks(pruned, global_masks(scores, sparsity))
    untuned = evaluate(pruned, test).error
    fit(pruned, train, **FINETUNE, seed=seed, progress=False)
    return SweepRun(untuned, evaluate(pruned, test).error, evaluate(pruned, validation).error)


def write_runs(path: str | Path, runs: dict, provenance: dict[str, str]) -> None:
    """Write ``runs`` ((criterion, sparsity, seed) → ``SweepRun``) as CSV at ``path``.

    Floats are written with ``repr`` (the shortest text that reads back to the same
    float), so ``read_runs`` returns exactly the numbers that were computed. The file is
    written beside ``path`` and then renamed, so an interrupted run leaves the old file
    whole instead of a truncated one.
    """
    for key, value in provenance.items():
        if "\n" in f"{key}{value}" or "\r" in f"{key}{value}" or ": " in key or not key:
            raise ValueError(
                f"provenance {key!r}: {value!r} cannot be one '# key: value' line: keys must "
                "be non-empty without ': ', and neither may hold a line break."
            )
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", newline="", encoding="utf-8") as handle:
        for key, value in provenance.items():
            handle.write(f"# {key}: {value}\n")
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        for (criterion, sparsity, seed), run in runs.items():
            writer.writerow([criterion, repr(sparsity), seed, *map(repr, run)])
    partial.replace(path)


def _lines(path: str | Path) -> list[str]:
    """The file's lines; a file that is not text is a ValueError that says what to do."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return handle.read().splitlines()
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not a text file ({error}). {_HOW_TO_FIX}") from None


_HOW_TO_FIX = (
    "For notebook 04's docs/results/notebook04/runs.csv, restore the committed file "
    "(git checkout -- docs/results/notebook04/runs.csv) or write it again with "
    "python scripts/sweep_04.py."
)


def read_runs(path: str | Path) -> dict[tuple[str, float, int], SweepRun]:
    """(criterion, sparsity, seed) → ``SweepRun``, as ``write_runs`` wrote them.

    Raises:
        ValueError: the file is not what ``write_runs`` writes (no header row, a row
            that is short, long or not numbers, a run twice, no runs: a truncated or
            edited file), naming the line.
    """
    numbered = [
        (number, line)
        for number, line in enumerate(_lines(path), 1)
        if line.strip() and not line.startswith("#")
    ]
    if not numbered or next(csv.reader([numbered[0][1]])) != list(COLUMNS):
        raise ValueError(
            f"{path} does not start with the header row {','.join(COLUMNS)} after its "
            f"'# key: value' lines: it is not a file write_runs wrote. {_HOW_TO_FIX}"
        )
    runs = {}
    for number, line in numbered[1:]:
        row = next(csv.reader([line]))
        try:
            if len(row) != len(COLUMNS):
                raise ValueError(f"{len(row)} fields instead of {len(COLUMNS)}")
            key = (row[0], float(row[1]), int(row[2]))
            run = SweepRun(*map(float, row[3:]))
        except ValueError as error:
            raise ValueError(
                f"{path}, line {number} ({line!r}) is not a run ({error}): the file is "
                f"truncated or was edited. {_HOW_TO_FIX}"
            ) from None
        if key in runs:
            raise ValueError(f"{path}, line {number} repeats the run {key}. {_HOW_TO_FIX}")
        runs[key] = run
    if not runs:
        raise ValueError(f"{path} holds a header but no runs. {_HOW_TO_FIX}")
    return runs


def read_provenance(path: str | Path) -> dict[str, str]:
    """The ``# key: value`` lines at the top of a file ``write_runs`` wrote."""
    provenance = {}
    for number, line in enumerate(_lines(path), 1):
        if not line.startswith("# "):
            break
        # "# key:" is an empty value whose trailing space an editor removed
        key, colon, value = (line[2:] + " ").partition(": ")
        value = value[:-1]
        if not colon:
            raise ValueError(
                f"{path}, line {number} ({line!r}) is not a '# key: value' line. {_HOW_TO_FIX}"
            )
        provenance[key] = value
    return provenance
