"""The comparison: every criterion at every sparsity, in one protocol, as rows and a plot.

``run_comparison`` takes the dense reference of ``gp.trained`` per seed (10 epochs at the
published level, cached on disk and shared with the notebooks), prunes in one of three
modes, trains, evaluates on validation and test digits, and returns one row per
(mode, criterion, sparsity, seed). ``write_outputs`` turns rows into ``results.csv``,
``results.md`` (mean ± std over seeds) and ``results.png``. The CLI
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
import csv
import hashlib
import json
import math
import os
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..core.criteria import CRITERIA
from ..core.io import checkpoint_sizes
from ..core.layers import prunable_weights
from ..core.prune import prune
from .data import Digits
from .evaluate import evaluate
from .models import MODELS
from .reference import REFERENCE_BUDGET, fingerprint, trained
from .summary import by_mode
from .train import fit

MODES = ("init", "after", "iterative")
#: Registered criteria left out of a run that names none: |ḡ| alone ranks by noise.
LEFT_OUT_BY_DEFAULT = ("gradient",)
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


CSV_COLUMNS = (
    "model",
    "mode",
    "criterion",
    "sparsity",
    "seed",
    "remaining",
    "validation_error",
    "test_error",
    "macro_precision",
    "worst_class_precision",
    "macro_recall",
    "macro_f1",
    "seconds_per_epoch",
    "sparse_bytes",
    "dense_bytes",
    "nonzero_params",
    "train_epochs",
    "data",
    "train_fingerprint",
    "validation_fingerprint",
    "test_fingerprint",
    "run_key",
)
#: Columns that hold counts: read back as int (NaN where missing).
INT_COLUMNS = ("seed", "sparse_bytes", "dense_bytes", "nonzero_params", "train_epochs")
#: Columns that hold text; every other column is a number.
TEXT_COLUMNS = (
    "model",
    "mode",
    "criterion",
    "data",
    "train_fingerprint",
    "validation_fingerprint",
    "test_fingerprint",
    "run_key",
)


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


def _protocol_key(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


def run_key(protocol: str, model: str, mode: str, criterion: str, sparsity, seed) -> str:
    """The identity of one row: protocol hash (budget, options, data), then the grid point."""
    return f"{protocol}/{model}/{mode}/{criterion}/{float(sparsity):g}/seed{int(seed)}"


def _open_row_log(path: str | Path, protocol: str) -> dict[str, dict]:
    """The rows already in ``path`` by run key, after creating it or repairing its tail.

    A run killed while writing can leave half a line at the end; it is cut off, so that
    row runs again.
    """
    path = Path(path)
    header = ",".join(CSV_COLUMNS) + "\n"
    if not path.is_file() or path.stat().st_size == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header)
        return {}
    text = path.read_text()
    if not text.startswith(header):
        raise ValueError(
            f"{path} was not written by this version of compare (its columns differ); "
            "give another --out folder (results_csv), or move the file away."
        )
    if not text.endswith("\n"):
        path.write_text(text[: text.rfind("\n") + 1])
    rows = read_rows(path)
    others = sorted({r["run_key"].split("/")[0] for r in rows} - {protocol})
    if others:
        raise ValueError(
            f"{path} holds rows of another protocol ({', '.join(others)}; this run is "
            f"{protocol}): a different budget, option or data set. One file holds one "
            "protocol, so give another --out folder (results_csv) or move the file away."
        )
    return {row["run_key"]: row for row in rows}


def _append_row(path: str | Path, row: dict) -> None:
    """Append one finished row to the CSV and push it to disk before the next job starts."""
    with open(path, "a", newline="") as handle:
        csv.DictWriter(handle, fieldnames=CSV_COLUMNS).writerow({k: row[k] for k in CSV_COLUMNS})
        handle.flush()
        os.fsync(handle.fileno())


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
            already there with the same ``run_key`` (same protocol, data and grid point)
            are read back instead of run again, so an interrupted run resumes where it
            stopped. Rows of another protocol there are an error (one file, one protocol).
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

    protocol = _protocol_key(
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
        }
    )
    done = _open_row_log(results_csv, protocol) if results_csv is not None else {}
    grid = [("dense", "dense", 0.0)] + [
        (m, c, float(s)) for m in modes for c in criteria for s in sparsities
    ]
    # Work is measured in training epochs, so the time left counts a 13-epoch run at init
    # as 13 short ones; the dense job is the timing epoch plus training when not cached.
    cost = {"dense": epochs + 1, "init": epochs + finetune_epochs}
    jobs = [(seed, *job) for seed in seeds for job in grid]
    keys = [run_key(protocol, model, mode, c, s, seed) for seed, mode, c, s in jobs]
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
            _append_row(results_csv, row)
        rows.append(row)
        bar.update(job_epochs)
    bar.close()
    return rows


def summarise(rows: Sequence[dict]) -> list[dict]:
    """Mean and std (over seeds) of each (model, mode, criterion, sparsity) group."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["model"], row["mode"], row["criterion"], float(row["sparsity"]))].append(row)
    summary = []
    for (model, mode, criterion, sparsity), members in groups.items():
        errors = [float(r["test_error"]) for r in members]
        summary.append(
            {
                "model": model,
                "mode": mode,
                "criterion": criterion,
                "sparsity": sparsity,
                "remaining": statistics.fmean(float(r["remaining"]) for r in members),
                "error_mean": statistics.fmean(errors),
                "error_std": statistics.stdev(errors) if len(errors) > 1 else 0.0,
                "macro_f1": statistics.fmean(float(r["macro_f1"]) for r in members),
                "seconds_per_epoch": statistics.fmean(
                    float(r["seconds_per_epoch"]) for r in members
                ),
                "sparse_bytes": statistics.fmean(float(r["sparse_bytes"]) for r in members),
                "dense_bytes": statistics.fmean(float(r["dense_bytes"]) for r in members),
                "seeds": len(members),
            }
        )
    return summary


