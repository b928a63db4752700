"""Real speed and size of pruned LeNets: masks, CSR and structured removal, side by side.

    python benchmarks/speed.py                       # both models, writes docs/results/speed/
    python benchmarks/speed.py --model lenet_300_100 --finetune-digits 55000
    python benchmarks/speed.py --seeds 0          # one seed: a quick look, no spread

For each model (the dense start is ``gp.trained(model, seed)``) the rows are: dense; masked
unstructured magnitude pruning at 90/95/98%; the same models through ``gp.to_sparse``;
structured ``gp.structured_prune`` (layerwise) at about 2×, 4× and 8× fewer MACs, by
``magnitude`` and by ``taylor`` group importance. Every pruned row gets the same fine-tuning
(SGD, cosine, one pass over ``--finetune-digits`` training digits); the CSR rows are built
from the fine-tuned masked models, so they share their error. The test error is the mean ±
std over ``--seeds`` (default 0,1,2): each seed has its own dense reference, pruning and
fine-tuning; the speed, size and cost columns are measured on the first seed's models.

Timings use one thread and this process's CPU time, every row in turn per round (order
rotating), so all rows run under the same load; we report ratios against dense. Epoch time
is a median of ``--steps`` SGD steps (batch 128) scaled to the 430 steps of an epoch on the
55,000 training digits. CSR rows have no epoch time: the CSR weight is not trained.
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import interleaved_medians, load_average, machine_details, markdown_table, use_cpu_clock

import gradprune_lite as gp

SPARSITIES = (0.90, 0.95, 0.98)
MAC_FACTORS = (2, 4, 8)
GROUP_CRITERIA = ("magnitude", "taylor")
BATCH = 128


def amount_for(model, factor: float, example) -> float:
    """Layerwise amount whose structured model has ``1/factor`` of the dense MACs (bisection)."""
    dense_macs = gp.model_cost(model, example)["macs"]
    low, high = 0.0, 0.99
    for _ in range(14):
        middle = (low + high) / 2
        small = gp.structured_prune(
            model, "random", middle, example_inputs=example, scope="layerwise"
        )
        if gp.model_cost(small, example)["macs"] * factor > dense_macs:
            low = middle
        else:
            high = middle
    return high


def build_rows(name: str, seed: int, epochs, scoring, example) -> dict[str, torch.nn.Module]:
    dense = gp.trained(name, seed=seed) if epochs is None else gp.trained(name, seed, epochs=epochs)
    rows = {"dense": dense}
    for sparsity in SPARSITIES:
        model = copy.deepcopy(dense)
        gp.apply_masks(model, gp.global_masks(gp.score(model, "magnitude"), sparsity))
        rows[f"masked {sparsity:.0%}"] = model
    for factor in MAC_FACTORS:
        amount = amount_for(dense, factor, example)
        for criterion in GROUP_CRITERIA:
            rows[f"structured {criterion} {factor}×"] = gp.structured_prune(
                dense, criterion, amount, scoring, example_inputs=example, scope="layerwise"
            )
    return rows


def fine_tune(rows, train, seed: int) -> None:
    for label, model in rows.items():
        if label != "dense":
            gp.fit(model, train, epochs=1, lr=0.01, schedule="cosine", seed=seed, progress=False)
            model.eval()


def training_steps(model, images, labels, steps: int):
    """A function that runs ``steps`` SGD steps on ``model`` (a copy: the row is not changed)."""
    model = copy.deepcopy(model).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    if gp.current_masks(model):
        gp.hold_masks(model, optimizer)

    def run():
        for step in range(steps):
            start = (step * BATCH) % (len(images) - BATCH)
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(
                model(images[start : start + BATCH]), labels[start : start + BATCH]
            )
            loss.backward()
            optimizer.step()

    return run


def inference(model, inputs, repeats: int):
    def run():
        with torch.no_grad():
            for _ in range(repeats):
                model(inputs)

    return run


def pruned_rows(name: str, seed: int, args, train, example) -> dict[str, torch.nn.Module]:
    """Every row of one seed, fine-tuned, with the CSR copies of the masked rows."""
    torch.manual_seed(seed)
    finetune = train.slice(0, args.finetune_digits)
    scoring = [(train.images[i : i + 256], train.labels[i : i + 256]) for i in range(0, 2560, 256)]
    rows = build_rows(name, seed, args.reference_epochs, scoring, example)
    fine_tune(rows, finetune, seed)
    for sparsity in SPARSITIES:
        rows[f"CSR {sparsity:.0%}"] = gp.to_sparse(rows[f"masked {sparsity:.0%}"])
    return rows


def measure(name: str, args) -> tuple[str, list[dict]]:
    train, _, test = gp.splits()
    example = test.images[:1]
    first, *others = args.seeds
    rows = pruned_rows(name, first, args, train, example)
    errors = {label: [gp.evaluate(model, test).error] for label, model in rows.items()}
    for seed in others:  # the error column only: each seed's own reference, pruning, tuning
        for label, model in pruned_rows(name, seed, args, train, example).items():
            errors[label].append(gp.evaluate(model, test).error)
    results = {
        label: {"row": label, "errors": errors[label], **gp.model_cost(model, example)}
        for label, model in rows.items()
    }
    one, batch = test.images[:1], test.images[:256]
    for key, inputs, repeats in (("latency_1", one, args.repeats_1), ("latency_256", batch, 2)):
        medians = interleaved_medians(
            {label: inference(m, inputs, repeats) for label, m in rows.items()}, args.rounds
        )
        for label, seconds in medians.items():
            results[label][key] = seconds / repeats
    trainable = {label: m for label, m in rows.items() if not label.startswith("CSR")}
    images, labels = train.images[: 64 * BATCH], train.labels[: 64 * BATCH]
    medians = interleaved_medians(
        {label: training_steps(m, images, labels, args.steps) for label, m in trainable.items()},
        args.rounds,
    )
    epoch_steps = math.ceil(len(train) / BATCH)
    for label, seconds in medians.items():
        results[label]["epoch"] = seconds / args.steps * epoch_steps
    return table(name, list(results.values())), list(results.values())


def table(name: str, results: list[dict]) -> str:
    dense = results[0]
    header = [
        "row",
        "params (nonzero)",
        "MACs",
        "MACs ÷",
        "checkpoint",
        "latency b=1 ×",
        "latency b=256 ×",
        "epoch ×",
        f"test error % ({seeds_note(results)})",
    ]
    lines = []
    for r in results:
        epoch = f"{dense['epoch'] / r['epoch']:.2f}" if "epoch" in r else "n/a"
        lines.append(
            [
                r["row"],
                f"{r['params']:,}",
                f"{r['macs']:,}",
                f"{dense['macs'] / r['macs']:.2f}",
                f"{r['checkpoint_bytes'] / 1024:.0f} KiB",
                f"{dense['latency_1'] / r['latency_1']:.2f}",
                f"{dense['latency_256'] / r['latency_256']:.2f}",
                epoch,
                error_cell(r["errors"]),
            ]
        )
    absolute = (
        f"Dense {name}: latency {dense['latency_1'] * 1e6:.0f} µs at batch 1, "
        f"{dense['latency_256'] * 1e3:.2f} ms at batch 256, epoch {dense['epoch']:.1f} s "
        "(1 thread, process CPU time)."
    )
    return f"### {name}\n\n{markdown_table(header, lines)}\n\n{absolute}\n"


def seeds_note(results: list[dict]) -> str:
    count = len(results[0]["errors"])
    return "1 seed" if count == 1 else f"mean ± std, {count} seeds"


def error_cell(errors: list[float]) -> str:
    if len(errors) == 1:
        return f"{errors[0]:.2f}"
    return f"{statistics.mean(errors):.2f} ± {statistics.stdev(errors):.2f}"


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = (x.argsort().argsort().float() for x in (a, b))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def group_importance_check(seed: int = 0) -> str:
    """Which group score predicts the real damage of removing one fc1 neuron of LeNet-300-100?

    The real damage of neuron k is the validation-loss change when its output is zeroed
    (2,560 digits); each criterion scores fc1 from 2,560 training digits.
    """
    from gradprune_lite.core.structure import GroupContext

    train, validation, _ = gp.splits()
    dense = gp.trained("lenet_300_100", seed=seed)
    first = [(train.images[i : i + 256], train.labels[i : i + 256]) for i in range(0, 2560, 256)]
    second = [
        (train.images[i : i + 256], train.labels[i : i + 256]) for i in range(2560, 5120, 256)
    ]
    layers = {"fc1.weight": dense.fc1}
    scores = {
        name: gp.GROUP_CRITERIA[name](GroupContext(dense, layers, first, {}))["fc1.weight"]
        for name in ("magnitude", "taylor", "fisher")
    }
    taylor_again = gp.GROUP_CRITERIA["taylor"](GroupContext(dense, layers, second, {}))
    images, labels = validation.images[:2560].flatten(1), validation.labels[:2560]
    with torch.no_grad():
        hidden = F.relu(dense.fc1(images))
        head = lambda h: F.cross_entropy(dense.fc3(F.relu(dense.fc2(h))), labels)  # noqa: E731
        base = head(hidden)
        damage = torch.zeros(hidden.shape[1])
        for k in range(hidden.shape[1]):
            without = hidden.clone()
            without[:, k] = 0
            damage[k] = head(without) - base
    lines = [
        "Group importance of LeNet-300-100's 300 fc1 neurons against the real damage of "
        "removing each one (validation-loss change, 2,560 digits):",
        f"- taylor on two disjoint sets of 2,560 training digits: Spearman "
        f"{_spearman(scores['taylor'], taylor_again['fc1.weight']):.2f}",
        f"- removals that lower the loss: {float((damage < 0).float().mean()):.0%}",
    ]
    for name, values in scores.items():
        lowest = values.argsort()[:150]
        lines.append(
            f"- {name}: Spearman with the damage {_spearman(values, damage):.2f}; summed damage "
            f"of its 150 lowest {float(damage[lowest].sum()):.4f} nats"
        )
    lines.append(
        f"- (oracle: the 150 least damaging sum to {float(damage.sort().values[:150].sum()):.4f})"
    )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=sorted(gp.models.MODELS), action="append")
    parser.add_argument(
        "--seeds",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[0, 1, 2],
        help="comma-separated seeds of the error column; timings use the first (default 0,1,2)",
    )
    parser.add_argument("--finetune-digits", type=int, default=55_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats-1", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("docs/results/speed"))
    parser.add_argument(
        "--reference-epochs", type=int, help="epochs of the dense start (default: gp.trained's)"
    )
    parser.add_argument("--diagnose", action="store_true", help="only the group-importance check")
    args = parser.parse_args(argv)
    if args.diagnose:
        print(group_importance_check(args.seeds[0]))
        return
    # One thread throughout: on a shared machine a second OpenMP thread spins against other
    # processes and makes training many times slower (see docs/RESULTS.md).
    torch.set_num_threads(1)
    use_cpu_clock()
    details = machine_details()
    parts = []
    for name in args.model or ["lenet_300_100", "lenet5"]:
        text, _ = measure(name, args)
        print(text, flush=True)
        parts.append(text)
    details["load average (1, 5, 15 min) at end"] = load_average()
    details["fine-tuning"] = (
        f"1 pass over {args.finetune_digits:,} training digits (SGD lr 0.01, cosine), "
        f"seeds {', '.join(map(str, args.seeds))} (speed and size: seed {args.seeds[0]})"
    )
    if args.reference_epochs is not None:
        details["dense start"] = f"gp.trained(model, seed, epochs={args.reference_epochs})"
    header = "\n".join(f"- {k}: {v}" for k, v in details.items())
    args.out.mkdir(parents=True, exist_ok=True)
    names = "-".join(args.model or ["lenet_300_100", "lenet5"])
    (args.out / f"{names}.md").write_text(header + "\n\n" + "\n".join(parts))
    print(header)


if __name__ == "__main__":
    main()
