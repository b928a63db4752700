"""Benchmarks of gradprune-lite's kernels against the peers, measured side by side.

    python benchmarks/run.py            # full: 1M, 10M, 50M scores; writes docs/PERFORMANCE.md
    python benchmarks/run.py --quick    # 1M and 10M, fewer repeats and a shorter epoch
    python benchmarks/run.py --selection-only   # 10M scores of three distributions, cold start

Every number is a median of several runs in this one process, so the ratios compare
operations under the same machine load. The machine is shared; the load average is
recorded at the start and the end.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune as torch_prune

sys.path.insert(0, str(Path(__file__).resolve().parent))

from masked_epoch import ratio_rows  # noqa: E402
from timing import (
    fmt_seconds,
    interleaved_medians,
    load_average,
    machine_details,
    markdown_table,
    use_cpu_clock,
)  # noqa: E402
from timing import median_seconds as timed  # noqa: E402

import gradprune_lite as gp  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPARSITY = 0.9
#: Layer shares of the scores, like a network whose first layer holds most weights.
LAYER_SHARES = (0.6, 0.3, 0.09, 0.01)
MODELS = (("LeNet-300-100", gp.models.lenet_300_100), ("LeNet-5", gp.models.lenet5))


def layer_scores(total: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Magnitude-like scores (|N(0,1)|) split into a few layers of unequal size."""
    sizes = [int(total * share) for share in LAYER_SHARES]
    sizes[0] += total - sum(sizes)
    return {
        f"layer{i}.weight": torch.randn(n, generator=generator).abs_() for i, n in enumerate(sizes)
    }


def holders(scores: dict[str, torch.Tensor]) -> list[nn.Module]:
    """One module per layer whose weight shares the scores' storage, for torch.prune."""
    modules = []
    for tensor in scores.values():
        module = nn.Module()
        module.weight = nn.Parameter(tensor, requires_grad=False)
        modules.append(module)
    return modules


