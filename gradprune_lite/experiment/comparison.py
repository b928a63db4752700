"""The comparison: every criterion at every sparsity, in one protocol, as rows.

``run_comparison`` takes the dense reference of ``gp.trained`` per seed (10 epochs at the
published level, cached on disk and shared with the notebooks), prunes in one of three
modes, trains, evaluates on validation and test digits, and returns one row per
(mode, criterion, sparsity, seed). The rows' schema, keys and resumable log are in
``rows``; ``report.write_outputs`` turns rows into ``results.csv``, ``results.md`` (mean
± std over seeds) and ``results.png``. The CLI
(``gradprune-lite compare``) and the notebooks are thin layers over these two.

Modes, each with the same training budget per pruned network (``epochs`` +
``finetune_epochs`` epochs, SGD with the reference learning rate, schedule and batch, or
the recipe given as ``training``):
    init: prune the freshly initialised network, then train it for the whole budget
        (SNIP's protocol). SynFlow runs its own iterative loop at init
        (``synflow_rounds`` data-free rounds), as its paper prescribes.
    after: train dense (``epochs``), prune once, fine-tune (``finetune_epochs``) (Han et
        al.'s one-shot protocol).
    iterative: train dense, then ``rounds`` × (prune a step of the exponential schedule,
        fine-tune), ending at the target sparsity; ``finetune_epochs`` are split over the
        rounds.
"""

from __future__ import annotations

import copy
import statistics
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .._version import __version__
from ..core.criteria import CRITERIA
from ..core.io import checkpoint_sizes
from ..core.layers import prunable_weights
from ..core.prune import prune
from .data import Digits
from .evaluate import evaluate
from .models import MODELS
from .reference import REFERENCE_BUDGET, fingerprint, trained

# The row log and the reporting moved to rows.py and report.py; the names that lived here
# before stay importable from here.
from .report import markdown_table, plot_results, summarise, write_outputs  # noqa: F401
from .rows import (  # noqa: F401
    CSV_COLUMNS,
    INT_COLUMNS,
    LEGACY_VERSION,
    TEXT_COLUMNS,
    append_row,
    merge_rows,
    open_row_log,
    protocol_key,
    read_rows,
    run_key,
    stale_rows,
)
from .train import fit

MODES = ("init", "after", "iterative")
#: Registered criteria left out of a run that names none: |ḡ| alone ranks by noise, and
#: movement is meant to be accumulated over training (gp.GradualPruner), not taken once.
LEFT_OUT_BY_DEFAULT = ("gradient", "movement")
#: Epochs of training after pruning a trained network (spread over the iterative rounds).
DEFAULT_FINETUNE_EPOCHS = 3
#: How a pruned network trains unless ``run_comparison(training=...)`` says otherwise:
#: ``gp.fit``'s options, the dense reference's recipe, no weight decay.
DEFAULT_TRAINING = {
    "lr": REFERENCE_BUDGET["lr"],
    "batch_size": REFERENCE_BUDGET["batch_size"],
    "schedule": REFERENCE_BUDGET["schedule"],
    "step_every": None,
    "weight_decay": 0.0,
    "momentum": 0.9,
}


def default_criteria() -> list[str]:
    """Every criterion registered now (``gp.CRITERIA``, so also ones added later, such as
    ``obs``), in registration order, less ``LEFT_OUT_BY_DEFAULT``."""
    return [name for name in CRITERIA if name not in LEFT_OUT_BY_DEFAULT]


def data_identity(train: Digits, validation: Digits, test: Digits) -> str:
    """Which digits, in words that hold on any machine: full MNIST or the shipped subset.

    No folder path: two machines with the same data write the same words, and the
    fingerprint columns (``gp.experiment.reference.fingerprint``) pin the exact digits.
    """
    parts = (train, validation, test)
    kind = "shipped MNIST subset" if any(d.is_subset for d in parts) else "full MNIST"
    return (
        f"{kind}: {len(train):,} training, {len(validation):,} validation, "
        f"{len(test):,} test digits"
    )