def markdown_table(rows: Sequence[dict]) -> str:
    """Test error (%) as mean ± std over seeds: one line per model/mode/criterion."""
    summary = summarise(rows)
    sparsities = sorted({s["sparsity"] for s in summary if s["criterion"] != "dense"})
    header = ["model", "mode", "criterion"] + [f"{100 * s:g}%" for s in sparsities]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    cells: dict[tuple, dict] = defaultdict(dict)
    for s in summary:
        cells[(s["model"], s["mode"], s["criterion"])][s["sparsity"]] = s
    for (model, mode, criterion), by_sparsity in cells.items():
        if criterion == "dense":
            dense = by_sparsity[0.0]
            values = [f"{dense['error_mean']:.2f} ± {dense['error_std']:.2f} (dense)"]
            values += [""] * (len(sparsities) - 1)
        else:
            values = [
                f"{by_sparsity[s]['error_mean']:.2f} ± {by_sparsity[s]['error_std']:.2f}"
                if s in by_sparsity
                else "–"
                for s in sparsities
            ]
        lines.append("| " + " | ".join([model, mode, criterion, *values]) + " |")
    seeds = max((s["seeds"] for s in summary), default=0)
    lines.append("")
    lines.append(f"Test error in %, mean ± std over {seeds} seed(s); columns are sparsities.")
    return "\n".join(lines) + "\n"