def selection_times(
    scores: dict[str, torch.Tensor],
    repeats: int,
    device: torch.device | str = "cpu",
    skip: tuple[str, ...] = (),
) -> dict[str, float]:
    """Median seconds of our selection and of each peer, on the same scores (skipped: nan)."""
    flat = torch.cat(list(scores.values()))
    total = flat.numel()
    k = round(SPARSITY * total)
    slow = 1 if total > 20_000_000 else max(1, repeats // 2)
    # The peers take seconds at 50M; one untimed warm-up run is not worth it there.
    warm = 0 if slow == 1 else 1

    def peer(name, fn, **kw):
        return float("nan") if name in skip else timed(fn, slow, warmup=warm, device=device, **kw)

    t = interleaved_medians(
        {
            "stream": lambda: flat.sum(),
            "ours_kth": lambda: gp.kth_smallest(list(scores.values()), k),
            "ours_masks": lambda: gp.global_masks(scores, SPARSITY),
        },
        repeats,
        device,
    )
    t |= {
        "kthvalue": peer("kthvalue", lambda: flat.kthvalue(k)),
        "topk": peer("topk", lambda: flat.topk(k, largest=False, sorted=False)),
        "sort": peer("sort", lambda: flat.sort()),
    }
    state = {}
    t["global_unstructured"] = peer(
        "global_unstructured",
        lambda: torch_prune.global_unstructured(
            [(m, "weight") for m in state["modules"]],
            pruning_method=torch_prune.L1Unstructured,
            amount=SPARSITY,
        ),
        setup=lambda: state.update(modules=holders(scores)),
    )
    return t


def selection_section(sizes: list[int], repeats: int) -> tuple[list[list[str]], dict]:
    rows, at_10m = [], {}
    generator = torch.Generator().manual_seed(0)
    for total in sizes:
        t = selection_times(layer_scores(total, generator), repeats)
        ours = t["ours_masks"]
        rows.append(
            [f"{total / 1e6:g}M"]
            + [fmt_seconds(t[key]) for key in ("ours_kth", "ours_masks", "stream")]
            + [
                f"{t[key] / ours:.1f}×"
                for key in ("kthvalue", "topk", "sort", "global_unstructured")
            ]
            + [f"{ours / t['stream']:.1f}×"]
        )
        if total == 10_000_000:
            at_10m = t
        print(
            f"selection {total:>11,}: " + ", ".join(f"{k} {fmt_seconds(v)}" for k, v in t.items()),
            flush=True,
        )
    return rows, at_10m


def distribution_scores(kind: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """10M scores in two layers (2000×2500 and 2500×2000) of one of three distributions.

    ``init``: |w| of freshly initialised ``nn.Linear`` layers (uniform, and quantised to
    2^24 levels, so exact ties are common); ``normal``: |N(0,1)|; ``heavy``: |t| with 3
    degrees of freedom, a heavy-tailed stand-in for trained weights.
    """
    torch.manual_seed(seed)
    shapes = ((2000, 2500), (2500, 2000))
    if kind == "init":
        layers = [nn.Linear(cols, rows) for rows, cols in shapes]
        return {f"fc{i}.weight": m.weight.detach().abs() for i, m in enumerate(layers)}
    if kind == "normal":
        return {f"fc{i}.weight": torch.randn(shape).abs() for i, shape in enumerate(shapes)}
    t3 = torch.distributions.StudentT(3.0)
    return {f"fc{i}.weight": t3.sample(shape).abs() for i, shape in enumerate(shapes)}


DISTRIBUTIONS = {
    # Pipes escaped: these labels go into markdown table cells.
    "init": r"\|w\| of fresh `nn.Linear`",
    "normal": r"\|N(0,1)\|",
    "heavy": r"heavy-tailed (\|t₃\|)",
}


def with_sweep(compiled: bool, fn):
    """``fn`` run with the numba sweep (if installed) or the pure-torch one."""
    from gradprune_lite.core import _band_kernel

    def run():
        saved = _band_kernel.DISABLED
        _band_kernel.DISABLED = not compiled
        try:
            return fn()
        finally:
            _band_kernel.DISABLED = saved

    return run


def distribution_section(repeats: int) -> tuple[list[list[str]], dict]:
    """Our masks (numba and torch sweeps) against global_unstructured, per distribution.

    All contenders of all three distributions are interleaved in one loop, so each ratio
    compares runs made under the same load from one second to the next.
    """
    all_scores = {kind: distribution_scores(kind) for kind in DISTRIBUTIONS}
    contenders = {}
    for kind, scores in all_scores.items():
        contenders[f"{kind}/numba"] = with_sweep(
            True, lambda s=scores: gp.global_masks(s, SPARSITY)
        )
        contenders[f"{kind}/torch"] = with_sweep(
            False, lambda s=scores: gp.global_masks(s, SPARSITY)
        )
        contenders[f"{kind}/global_unstructured"] = lambda s=scores: (
            torch_prune.global_unstructured(
                [(m, "weight") for m in holders(s)],
                pruning_method=torch_prune.L1Unstructured,
                amount=SPARSITY,
            )
        )
    t = interleaved_medians(contenders, repeats)
    rows, ratios = [], {}
    for kind, label in DISTRIBUTIONS.items():
        peer = t[f"{kind}/global_unstructured"]
        numba_t, torch_t = t[f"{kind}/numba"], t[f"{kind}/torch"]
        ratios[kind] = (peer / numba_t, peer / torch_t)
        rows.append(
            [
                label,
                fmt_seconds(numba_t),
                fmt_seconds(torch_t),
                fmt_seconds(peer),
                f"{peer / numba_t:.0f}×",
                f"{peer / torch_t:.0f}×",
            ]
        )
        print(
            f"distribution {kind}: numba {fmt_seconds(numba_t)}, torch {fmt_seconds(torch_t)}, "
            f"global_unstructured {fmt_seconds(peer)}",
            flush=True,
        )
    return rows, ratios


COLD_START = """
import time
start = time.perf_counter()
import torch
torch.set_num_threads({threads})
import gradprune_lite as gp
imported = time.perf_counter()
scores = {{"w": torch.rand({size})}}
made = time.perf_counter()
gp.global_masks(scores, 0.9)
first = time.perf_counter()
gp.global_masks(scores, 0.9)
second = time.perf_counter()
print(imported - start, first - made, second - first)
"""


def cold_start_rows(runs: int = 3) -> list[list[str]]:
    """Time of the first ``global_masks`` in a fresh process, with and without numba.

    Each run is a new Python process, alternating the two settings; numba's compiled
    kernel comes from its on-disk cache (compiled once before the runs).
    """
    import os
    import statistics
    import subprocess

    threads = torch.get_num_threads()
    settings = {"numba sweep": "0", "torch sweep (numba not used)": "1"}
    results = {name: {size: [] for size in (300_000, 10_000_000)} for name in settings}
    for run in range(runs + 1):
        for name, pure in settings.items():
            for size in (300_000, 10_000_000):
                env = dict(os.environ, GRADPRUNE_PURE_TORCH=pure)
                out = subprocess.run(
                    [sys.executable, "-c", COLD_START.format(threads=threads, size=size)],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout.split()
                if run:  # the first round only fills caches
                    results[name][size].append([float(x) for x in out])
    rows = []
    for name, by_size in results.items():
        cells = [name]
        for size in (300_000, 10_000_000):
            first, second = (statistics.median(r[i] for r in by_size[size]) for i in (1, 2))
            cells += [fmt_seconds(first), fmt_seconds(second)]
        rows.append(cells)
    return rows


def selection_only_report(repeats: int) -> str:
    details = machine_details()
    print("\n".join(f"{k}: {v}" for k, v in details.items()), flush=True)
    rows, ratios = distribution_section(repeats)
    cold = cold_start_rows()
    details["load average (1, 5, 15 min) at end"] = load_average()
    targets = [
        [
            f"selection at 10M, {DISTRIBUTIONS[kind]}, vs `global_unstructured`",
            "≥ 50× faster",
            f"{numba_ratio:.0f}× (numba) / {torch_ratio:.0f}× (torch)",
            f"{verdict(numba_ratio >= 50)} / {verdict(torch_ratio >= 50)}",
        ]
        for kind, (numba_ratio, torch_ratio) in ratios.items()
    ]
    return "\n\n".join(
        [
            "### Machine\n\n" + "\n".join(f"- {k}: {v}" for k, v in details.items()),
            "### Targets\n\n" + markdown_table(["what", "target", "measured", ""], targets),
            "### Selection on three score distributions (10M scores, 90% sparsity)\n\n"
            "Medians of runs interleaved with each other; ratios are "
            "`global_unstructured` ÷ ours.\n\n"
            + markdown_table(
                [
                    "scores",
                    "ours, numba sweep",
                    "ours, torch sweep",
                    "`global_unstructured`",
                    "ratio (numba)",
                    "ratio (torch)",
                ],
                rows,
            ),
            "### First call in a fresh process (medians of 3 new processes)\n\n"
            + markdown_table(
                [
                    "selection",
                    "first call, 300k scores",
                    "second call, 300k",
                    "first call, 10M scores",
                    "second call, 10M",
                ],
                cold,
            ),
        ]
    )


def mask_memory_rows(total: int = 1_000_000) -> list[list[str]]:
    generator = torch.Generator().manual_seed(1)
    scores = layer_scores(total, generator)
    ours = sum(m.numel() * m.element_size() for m in gp.global_masks(scores, SPARSITY).values())
    modules = holders({n: s.clone() for n, s in scores.items()})
    torch_prune.global_unstructured(
        [(m, "weight") for m in modules], pruning_method=torch_prune.L1Unstructured, amount=SPARSITY
    )
    mask_bytes = sum(m.weight_mask.numel() * m.weight_mask.element_size() for m in modules)
    orig_bytes = sum(m.weight_orig.numel() * m.weight_orig.element_size() for m in modules)
    return [
        ["gradprune-lite (bool `weight_keep` buffer)", f"{ours / total:.0f}", "1.0×"],
        [
            "torch.nn.utils.prune (float `weight_mask` + `weight_orig`)",
            f"{(mask_bytes + orig_bytes) / total:.0f}",
            f"{(mask_bytes + orig_bytes) / ours:.1f}×",
        ],
    ]


def plain_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()


def vmap_stats(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    from torch.func import functional_call, grad, vmap

    params = {name: p.detach() for name, p in model.named_parameters()}

    def sample_loss(p, xi, yi):
        return F.cross_entropy(functional_call(model, p, (xi[None],)), yi[None])

    grads = vmap(grad(sample_loss), in_dims=(None, 0, 0))(params, x, y)
    return {n: (g.mean(0), g.square().mean(0)) for n, g in grads.items() if n.endswith("weight")}


def backpack_runner(model: nn.Module):
    """A function running BackPACK's SumGradSquared and Variance, or a note why it can't."""
    try:
        from backpack import backpack, extend
        from backpack.extensions import SumGradSquared, Variance
    except ImportError as error:
        return None, f"BackPACK not installed ({error.name}); `pip install backpack-for-pytorch`"
    extended = extend(copy.deepcopy(model))
    loss_fn = extend(nn.CrossEntropyLoss())

    def run(x, y):
        extended.zero_grad(set_to_none=True)
        with backpack(SumGradSquared(), Variance()):
            loss_fn(extended(x), y).backward()

    return run, ""


def stats_times(model: nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int) -> dict:
    contenders = {
        "plain": lambda: plain_step(model, x, y),
        "ours": lambda: gp.gradient_stats(model, [(x, y)]),
        "vmap": lambda: vmap_stats(model, x, y),
    }
    run_backpack, note = backpack_runner(model)
    if run_backpack is not None:
        contenders["backpack"] = lambda: run_backpack(x, y)
    times: dict = interleaved_medians(contenders, repeats * 2)
    if run_backpack is None:
        times["backpack_note"] = note
    return times


def stats_section(batch: int, repeats: int) -> tuple[list[list[str]], dict, list[str]]:
    rows, ratios, notes = [], {}, []
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(batch, 1, 28, 28, generator=generator)
    y = torch.randint(10, (batch,), generator=generator)
    for name, build in MODELS:
        times = stats_times(build(seed=0), x, y, repeats)
        plain, ours = times["plain"], times["ours"]
        if "backpack" in times:
            backpack_cell = f"{times['backpack'] / plain:.1f}×"
        else:
            backpack_cell = "skipped"
            notes.append(times["backpack_note"])
        ratios[name] = ours / plain
        rows.append(
            [
                name,
                fmt_seconds(plain),
                fmt_seconds(ours),
                f"{ours / plain:.2f}×",
                f"{times['vmap'] / plain:.1f}×",
                backpack_cell,
            ]
        )
        print(
            f"stats {name}: "
            + ", ".join(f"{k} {fmt_seconds(v)}" for k, v in times.items() if isinstance(v, float)),
            flush=True,
        )
    return rows, ratios, notes


def train_epoch(model, optimizer, x, y, batch_size=128) -> None:
    for start in range(0, x.shape[0], batch_size):
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(
            model(x[start : start + batch_size]), y[start : start + batch_size]
        ).backward()
        optimizer.step()


def epoch_seconds(model, optimizer, x, y, device: torch.device | str = "cpu") -> float:
    return timed(lambda: train_epoch(model, optimizer, x, y), 1, warmup=0, device=device)


def training_section(samples: int, repeats: int) -> tuple[list[list[str]], dict]:
    """Dense and masked SGD on the same batches: ``masked_epoch.py``'s measurement.

    Single steps alternate between the two runs; an epoch's time is the sum of its steps,
    and the ratio compares medians over ``repeats`` epochs (at least 5).
    """
    return ratio_rows(dict.fromkeys((name for name, _ in MODELS), samples), max(5, repeats), "cpu")


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def write_report(path: Path, command: str, report: str) -> None:
    """Put ``report`` in ``path`` as the block of ``command``, replacing that block only.

    Runs with different options (say wall clock and CPU clock) keep their own blocks, and
    the hand-written text above the marker line is never touched.
    """
    marker = "<!-- benchmarks/run.py writes below this line -->"
    text = path.read_text() if path.exists() else f"# Performance\n\n{marker}\n"
    if marker not in text:
        text += f"\n{marker}\n"
    begin, end = f"<!-- run: {command} -->", f"<!-- end: {command} -->"
    block = f"{begin}\n\n## Results of `{command}`\n\n{report}\n\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)
    print(f"\nwrote {path}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1M and 10M only, fewer repeats")
    parser.add_argument("--output", default=str(ROOT / "docs" / "PERFORMANCE.md"))
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--threads", type=int, help="torch (and numba) threads; default: torch's")
    parser.add_argument(
        "--cpu-clock",
        action="store_true",
        help="time with process CPU time (use with --threads 1 on a crowded machine)",
    )
    parser.add_argument(
        "--selection-only",
        action="store_true",
        help="only selection on three score distributions and the cold start (a few minutes)",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cpu_clock:
        use_cpu_clock()
    if args.selection_only:
        report = selection_only_report(3 if args.quick else 7)
        print("\n" + report)
        if not args.no_write:
            command = "python benchmarks/run.py --selection-only"
            command += " --quick" if args.quick else ""
            command += f" --threads {args.threads}" if args.threads else ""
            command += " --cpu-clock" if args.cpu_clock else ""
            write_report(Path(args.output), command, report)
        return 0
    sizes = [1_000_000, 10_000_000] if args.quick else [1_000_000, 10_000_000, 50_000_000]
    repeats = 3 if args.quick else 7
    samples = 4096 if args.quick else 16_384

    details = machine_details()
    print("\n".join(f"{k}: {v}" for k, v in details.items()), flush=True)
    sel_rows, sel10 = selection_section(sizes, repeats)
    memory = mask_memory_rows()
    stats_rows, stats_ratios, notes = stats_section(256, repeats)
    train_rows, train_ratios = training_section(samples, 5)
    details["load average (1, 5, 15 min) at end"] = load_average()

    speedup = sel10["global_unstructured"] / sel10["ours_masks"]
    vs_stream = sel10["ours_masks"] / sel10["stream"]
    targets = [
        [
            "selection at 10M vs `global_unstructured`",
            "≥ 50× faster",
            f"{speedup:.0f}×",
            verdict(speedup >= 50),
        ],
        [
            "selection at 10M vs one streaming pass",
            "≤ 30×",
            f"{vs_stream:.1f}×",
            verdict(vs_stream <= 30),
        ],
        [
            "gradient stats LeNet-300-100 vs forward+backward",
            "≤ 2×",
            f"{stats_ratios['LeNet-300-100']:.2f}×",
            verdict(stats_ratios["LeNet-300-100"] <= 2),
        ],
        [
            "gradient stats LeNet-5 vs forward+backward",
            "≤ 4×",
            f"{stats_ratios['LeNet-5']:.2f}×",
            verdict(stats_ratios["LeNet-5"] <= 4),
        ],
    ] + [
        [f"masked epoch {name} vs dense", "≤ 1.1×", f"{r:.3f}×", verdict(r <= 1.1)]
        for name, r in train_ratios.items()
    ]
    report = "\n\n".join(
        [
            "### Machine\n\n" + "\n".join(f"- {k}: {v}" for k, v in details.items()),
            "### Targets\n\n" + markdown_table(["what", "target", "measured", ""], targets),
            "### Selection (global masks at 90% sparsity)\n\n"
            "Times are medians; ratio columns are *that operation's time ÷ our `global_masks`* "
            "(higher = we are faster), the last column is *our `global_masks` ÷ one `sum` pass*.\n\n"
            + markdown_table(
                [
                    "scores",
                    "our `kth_smallest`",
                    "our `global_masks`",
                    "`sum` (1 pass)",
                    "`kthvalue`",
                    "`topk`",
                    "`sort`",
                    "`global_unstructured`",
                    "ours ÷ pass",
                ],
                sel_rows,
            ),
            "### Mask memory (bytes per weight, beyond the weight itself)\n\n"
            + markdown_table(["masks", "bytes / weight", "relative"], memory),
            "### Gradient statistics at batch 256 (ratios to one plain forward+backward)\n\n"
            + markdown_table(
                [
                    "model",
                    "forward+backward",
                    "`gp.gradient_stats`",
                    "ours",
                    "`torch.func` vmap(grad)",
                    "BackPACK SumGradSquared+Variance",
                ],
                stats_rows,
            )
            + ("\n\n" + "\n".join(f"- {n}" for n in notes) if notes else ""),
            "### Training epoch, 90% of weights masked vs dense (SGD momentum, batch 128, random MNIST-shaped data; "
            "steps alternate between the two runs, epoch = sum of its steps, median of 5 epochs)\n\n"
            + markdown_table(
                ["model", "samples", "dense epoch", "masked epoch", "ratio"], train_rows
            ),
        ]
    )
    print("\n" + report)
    if not args.no_write:
        command = "python benchmarks/run.py" + (" --quick" if args.quick else "")
        command += f" --threads {args.threads}" if args.threads else ""
        command += " --cpu-clock" if args.cpu_clock else ""
        write_report(Path(args.output), command, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
