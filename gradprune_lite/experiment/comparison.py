"""The comparison: every criterion at every sparsity, in one protocol, as rows and a plot.

``run_comparison`` trains the dense reference once per seed (cached on disk by its
configuration), prunes in one of three modes, fine-tunes, evaluates, and returns one row
per (mode, criterion, sparsity, seed). ``write_outputs`` turns rows into ``results.csv``,
``results.md`` (mean ± std over seeds) and ``results.png``. The CLI
(``gradprune-lite compare``) and the notebooks are thin layers over these two.

Modes:
    init: prune the freshly initialised network, then train it (SNIP's protocol).
        SynFlow runs its own iterative loop at init (``synflow_rounds`` data-free rounds),
        as its paper prescribes.
    after: train dense, prune once, fine-tune (Han et al.'s one-shot protocol).
    iterative: train dense, then ``rounds`` × (prune a step of the exponential schedule,
        fine-tune), ending at the target sparsity.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..core.layers import prunable_weights
from ..core.prune import prune
from .checkpoint import checkpoint_sizes
from .data import Digits
from .evaluate import evaluate
from .models import MODELS
from .reference import fingerprint
from .train import fit

MODES = ("init", "after", "iterative")
ALL_CRITERIA = ("random", "magnitude", "taylor", "snip", "fisher", "grasp", "synflow")
DATA_FREE = ("random", "magnitude", "synflow")
#: Learning rate per model for SGD with momentum 0.9 and a cosine schedule.
DEFAULT_LR = {"lenet_300_100": 0.05, "lenet5": 0.05}

CSV_COLUMNS = (
    "model",
    "mode",
    "criterion",
    "sparsity",
    "seed",
    "remaining",
    "test_error",
    "macro_precision",
    "macro_recall",
    "macro_f1",
    "seconds_per_epoch",
    "sparse_bytes",
    "dense_bytes",
    "data",
    "train_fingerprint",
    "test_fingerprint",
)
#: Columns that hold text; every other column is a number.
TEXT_COLUMNS = ("model", "mode", "criterion", "data", "train_fingerprint", "test_fingerprint")


def data_identity(train: Digits, test: Digits) -> str:
    """Which digits, in words that hold on any machine: full MNIST or the shipped subset.

    No folder path: two machines with the same data write the same words, and the
    fingerprint columns (``gp.experiment.reference.fingerprint``) pin the exact digits.
    """
    kind = "shipped MNIST subset" if train.is_subset or test.is_subset else "full MNIST"
    return f"{kind}: {len(train):,} training, {len(test):,} test digits"


def _fingerprint(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


def _train_dense(model_name, seed, train, epochs, lr, batch_size, device, cache_dir, progress):
    """Dense model trained for ``epochs``, loaded from ``cache_dir`` when already trained.

    Returns (model, seconds per epoch as measured when it was trained).
    """
    config = {
        "model": model_name,
        "seed": seed,
        "epochs": epochs,
        "lr": lr,
        "batch_size": batch_size,
        "schedule": "cosine",
        "momentum": 0.9,
        "data": fingerprint(train),
    }
    model = MODELS[model_name](seed=seed).to(device)
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"dense-{model_name}-seed{seed}-{_fingerprint(config)}.pt"
        if path.is_file():
            cached = torch.load(path, map_location=device, weights_only=True)
            model.load_state_dict(cached["state"])
            return model, list(cached["seconds"])
    history = fit(
        model,
        train,
        epochs,
        lr,
        batch_size=batch_size,
        schedule="cosine",
        seed=seed,
        progress=progress,
    )
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(
            {"state": model.state_dict(), "seconds": history["seconds"], "config": config}, path
        )
    return model, history["seconds"]


def _row(model_name, mode, criterion, sparsity, seed, model, test, seconds, data) -> dict:
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
        "test_error": result.error,
        "macro_precision": result.macro_precision,
        "macro_recall": result.macro_recall,
        "macro_f1": result.macro_f1,
        "seconds_per_epoch": statistics.fmean(seconds) if seconds else float("nan"),
        "sparse_bytes": sizes["sparse_bytes"],
        "dense_bytes": sizes["dense_bytes"],
        **data,
    }


def run_comparison(
    train: Digits,
    test: Digits,
    *,
    model: str = "lenet_300_100",
    criteria: Sequence[str] = ALL_CRITERIA,
    sparsities: Sequence[float] = (0.9, 0.95, 0.98, 0.99),
    modes: Sequence[str] = ("init",),
    rounds: int = 3,
    epochs: int = 3,
    finetune_epochs: int | None = None,
    seeds: Sequence[int] = (0,),
    lr: float | None = None,
    batch_size: int = 128,
    score_samples: int = 1000,
    synflow_rounds: int = 100,
    device: str | torch.device = "cpu",
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> list[dict]:
    """Prune ``model`` by each criterion to each sparsity, train, and evaluate.

    Args:
        train, test: the digits to train on and to measure test error on.
        model: a name in ``gp.models.MODELS`` (``"lenet_300_100"`` or ``"lenet5"``).
        criteria: names in ``gp.CRITERIA``.
        sparsities: fractions of weights to remove, each in (0, 1).
        modes: any of ``"init"``, ``"after"``, ``"iterative"`` (see the module docstring).
        rounds: prune/fine-tune rounds of the iterative mode.
        epochs: training epochs of the dense reference and of networks pruned at init.
        finetune_epochs: epochs after pruning a trained network (default ``epochs``); the
            iterative mode spreads them over its rounds (at least one epoch per round).
        seeds: one run per seed (initial weights, batch order, random scores).
        lr: SGD learning rate (momentum 0.9, cosine schedule); default per model.
        batch_size: training batch size.
        score_samples: training digits the data-driven criteria see (batches of 100).
        synflow_rounds: SynFlow's own iterative rounds in the init mode.
        device: where to train.
        cache_dir: folder caching the dense references (None: no cache).
        progress: show progress bars.

    Returns:
        a list of dict rows with the keys of ``CSV_COLUMNS``; one ``criterion="dense"``
        row per seed (sparsity 0) before that seed's pruned rows.
    """
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose from {sorted(MODELS)}.")
    unknown = [c for c in criteria if c not in ALL_CRITERIA and c != "gradient"]
    if unknown:
        raise ValueError(f"unknown criteria {unknown}; choose from {list(ALL_CRITERIA)}.")
    bad_modes = [m for m in modes if m not in MODES]
    if bad_modes:
        raise ValueError(f"unknown modes {bad_modes}; choose from {list(MODES)}.")
    for s in sparsities:
        if not 0.0 < float(s) < 1.0:
            raise ValueError(f"each sparsity must lie in (0, 1), e.g. 0.95; got {s!r}.")
    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be a positive integer, got {rounds!r}.")
    lr = DEFAULT_LR[model] if lr is None else lr
    finetune_epochs = epochs if finetune_epochs is None else finetune_epochs
    per_round = max(1, math.ceil(finetune_epochs / rounds))
    score_batches = list(train.take(min(score_samples, len(train))).to(device).batches(100))
    data = {
        "data": data_identity(train, test),
        "train_fingerprint": fingerprint(train),
        "test_fingerprint": fingerprint(test),
    }

    def train_for(net, n_epochs, seed):
        return fit(
            net,
            train,
            n_epochs,
            lr,
            batch_size=batch_size,
            schedule="cosine",
            seed=seed,
            progress=False,
        )["seconds"]

    jobs = [(m, c, s) for m in modes for c in criteria for s in sparsities]
    rows = []
    bar = tqdm(total=len(seeds) * (1 + len(jobs)), desc=f"compare {model}", disable=not progress)
    for seed in seeds:
        bar.set_postfix_str(f"dense seed {seed}")
        dense, dense_seconds = _train_dense(
            model, seed, train, epochs, lr, batch_size, device, cache_dir, progress
        )
        rows.append(_row(model, "dense", "dense", 0.0, seed, dense, test, dense_seconds, data))
        bar.update(1)
        for mode, criterion, sparsity in jobs:
            bar.set_postfix_str(f"seed {seed} {mode} {criterion} {sparsity:g}")
            options = {"seed": seed} if criterion == "random" else {}
            batches = None if criterion in DATA_FREE else score_batches
            if criterion == "synflow":
                options["input_shape"] = tuple(train.images.shape[1:])
            if mode == "init":
                net = MODELS[model](seed=seed).to(device)
                # SynFlow prunes at initialisation in its own data-free rounds, per its paper.
                init_rounds = synflow_rounds if criterion == "synflow" else 1
                prune(net, criterion, sparsity, batches, rounds=init_rounds, **options)
                seconds = train_for(net, epochs, seed)
            elif mode == "after":
                net = copy.deepcopy(dense)
                prune(net, criterion, sparsity, batches, **options)
                seconds = train_for(net, finetune_epochs, seed)
            else:
                net = copy.deepcopy(dense)
                seconds = []

                def between(pruned, round_index, seconds=seconds, seed=seed):
                    seconds.extend(train_for(pruned, per_round, seed + round_index))

                prune(net, criterion, sparsity, batches, rounds=rounds, between=between, **options)
            rows.append(_row(model, mode, criterion, sparsity, seed, net, test, seconds, data))
            bar.update(1)
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
    """A matplotlib ``Figure``: test error against remaining weights (log x), per criterion.

    One panel per (model, mode); the dense reference is a dashed horizontal line.
    """
    from matplotlib.figure import Figure

    summary = summarise(rows)
    panels = sorted({(s["model"], s["mode"]) for s in summary if s["criterion"] != "dense"})
    figure = Figure(figsize=(5.0 * max(1, len(panels)), 4.0), layout="constrained")
    axes = figure.subplots(1, max(1, len(panels)), squeeze=False)[0]
    for ax, (model, mode) in zip(axes, panels):
        for criterion in dict.fromkeys(s["criterion"] for s in summary):
            if criterion == "dense":
                continue
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
                label=criterion,
            )
        for s in summary:
            if s["model"] == model and s["criterion"] == "dense":
                ax.axhline(s["error_mean"], color="black", linestyle="--", label="dense")
        ax.set_xscale("log")
        ax.set_xlabel("remaining weights (%)")
        ax.set_ylabel("test error (%)")
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


def read_rows(path: str | Path) -> list[dict]:
    """Rows back from a ``results.csv`` (numbers as floats), e.g. to merge several runs.

    A column the file lacks (a CSV written before the column existed) reads as NaN, or
    as "" for text; an empty numeric cell reads as NaN.
    """
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key in CSV_COLUMNS:
            value = row.get(key) or ""
            if key in TEXT_COLUMNS:
                row[key] = value
            else:
                row[key] = float(value) if value else math.nan
    return rows