def epochs_per_round(finetune_epochs: int, rounds: int) -> list[int]:
    """Fine-tuning epochs after each iterative round: ``finetune_epochs`` split exactly.

    Later rounds (the sparser networks) get the extra epochs: 4 over 3 rounds → [1, 1, 2].
    """
    if finetune_epochs < rounds:
        raise ValueError(
            f"the iterative mode fine-tunes after each of its {rounds} rounds, so it needs "
            f"finetune_epochs ≥ rounds; got finetune_epochs={finetune_epochs}. Raise "
            "finetune_epochs or lower rounds."
        )
    base, extra = divmod(finetune_epochs, rounds)
    return [base + (i >= rounds - extra) for i in range(rounds)]


def _row(model_name, mode, criterion, sparsity, seed, model, splits, seconds, epochs, data):
    _, validation, test = splits
    result = evaluate(model, test)
    weights = list(prunable_weights(model).values())
    remaining = sum(int((w != 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    sizes = checkpoint_sizes(model)
    return {
        "model": model_name,
        "mode": mode,
        "criterion": criterion,
        "sparsity": sparsity,
        "seed": seed,
        "remaining": remaining,
        "validation_error": evaluate(model, validation).error,
        "test_error": result.error,
        "macro_precision": result.macro_precision,
        "worst_class_precision": float(result.precision.min()),
        "macro_recall": result.macro_recall,
        "macro_f1": result.macro_f1,
        "seconds_per_epoch": statistics.fmean(seconds) if seconds else float("nan"),
        "sparse_bytes": sizes["sparse_bytes"],
        "dense_bytes": sizes["dense_bytes"],
        "nonzero_params": sum(int((p != 0).sum()) for p in model.parameters()),
        "train_epochs": epochs,
        **data,
    }


def run_comparison(
    train: Digits,
    validation: Digits,
    test: Digits,
    *,
    model: str = "lenet_300_100",
    criteria: Sequence[str] | None = None,
    sparsities: Sequence[float] = (0.9, 0.95, 0.98, 0.99),
    modes: Sequence[str] = ("init",),
    rounds: int = 3,
    epochs: int = REFERENCE_BUDGET["epochs"],
    finetune_epochs: int = DEFAULT_FINETUNE_EPOCHS,
    seeds: Sequence[int] = (0,),
    score_samples: int = 1000,
    synflow_rounds: int = 100,
    device: str | torch.device = "cpu",
    cache_dir: str | Path | None = None,
    progress: bool = True,
    results_csv: str | Path | None = None,
    training: dict | None = None,
) -> list[dict]:
    """Prune ``model`` by each criterion to each sparsity, train, and evaluate.

    Every network trains with the reference budget of ``gp.trained`` (SGD, momentum 0.9,
    learning rate 0.05 on a cosine schedule, batch 128), and every pruned network gets the
    same number of epochs whatever the mode: ``epochs + finetune_epochs``. *init* trains
    the pruned network that long from scratch; *after* and *iterative* start from the
    dense reference (``epochs``, from ``gp.trained``) and fine-tune for
    ``finetune_epochs``, all after the one cut or split over the iterative rounds.

    Args:
        train, validation, test: the digits to train on, to choose on, and to report on
            (``gp.splits()`` gives full MNIST's 55,000 / 5,000 / 10,000).
        model: a name in ``gp.models.MODELS`` (``"lenet_300_100"`` or ``"lenet5"``).
        criteria: names in ``gp.CRITERIA`` (built-in or registered); default
            ``default_criteria()``.
        sparsities: fractions of weights to remove, each in (0, 1).
        modes: any of ``"init"``, ``"after"``, ``"iterative"`` (see the module docstring).
        rounds: prune/fine-tune rounds of the iterative mode.
        epochs: training epochs of the dense reference (default 10, ``gp.trained``'s).
        finetune_epochs: epochs after pruning a trained network; the iterative mode
            splits them over its rounds (so it needs at least ``rounds``).
        seeds: one run per seed (initial weights, batch order, random scores).
        score_samples: training digits the data-driven criteria see (batches of 100).
        synflow_rounds: SynFlow's own iterative rounds in the init mode.
        device: where to train the pruned networks (the dense reference trains on CPU).
        cache_dir: folder caching the dense references (default: ``gp.trained``'s, shared
            with the notebooks).
        progress: show a progress bar, counted in training epochs, with the time left.
        results_csv: a CSV that each row is appended to the moment it is finished. Rows
            already there with the same ``run_key`` (same protocol, data, release, grid
            point and criterion option defaults; see ``rows.run_key``) are read back
            instead of run again, so an interrupted run resumes where it stopped. Rows of
            another protocol, release or criterion defaults there are an error (one file,
            one protocol): they are never reused.
        training: how the pruned networks train, as ``gp.fit`` options overriding
            ``DEFAULT_TRAINING`` (keys ``lr``, ``batch_size``, ``schedule``,
            ``step_every``, ``weight_decay``, ``momentum``), e.g. SNIP's MNIST recipe
            ``{"lr": 0.1, "batch_size": 100, "schedule": "step", "step_every": 45,
            "weight_decay": 5e-4}``. The dense reference is always ``gp.trained``'s. Options
            that differ from the default are part of the protocol (``run_key``).

    Returns:
        a list of dict rows with the keys of ``CSV_COLUMNS``; one ``criterion="dense"``
        row per seed (sparsity 0) before that seed's pruned rows.
    """
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose from {sorted(MODELS)}.")
    criteria = default_criteria() if criteria is None else list(criteria)
    unknown = [c for c in criteria if c not in CRITERIA]
    if unknown:
        raise ValueError(f"unknown criteria {unknown}; choose from {sorted(CRITERIA)}.")
    bad_modes = [m for m in modes if m not in MODES]
    if bad_modes:
        raise ValueError(f"unknown modes {bad_modes}; choose from {list(MODES)}.")
    for s in sparsities:
        if not 0.0 < float(s) < 1.0:
            raise ValueError(f"each sparsity must lie in (0, 1), e.g. 0.95; got {s!r}.")
    for name, value in (("rounds", rounds), ("epochs", epochs)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if not isinstance(finetune_epochs, int) or finetune_epochs < 0:
        raise ValueError(f"finetune_epochs must be an integer ≥ 0, got {finetune_epochs!r}.")
    round_epochs = epochs_per_round(finetune_epochs, rounds) if "iterative" in modes else []
    unknown_options = sorted(set(training or {}) - set(DEFAULT_TRAINING))
    if unknown_options:
        raise ValueError(
            f"unknown training options {unknown_options}; choose from {sorted(DEFAULT_TRAINING)}."
        )
    recipe = {**DEFAULT_TRAINING, **(training or {})}
    # gp.fit checks the values; a dry call on no epochs does so before any work is done.
    fit(MODELS[model](seed=0), train.take(1), 0, progress=False, **recipe)
    score_batches = list(train.take(min(score_samples, len(train))).to(device).batches(100))
    splits = (train.to(device), validation.to(device), test.to(device))
    data = {
        "data": data_identity(train, validation, test),
        "train_fingerprint": fingerprint(train),
        "validation_fingerprint": fingerprint(validation),
        "test_fingerprint": fingerprint(test),
    }

    def train_for(net, n_epochs, seed):
        return fit(net, splits[0], n_epochs, seed=seed, progress=False, **recipe)["seconds"]

    protocol = protocol_key(
        {
            **REFERENCE_BUDGET,
            "epochs": epochs,
            "finetune_epochs": finetune_epochs,
            "rounds": rounds,
            "score_samples": score_samples,
            "synflow_rounds": synflow_rounds,
            **{k: v for k, v in data.items() if k != "data"},
            # Only what differs from the default, so rows run before the option existed
            # keep their run keys.
            **{k: v for k, v in recipe.items() if v != DEFAULT_TRAINING[k]},
            # Rows of another release are not reused: the code that computed them changed.
            **({"version": __version__} if __version__ != LEGACY_VERSION else {}),
        }
    )
    done = open_row_log(results_csv, protocol) if results_csv is not None else {}
    grid = [("dense", "dense", 0.0)] + [
        (m, c, float(s)) for m in modes for c in criteria for s in sparsities
    ]
    # Work is measured in training epochs, so the time left counts a 13-epoch run at init
    # as 13 short ones; the dense job is the timing epoch plus training when not cached.
    cost = {"dense": epochs + 1, "init": epochs + finetune_epochs}
    jobs = [(seed, *job) for seed in seeds for job in grid]
    defaults = {c: CRITERIA.record(c).options for c in criteria}
    keys = [
        run_key(protocol, model, mode, c, s, seed, defaults.get(c)) for seed, mode, c, s in jobs
    ]
    stale = stale_rows(list(done.values()), keys)
    if stale:
        raise ValueError(
            f"{results_csv} holds rows computed under other option defaults of their "
            f"criterion ({stale[0]}{' and more' if len(stale) > 1 else ''}); they are not "
            "reused. One file holds one protocol, so give another --out folder (results_csv) "
            "or move the file away."
        )
    epochs_of = [max(1, cost.get(mode, finetune_epochs)) for _, mode, _, _ in jobs]
    bar = tqdm(
        total=sum(epochs_of),
        initial=sum(e for e, key in zip(epochs_of, keys) if key in done),
        desc=f"compare {model}",
        unit="epoch",
        disable=not progress,
    )
    rows, dense = [], {}
    for (seed, mode, criterion, sparsity), key, job_epochs in zip(jobs, keys, epochs_of):
        if key in done:
            rows.append(done[key])
            continue
        bar.set_postfix_str(f"seed {seed} {mode} {criterion} {sparsity:g}")
        if mode != "init" and seed not in dense:
            dense[seed] = trained(
                model, seed, train=train, epochs=epochs, cache_dir=cache_dir, progress=False
            ).to(device)
        options = {"seed": seed} if criterion == "random" else {}
        if criterion == "synflow":
            options["input_shape"] = tuple(train.images.shape[1:])
        if mode == "dense":
            net = dense[seed]
            # The cache keeps weights, not timings: one epoch of a copy times a dense epoch.
            seconds = train_for(copy.deepcopy(net), 1, seed)
        elif mode == "init":
            net = MODELS[model](seed=seed).to(device)
            # SynFlow prunes at initialisation in its own data-free rounds, per its paper.
            init_rounds = synflow_rounds if criterion == "synflow" else 1
            prune(net, criterion, sparsity, score_batches, rounds=init_rounds, **options)
            seconds = train_for(net, epochs + finetune_epochs, seed)
        elif mode == "after":
            net = copy.deepcopy(dense[seed])
            prune(net, criterion, sparsity, score_batches, **options)
            seconds = train_for(net, finetune_epochs, seed)
        else:
            net = copy.deepcopy(dense[seed])
            seconds = []

            def between(pruned, round_index, seconds=seconds, seed=seed):
                seconds.extend(train_for(pruned, round_epochs[round_index], seed + round_index))

            prune(
                net, criterion, sparsity, score_batches, rounds=rounds, between=between, **options
            )
        total = epochs if mode == "dense" else epochs + finetune_epochs
        row = _row(model, mode, criterion, sparsity, seed, net, splits, seconds, total, data)
        row["run_key"] = key
        if results_csv is not None:
            append_row(results_csv, row)
        rows.append(row)
        bar.update(job_epochs)
    bar.close()
    return rows
