"""The ``gradprune-lite`` command (also ``python -m gradprune_lite``).

    gradprune-lite compare --quick
    gradprune-lite compare --model lenet5 --criteria magnitude,snip --sparsity 98,99 \\
        --mode init,after --seeds 0,1,2 --out results/lenet5

A thin layer over ``gp.run_comparison`` and ``gp.write_outputs``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

from .core.criteria import CRITERIA
from .experiment.comparison import (
    DEFAULT_FINETUNE_EPOCHS,
    MODES,
    default_criteria,
    merge_rows,
    read_rows,
    run_comparison,
    write_outputs,
)
from .experiment.data import Digits, mnist
from .experiment.models import MODELS
from .experiment.reference import REFERENCE_BUDGET, split_validation
from .experiment.summary import summary_markdown

#: What ``--quick`` uses for every option the user did not set (under a minute on 2 cores).
QUICK = {
    "model": "lenet_300_100",
    "criteria": "magnitude,snip,synflow",
    "sparsity": "90,98",
    "mode": "init",
    "epochs": 1,
    "finetune_epochs": 1,
    "seeds": "0",
    "train_limit": 10_000,
    "test_limit": 2_000,
    "synflow_rounds": 10,
}
#: Defaults otherwise: the published budget of gp.trained, every registered criterion.
DEFAULTS = {
    "model": "lenet_300_100",
    "criteria": None,  # default_criteria(), read when the command runs
    "sparsity": "90,95,98,99",
    "mode": "init",
    "epochs": REFERENCE_BUDGET["epochs"],
    "finetune_epochs": DEFAULT_FINETUNE_EPOCHS,
    "seeds": "0",
    "train_limit": None,
    "test_limit": None,
    "synflow_rounds": 100,
}


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _parse_sparsities(text: str, parser: argparse.ArgumentParser) -> list[float]:
    values = []
    for part in _split(text):
        try:
            value = float(part)
        except ValueError:
            parser.error(f"--sparsity: {part!r} is not a number; give e.g. 90,95,98 or 0.9,0.95.")
        # Percentages are what people type; fractions are what the library takes. Values
        # above 1 are percentages, values below 1 fractions; 1 itself could be either (1% or
        # every weight), so it is refused rather than guessed.
        if value == 1:
            parser.error(
                f"--sparsity: {part!r} is ambiguous (1% or 100%?). Percentages must be > 1 and "
                "< 100 (95 means 95%), fractions > 0 and < 1 (0.95); for 1% write 0.01."
            )
        fraction = value / 100 if value > 1 else value
        if not 0 < fraction < 1:
            parser.error(
                f"--sparsity: {part!r} is out of range; give percentages > 1 and < 100 such as "
                "95, or fractions > 0 and < 1 such as 0.95."
            )
        values.append(fraction)
    if not values:
        parser.error("--sparsity: give at least one value, e.g. 90,95,98,99.")
    return values


def _parse_ints(text: str, option: str, parser, minimum: int = 0) -> list[int]:
    try:
        values = [int(part) for part in _split(text)]
    except ValueError:
        parser.error(f"{option}: give comma-separated integers, e.g. 0,1,2; got {text!r}.")
    if not values or min(values) < minimum:
        parser.error(f"{option}: give integers ≥ {minimum}, e.g. 0,1,2; got {text!r}.")
    return values


def _choices(text: str, option: str, allowed, parser) -> list[str]:
    values = _split(text)
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        parser.error(f"{option}: {bad or text!r} not allowed; choose from {', '.join(allowed)}.")
    return values


def _number(kind: type, minimum: float, *, inclusive: bool = False, example: str):
    """An argparse ``type``: ``kind`` above ``minimum`` (or at it, if ``inclusive``).

    Checked while the command line is parsed, before any data loads; argparse names the
    flag and exits with status 2.
    """

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'an integer' if kind is int else 'a number'}; give e.g. "
                f"{example}."
            ) from None
        low_ok = value >= minimum if inclusive else value > minimum
        if not math.isfinite(value) or not low_ok:
            bound = f"≥ {minimum}" if inclusive else f"> {minimum}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}; give e.g. {example}.")
        return value

    parse.__name__ = kind.__name__  # argparse's "invalid <name> value" fallback
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradprune-lite",
        description="Learn and measure gradient-based pruning on MNIST.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    compare = commands.add_parser(
        "compare",
        help="prune by each criterion at each sparsity, train, evaluate; write CSV, table, plot",
        description=(
            "Take the dense reference of gp.trained once per seed (cached, shared with the "
            "notebooks), prune it by each criterion to each sparsity in the chosen modes, "
            "train, evaluate on the validation and test digits, print a table of test error "
            "(mean ± std over seeds), and write results.csv, results.md and results.png (test "
            "error against remaining weights, log axis) under --out. Training budget: the "
            f"dense reference trains --epochs (default {REFERENCE_BUDGET['epochs']}) with "
            f"SGD, momentum 0.9, lr {REFERENCE_BUDGET['lr']}, cosine schedule, batch "
            f"{REFERENCE_BUDGET['batch_size']}, as gp.trained; every pruned network gets the "
            "same number of epochs, --epochs + --finetune-epochs, in every mode: init trains "
            "that long from scratch, after and iterative fine-tune the dense reference for "
            "--finetune-epochs (iterative splits them over its rounds). The last 1/12 of the "
            "training digits are held out for validation (55,000 / 5,000 on full MNIST, as "
            "gp.splits). Data: --data, else $GRADPRUNE_DATA, else the cache (download), else "
            "the shipped 10,000/2,000-digit subset. Resumable: each row is appended to "
            "OUT/results.csv as soon as it is finished, and a rerun of the same command skips "
            "the rows already there (the progress bar counts training epochs and shows the "
            "time left)."
        ),
    )
    add = compare.add_argument
    add("--model", help=f"network: {', '.join(MODELS)} (default lenet_300_100)")
    add(
        "--criteria",
        help="comma-separated names in gp.CRITERIA (built-in or registered, e.g. "
        "random,magnitude,taylor,snip,fisher,grasp,synflow) (default: every registered "
        "criterion but gradient)",
    )
    add(
        "--sparsity",
        help="comma-separated fractions of weights removed, as percentages > 1 and < 100 (95) "
        "or fractions > 0 and < 1 (0.95); 1 is ambiguous and refused (default 90,95,98,99)",
    )
    add(
        "--mode",
        help="comma-separated, from: init (prune at initialisation, then train; SNIP's "
        "protocol), after (train, prune once, fine-tune), iterative (train, then --rounds × "
        "prune+fine-tune) (default init)",
    )
    add("--rounds", type=int, default=3, help="rounds of the iterative mode (default %(default)s)")
    add(
        "--epochs",
        type=int,
        help="training epochs of the dense reference (default "
        f"{REFERENCE_BUDGET['epochs']}, gp.trained's budget; 1 in --quick)",
    )
    add(
        "--finetune-epochs",
        type=int,
        help="epochs after pruning a trained net, split over the iterative rounds; a net "
        "pruned at init trains --epochs + --finetune-epochs, so every mode gets the same "
        f"budget (default {DEFAULT_FINETUNE_EPOCHS}; 1 in --quick)",
    )
    add("--seeds", help="comma-separated seeds, one run each (default 0)")
    recipe = (
        "of the pruned networks' training (the dense reference is always gp.trained's); "
        "a value other than the default is part of the protocol"
    )
    add(
        "--lr",
        type=_number(float, 0, example="0.05"),
        help=f"base learning rate {recipe} (default {REFERENCE_BUDGET['lr']})",
    )
    add(
        "--batch-size",
        type=_number(int, 0, example="128"),
        help=f"digits per step {recipe} (default {REFERENCE_BUDGET['batch_size']})",
    )
    add(
        "--schedule",
        choices=["cosine", "step", "constant"],
        help=f"learning-rate schedule {recipe}: cosine, step (×0.1 at 50%% and 75%%, or every "
        "--step-every epochs) or constant (default cosine)",
    )
    add(
        "--step-every",
        type=_number(int, 0, example="10"),
        help="with --schedule step: ×0.1 after every N epochs",
    )
    add(
        "--weight-decay",
        type=_number(float, 0, inclusive=True, example="5e-4"),
        help=f"SGD's weight decay {recipe} (default 0)",
    )
    add("--device", default="cpu", help="torch device, e.g. cpu or cuda (default %(default)s)")
    add(
        "--out",
        default="results/compare",
        help="output folder; rows already in its results.csv (same protocol) are kept and "
        "not run again (default %(default)s)",
    )
    add(
        "--cache",
        help="folder caching dense references (default: gp.trained's, shared with the notebooks)",
    )
    add(
        "--quick",
        action="store_true",
        help="smoke run in under a minute: LeNet-300-100, magnitude/snip/synflow (10 rounds) at "
        "90/98%%, init mode, 1 dense + 1 fine-tune epoch, the first 10,000 training digits "
        "(9,167 to train, 833 to validate) and the first 2,000 test digits, which are the "
        "shipped subset's, so the results are the same with or without full MNIST (options "
        "you give win)",
    )
    add("--data", help="folder holding MNIST/raw (default: $GRADPRUNE_DATA, cache, subset)")
    add("--train-limit", type=int, help="use only the first N training digits")
    add("--test-limit", type=int, help="use only the first N test digits")
    add(
        "--score-samples",
        type=int,
        default=1000,
        help="digits the data-driven criteria see (default %(default)s)",
    )
    add(
        "--synflow-rounds",
        type=int,
        help="SynFlow's own data-free pruning rounds in the init mode (default 100; 10 in --quick)",
    )
    add("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    add("--no-progress", action="store_true", help="hide progress bars")
    report = commands.add_parser(
        "report",
        help="merge the results.csv of compare runs: CSV, table, plot and the four-question "
        "summary",
        description=(
            "Read the results.csv of several `compare` runs (for example one per model) and "
            "write under --out the merged results.csv, results.md and results.png, and "
            "summary.md: the article's four questions (accuracy: test error; precision: macro "
            "and worst-class; training speed: seconds per epoch of the pruned network; "
            "compression: checkpoint bytes and nonzero parameters) for magnitude and for the "
            "best of each gradient-based family, chosen on validation error, at 90/95/98%%, "
            "with the published numbers beside (docs/results/published.csv of the repository, "
            "when found). The tables of docs/RESULTS.md are rebuilt by "
            "`python scripts/results_doc.py`."
        ),
    )
    report.add_argument("csv", nargs="+", help="results.csv files written by compare")
    report.add_argument("--out", required=True, help="output folder")
    return parser


def _check_out_folder(out: str, parser: argparse.ArgumentParser) -> None:
    path = Path(out)
    if path.exists() and not path.is_dir():
        parser.error(f"--out: {out} is a file, not a folder; give a folder for the results.")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            parser.error(f"--out: {parent} is a file, so {out} cannot be a folder under it.")


def _report(args, parser) -> int:
    _check_out_folder(args.out, parser)
    missing = [path for path in args.csv if not Path(path).is_file()]
    if missing:
        parser.error(f"report: no such file(s): {', '.join(missing)}.")
    rows = merge_rows([row for path in args.csv for row in read_rows(path)])
    paths = write_outputs(rows, args.out)
    paths["summary"] = Path(args.out) / "summary.md"
    paths["summary"].write_text(summary_markdown(rows))
    print(paths["summary"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _first(digits: Digits, limit: int | None, split: str) -> tuple[Digits, str]:
    """The first ``limit`` digits and a line that says truthfully which they are."""
    kind = "the shipped MNIST subset" if digits.is_subset else "full MNIST"
    folder = "" if digits.is_subset else f" in {digits.source.rsplit(' (', 1)[0]}"
    whole = f"the {len(digits):,} {split} digits of {kind}{folder}"
    if limit is None or limit >= len(digits):
        return digits, f"MNIST {split}: all {whole}"
    return digits.take(limit), f"MNIST {split}: the first {limit:,} of {whole}"


def _load_digits(args) -> tuple[Digits, Digits, Digits]:
    """(train, validation, test) for ``compare``, with one true line printed per split."""
    pool, pool_line = _first(mnist("train", args.data, verbose=False), args.train_limit, "train")
    train, validation = split_validation(pool)
    test, test_line = _first(mnist("test", args.data, verbose=False), args.test_limit, "test")
    print(f"{pool_line}: {len(train):,} to train on, the last {len(validation):,} to validate on")
    print(test_line)
    if args.quick and not pool.is_subset:
        # The shipped subset is the first 10,000 training and 2,000 test digits of MNIST.
        print(
            "--quick keeps to the first 10,000 training and 2,000 test digits, which are the "
            "shipped subset's own digits, so its numbers are the same with or without full "
            "MNIST; leave out --quick for the full protocol."
        )
    return train, validation, test


def _training_options(args) -> dict:
    """The ``run_comparison(training=...)`` options the command line gave, and only those."""
    options = {
        "lr": args.lr,
        "batch_size": args.batch_size,
        "schedule": args.schedule,
        "step_every": args.step_every,
        "weight_decay": args.weight_decay,
    }
    options = {key: value for key, value in options.items() if value is not None}
    if options.get("schedule") == "constant":
        options["schedule"] = None  # gp.fit's name for a constant rate
    return options


def _compare(args, parser) -> int:
    preset = QUICK if args.quick else DEFAULTS
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.model not in MODELS:
        parser.error(f"--model: {args.model!r} not allowed; choose from {', '.join(MODELS)}.")
    # Checked against the registry when the command runs, so registered criteria count too.
    criteria = _choices(
        args.criteria or ",".join(default_criteria()), "--criteria", CRITERIA, parser
    )
    modes = _choices(args.mode, "--mode", MODES, parser)
    sparsities = _parse_sparsities(args.sparsity, parser)
    seeds = _parse_ints(args.seeds, "--seeds", parser)
    for option, value, minimum in (
        ("--epochs", args.epochs, 1),
        ("--rounds", args.rounds, 1),
        ("--score-samples", args.score_samples, 1),
        ("--finetune-epochs", args.finetune_epochs, 0),
        ("--train-limit", args.train_limit, 1),
        ("--test-limit", args.test_limit, 1),
        ("--threads", args.threads, 1),
        ("--synflow-rounds", args.synflow_rounds, 1),
    ):
        if value is not None and value < minimum:
            parser.error(f"{option} must be ≥ {minimum}, got {value}.")
    if "iterative" in modes and args.finetune_epochs < args.rounds:
        parser.error(
            f"--finetune-epochs {args.finetune_epochs} < --rounds {args.rounds}: the iterative "
            "mode fine-tunes after every round; raise --finetune-epochs or lower --rounds."
        )
    try:
        device = torch.device(args.device)
    except RuntimeError:
        parser.error(f"--device: {args.device!r} is not a torch device; try cpu or cuda.")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is available here; use --device cpu.")
    _check_out_folder(args.out, parser)
    if args.threads:
        torch.set_num_threads(args.threads)

    train, validation, test = _load_digits(args)
    out = Path(args.out)
    results_csv = out / "results.csv"
    run_comparison(
        train,
        validation,
        test,
        model=args.model,
        criteria=criteria,
        sparsities=sparsities,
        modes=modes,
        rounds=args.rounds,
        epochs=args.epochs,
        finetune_epochs=args.finetune_epochs,
        seeds=seeds,
        score_samples=args.score_samples,
        synflow_rounds=args.synflow_rounds,
        device=device,
        cache_dir=Path(args.cache) if args.cache else None,
        progress=not args.no_progress,
        results_csv=results_csv,
        training=_training_options(args),
    )
    # The table and plot show every row of the file: this run's and earlier runs' of the
    # same protocol (other criteria, sparsities or seeds added to the same folder).
    paths = write_outputs(read_rows(results_csv), out)
    print(paths["markdown"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``gradprune-lite``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "report":
            return _report(args, parser)
        return _compare(args, parser)
    except ValueError as error:
        print(f"gradprune-lite: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if args.command != "compare":
            raise
        print(
            f"\ngradprune-lite: interrupted. The finished rows are in {args.out}/results.csv; "
            "run the same command again to go on from there.",
            file=sys.stderr,
        )
        return 130  # the shell's status for a run stopped by Ctrl-C


if __name__ == "__main__":
    sys.exit(main())