def plot_results(rows: Sequence[dict]):
    """A matplotlib ``Figure``: test error against remaining weights, per criterion.

    One panel per (model, mode), modes in the order init, after, iterative; each
    criterion keeps its colour in every panel; both axes are logarithmic, so errors near
    the dense one (a dashed horizontal line) stay readable beside collapsed runs near 90%.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    summary = summarise(rows)
    panels = sorted(
        {(s["model"], s["mode"]) for s in summary if s["criterion"] != "dense"},
        key=lambda panel: (panel[0], *by_mode(panel[1])),
    )
    criteria = [c for c in dict.fromkeys(s["criterion"] for s in summary) if c != "dense"]
    colour = {criterion: f"C{i % 10}" for i, criterion in enumerate(criteria)}
    plain = FuncFormatter(lambda value, _: f"{value:g}")

    def some(digits):  # label the minor ticks that start with one of ``digits``
        return FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}".lstrip("0.")[:1] in digits else "")

    figure = Figure(figsize=(5.0 * max(1, len(panels)), 4.0), layout="constrained")
    axes = figure.subplots(1, max(1, len(panels)), squeeze=False)[0]
    for ax, (model, mode) in zip(axes, panels):
        for criterion in criteria:
            points = sorted(
                (
                    s
                    for s in summary
                    if (s["model"], s["mode"], s["criterion"]) == (model, mode, criterion)
                ),
                key=lambda s: s["remaining"],
            )
            if not points:
                continue
            ax.errorbar(
                [100 * p["remaining"] for p in points],
                [p["error_mean"] for p in points],
                yerr=[p["error_std"] for p in points],
                marker="o",
                capsize=3,
                color=colour[criterion],
                label=criterion,
            )
        for s in summary:
            if s["model"] == model and s["criterion"] == "dense":
                ax.axhline(s["error_mean"], color="black", linestyle="--", label="dense")
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis, digits in ((ax.xaxis, "25"), (ax.yaxis, "235")):
            axis.set_major_formatter(plain)
            axis.set_minor_formatter(some(digits))
        ax.set_xlabel("remaining weights (%)")
        ax.set_ylabel("test error (%), log scale")
        ax.set_title(f"{model}, prune {mode}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    return figure


def write_outputs(rows: Sequence[dict], out: str | Path) -> dict[str, Path]:
    """Write ``results.csv``, ``results.md`` and ``results.png`` under ``out``.

    Returns ``{"csv": path, "markdown": path, "plot": path}``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": out / "results.csv",
        "markdown": out / "results.md",
        "plot": out / "results.png",
    }
    with open(paths["csv"], "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows({k: row[k] for k in CSV_COLUMNS} for row in rows)
    paths["markdown"].write_text(markdown_table(rows))
    plot_results(rows).savefig(paths["plot"], dpi=110)
    return paths


def _same_value(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)


def merge_rows(rows: Sequence[dict]) -> list[dict]:
    """``rows`` of several CSVs with each (model, mode, criterion, sparsity, seed) once.

    Runs that share a dense reference each carry its row: copies with the same run key
    (same protocol; only the measured seconds may differ) or with identical values
    collapse to the first. Two other rows for the same point come from different
    protocols, which one table must not mix, so they are an error.
    """
    merged: dict[tuple, dict] = {}
    for row in rows:
        point = (row["model"], row["mode"], row["criterion"], float(row["sparsity"]))
        point += (int(float(row["seed"])),)
        kept = merged.setdefault(point, row)
        same_run = bool(row.get("run_key")) and kept.get("run_key") == row.get("run_key")
        if not same_run and not all(_same_value(kept.get(k), row.get(k)) for k in CSV_COLUMNS):
            raise ValueError(
                f"two rows disagree for {point} (model, mode, criterion, sparsity, seed): they "
                "come from different protocols or data; report them separately."
            )
    return list(merged.values())


def read_rows(path: str | Path) -> list[dict]:
    """Rows back from a ``results.csv`` (numbers as floats), e.g. to merge several runs.

    Counts (``INT_COLUMNS``) read as int, other numbers as float. A column the file lacks
    (a CSV written before the column existed) reads as NaN, or as "" for text; an empty
    numeric cell reads as NaN.
    """
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key in CSV_COLUMNS:
            value = row.get(key) or ""
            if key in TEXT_COLUMNS:
                row[key] = value
            elif not value:
                row[key] = math.nan
            else:
                row[key] = int(float(value)) if key in INT_COLUMNS else float(value)
    return rows
