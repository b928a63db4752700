"""Check every kernel's CUDA result against the CPU result, then time the same ratios on GPU.

    python benchmarks/gpu_check.py                # on a CUDA machine, about 2-4 minutes
    python benchmarks/gpu_check.py --cpu          # smoke run on the CPU (small sizes)
    python benchmarks/gpu_check.py --device mps   # Apple GPU: float32 comparisons

One short script for a lent GPU: selection, gradient statistics, scores, masks and obs
against the CPU; no float64 op on the hot paths (what MPS needs); DDP with one process
per GPU over nccl (with one GPU or none, two gloo processes on the CPU), masks exactly
equal on every rank and against one process; then timings of selection, gradient
statistics, the mask step and a masked epoch. Everything printed also goes, as markdown,
to ``--out`` (default ``docs/results/gpu/<device>.md``), ready for docs/PERFORMANCE.md.

Exits 0 when every check passes, 1 on any mismatch, and 2 (with a message) when the
requested device does not exist. The CPU test suite never needs this script.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import (  # noqa: E402
    MODELS,
    SPARSITY,
    epoch_seconds,
    layer_scores,
    plain_step,
    selection_times,
    vmap_stats,
)
from timing import fmt_seconds, machine_details, markdown_table  # noqa: E402
from timing import median_seconds as timed  # noqa: E402

import gradprune_lite as gp  # noqa: E402

failures: list[str] = []
report: list[str] = []  # the markdown written to --out


def say(line: str = "") -> None:
    print(line, flush=True)
    report.append(line)


def check(ok: bool, what: str) -> None:
    say(f"- {'ok  ' if ok else 'FAIL'} {what}")
    if not ok:
        failures.append(what)


def tied_scores(total: int, seed: int) -> dict[str, torch.Tensor]:
    """Scores with heavy ties, negatives and ±0, split over a few layers."""
    scores = layer_scores(total, torch.Generator().manual_seed(seed))
    return {name: (s * 8).round() - 4 for name, s in scores.items()}


def check_selection(device: torch.device, totals=(1_000, 300_000, 5_000_000)) -> None:
    say("\n### selection: kth_smallest, global_masks, layerwise_masks\n")
    for seed, total in enumerate(totals):
        for scores in (
            layer_scores(total, torch.Generator().manual_seed(seed)),
            tied_scores(total, seed),
        ):
            on_device = {n: s.to(device) for n, s in scores.items()}
            flat = torch.cat(list(scores.values()))
            for k in (1, total // 3, round(SPARSITY * total), total):
                got = gp.kth_smallest(list(on_device.values()), k).cpu()
                check(torch.equal(got, flat.kthvalue(k).values), f"kth_smallest n={total} k={k}")
            for name, fn in (
                ("global_masks", gp.global_masks),
                ("layerwise_masks", gp.layerwise_masks),
            ):
                cpu, dev = fn(scores, SPARSITY), fn(on_device, SPARSITY)
                same = all(
                    dev[n].device == device
                    and dev[n].dtype == torch.bool
                    and torch.equal(dev[n].cpu(), cpu[n])
                    for n in scores
                )
                check(same, f"{name} n={total}")


def precise(device: torch.device) -> torch.dtype:
    """float64 for the CPU-against-device comparisons, float32 where the device has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


def data(batch: int, seed: int = 0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 1, 28, 28, generator=generator, dtype=dtype)
    return x, torch.randint(10, (batch,), generator=generator)


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype == torch.float32:
        return torch.allclose(a.cpu(), b.cpu(), rtol=1e-4, atol=1e-7)
    return torch.allclose(a.cpu(), b.cpu(), rtol=1e-6, atol=1e-9)


def check_models(device: torch.device) -> None:
    # float64 on both sides, so CPU and GPU agree to round-off whatever the kernels' order.
    x, y = data(64, dtype=precise(device))
    for label, build in MODELS:
        say(f"\n### {label}: gradient_stats, scores, apply/enforce masks\n")
        cpu_model = build(seed=0).to(precise(device))
        dev_model = copy.deepcopy(cpu_model).to(device)
        cpu_stats = gp.gradient_stats(cpu_model, [(x, y)])
        dev_stats = gp.gradient_stats(dev_model, [(x.to(device), y.to(device))])
        for name, stats in cpu_stats.items():
            check(
                close(dev_stats[name].mean, stats.mean)
                and close(dev_stats[name].sq_mean, stats.sq_mean),
                f"gradient_stats {label} {name}",
            )
        for criterion in sorted(gp.CRITERIA):
            cpu_scores = gp.score(cpu_model, criterion, [(x, y)])
            dev_scores = gp.score(dev_model, criterion, [(x.to(device), y.to(device))])
            check(
                all(close(dev_scores[n], cpu_scores[n]) for n in cpu_scores),
                f"score {criterion} {label}",
            )
        masks = gp.global_masks(gp.score(cpu_model, "magnitude"), SPARSITY)
        results = []
        for model, dev in ((cpu_model, torch.device("cpu")), (dev_model, device)):
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
            gp.apply_masks(model, {n: m.to(dev) for n, m in masks.items()}, optimizer)
            for _ in range(3):
                optimizer.zero_grad()
                F.cross_entropy(model(x.to(dev)), y.to(dev)).backward()
                optimizer.step()
            gp.enforce_masks(model)
            results.append(gp.prunable_weights(model))
        for name, mask in masks.items():
            cpu_w, dev_w = results[0][name], results[1][name].cpu()
            check(
                bool((dev_w[~mask] == 0).all()) and close(dev_w, cpu_w),
                f"apply_masks+enforce_masks {label} {name}",
            )


def check_obs(device: torch.device) -> None:
    """gp.prune(..., "obs") on the device against the CPU: same masks, same moved weights."""
    x, y = data(128, dtype=precise(device))
    for label, build in MODELS:
        say(f"\n### {label}: obs prune (OBS update, 2 steps), CPU against {device}\n")
        cpu_model = build(seed=0).to(precise(device))
        dev_model = copy.deepcopy(cpu_model).to(device)
        options = {"steps": 2, "block_size": 32}
        cpu_masks = gp.prune(cpu_model, "obs", SPARSITY, [(x, y)], **options)
        dev_masks = gp.prune(dev_model, "obs", SPARSITY, [(x.to(device), y.to(device))], **options)
        cpu_weights, dev_weights = gp.prunable_weights(cpu_model), gp.prunable_weights(dev_model)
        for name, mask in cpu_masks.items():
            dev_w = dev_weights[name].detach()
            check(
                dev_w.device.type == device.type
                and torch.equal(dev_masks[name].cpu(), mask)
                and bool((dev_w[~dev_masks[name]] == 0).all())
                and torch.allclose(dev_w.cpu(), cpu_weights[name].detach(), rtol=1e-5, atol=1e-8),
                f"obs prune {label} {name}",
            )


class Float64Watch(TorchDispatchMode):
    """Records every aten op that takes or makes a float64 tensor (MPS has none)."""

    def __init__(self):
        super().__init__()
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        tensors = tree_flatten((args, kwargs, out))[0]
        if any(isinstance(t, torch.Tensor) and t.dtype == torch.float64 for t in tensors):
            self.ops.add(str(func))
        return out


def check_dtypes(device: torch.device) -> None:
    """The hot paths on a float32 model run no float64 op (so they can run on MPS)."""
    say(f"\n### MPS-safe dtypes: no float64 op on the hot paths, on {device}\n")
    x, y = data(64, dtype=torch.float32)
    batches = [(x.to(device), y.to(device))]
    for label, build in MODELS:
        model = build(seed=0).to(device)
        steps = {
            "gradient_stats": lambda m=model: gp.gradient_stats(m, batches),
            **{
                f"score {c}": (lambda c=c, m=model: gp.score(m, c, batches))
                for c in sorted(gp.CRITERIA)
            },
            "global_masks + apply_masks": lambda m=model: gp.apply_masks(
                copy.deepcopy(m), gp.global_masks(gp.score(m, "magnitude"), SPARSITY)
            ),
            "layerwise_masks": lambda m=model: gp.layerwise_masks(
                gp.score(m, "taylor", batches), 0.5
            ),
            "prune taylor, 2 rounds": lambda m=model: gp.prune(
                copy.deepcopy(m), "taylor", SPARSITY, batches, rounds=2
            ),
            "prune obs": lambda m=model: gp.prune(
                copy.deepcopy(m), "obs", 0.5, batches, steps=1, block_size=32
            ),
        }
        for name, step in steps.items():
            with Float64Watch() as watch:
                step()
            check(not watch.ops, f"{label} {name}: float64 ops {sorted(watch.ops) or 'none'}")


# ---------------------------------------------------------------------------------------
# DDP: one process per GPU over nccl, or two gloo processes on the CPU.

DDP_PER_RANK = 256


def ddp_batches(rank: int, device: torch.device) -> list:
    digits = gp.mnist("train", limit=(rank + 1) * DDP_PER_RANK, verbose=False, download=False)
    start = rank * DDP_PER_RANK
    return [
        (digits.images[i : i + 128].to(device), digits.labels[i : i + 128].to(device))
        for i in range(start, start + DDP_PER_RANK, 128)
    ]


def ddp_results(batches: list, device: torch.device) -> dict:
    model = gp.models.lenet_300_100(seed=0).to(device)
    out = {}
    for criterion in ("taylor", "fisher", "snip", "grasp"):
        out[criterion] = gp.global_masks(gp.score(model, criterion, batches), SPARSITY)
    out["prune obs"] = gp.prune(copy.deepcopy(model), "obs", 0.5, batches, steps=1, block_size=32)
    return {key: {n: m.cpu() for n, m in masks.items()} for key, masks in out.items()}


def ddp_rank(rank: int, world: int, backend: str, folder: str) -> None:
    device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    if backend == "nccl":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend, init_method=f"file://{folder}/init", rank=rank, world_size=world
    )
    try:
        results = ddp_results(ddp_batches(rank, device), device)
        torch.save(results, os.path.join(folder, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def check_ddp(device: torch.device) -> None:
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    backend, world = ("nccl", gpus) if gpus >= 2 else ("gloo", 2)
    where = f"{world} GPUs" if backend == "nccl" else "2 CPU processes"
    say(f"\n### DDP over {backend} ({where}), {DDP_PER_RANK} MNIST digits per rank\n")
    if backend == "gloo" and device.type == "cuda":
        say("(one GPU: the gloo CPU check stands; tests/test_distributed.py runs the same)")
    with tempfile.TemporaryDirectory() as folder:
        mp.spawn(ddp_rank, args=(world, backend, folder), nprocs=world, join=True)
        ranks = [torch.load(f"{folder}/rank{r}.pt", weights_only=True) for r in range(world)]
    first = torch.device("cuda", 0) if backend == "nccl" else torch.device("cpu")
    single = ddp_results([b for r in range(world) for b in ddp_batches(r, first)], first)
    for key, masks in ranks[0].items():
        same = all(torch.equal(other[key][n], m) for other in ranks[1:] for n, m in masks.items())
        differing = sum(int((single[key][n] != m).sum()) for n, m in masks.items())
        total = sum(m.numel() for m in masks.values())
        check(same, f"{key}: masks equal on all {world} ranks")
        check(
            differing <= max(4, total // 1000),
            f"{key}: {differing} of {total} entries differ from one process scoring all data",
        )


# ---------------------------------------------------------------------------------------
# Timings.


def mask_step_rows(device: torch.device) -> list[list[str]]:
    """The fused re-zeroing after an optimiser step, against the step itself."""
    rows = []
    x, y = data(256, dtype=torch.float32)
    x, y = x.to(device), y.to(device)
    for label, build in MODELS:
        model = build(seed=0).to(device)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        gp.apply_masks(model, gp.global_masks(gp.score(model, "magnitude"), SPARSITY))
        step = timed(optimizer.step, 20, device=device)
        enforce = timed(lambda m=model: gp.enforce_masks(m), 20, device=device)
        rows.append([label, fmt_seconds(step), fmt_seconds(enforce), f"{enforce / step:.2f}×"])
    return rows


def timings(
    device: torch.device, quick: bool, sizes=(10_000_000, 50_000_000), epoch_samples=None
) -> str:
    sections = []
    rows = []
    for total in sizes[:1] if quick else sizes:
        scores = {
            n: s.to(device)
            for n, s in layer_scores(total, torch.Generator().manual_seed(0)).items()
        }
        # kthvalue on one huge CUDA vector is known to be very slow: timed at 10M only.
        skip = ("kthvalue",) if total > 10_000_000 and device.type == "cuda" else ()
        t = selection_times(scores, repeats=5, device=device, skip=skip)
        ours = t["ours_masks"]
        rows.append(
            [f"{total / 1e6:g}M", fmt_seconds(t["ours_masks"]), fmt_seconds(t["stream"])]
            + [
                "skipped" if math.isnan(t[k]) else f"{t[k] / ours:.1f}×"
                for k in ("topk", "kthvalue", "sort", "global_unstructured")
            ]
            + [f"{ours / t['stream']:.1f}×"]
        )
    sections.append(
        "Selection (ratio = that op ÷ our `global_masks`; last column = ours ÷ one `sum`)\n\n"
        + markdown_table(
            [
                "scores",
                "our `global_masks`",
                "`sum`",
                "`topk`",
                "`kthvalue`",
                "`sort`",
                "`global_unstructured`",
                "ours ÷ pass",
            ],
            rows,
        )
    )
    rows = []
    x, y = data(256, dtype=torch.float32)
    x, y = x.to(device), y.to(device)
    for label, build in MODELS:
        model = build(seed=0).to(device)
        plain = timed(lambda m=model: plain_step(m, x, y), 20, device=device)
        ours = timed(lambda m=model: gp.gradient_stats(m, [(x, y)]), 20, device=device)
        vmapped = timed(lambda m=model: vmap_stats(m, x, y), 5, device=device)
        rows.append([label, fmt_seconds(plain), f"{ours / plain:.2f}×", f"{vmapped / plain:.1f}×"])
    sections.append(
        "Gradient statistics, batch 256 (ratio to forward+backward)\n\n"
        + markdown_table(["model", "forward+backward", "ours", "vmap(grad)"], rows)
    )
    sections.append(
        "Mask step: `gp.enforce_masks` (one fused multiply over all layers) after an SGD "
        "step with momentum, 90% masked\n\n"
        + markdown_table(
            ["model", "optimizer.step", "enforce_masks", "ratio"], mask_step_rows(device)
        )
    )
    rows = []
    epoch_samples = epoch_samples or (8192 if quick else 30_000)
    xs, ys = data(epoch_samples, seed=1, dtype=torch.float32)
    xs, ys = xs.to(device), ys.to(device)
    for label, build in MODELS:
        dense, masked = build(seed=0).to(device), build(seed=0).to(device)
        dense_opt = torch.optim.SGD(dense.parameters(), lr=0.01, momentum=0.9)
        masked_opt = torch.optim.SGD(masked.parameters(), lr=0.01, momentum=0.9)
        gp.apply_masks(masked, gp.global_masks(gp.score(masked, "magnitude"), SPARSITY), masked_opt)
        d = sorted(epoch_seconds(dense, dense_opt, xs, ys, device) for _ in range(3))[1]
        m = sorted(epoch_seconds(masked, masked_opt, xs, ys, device) for _ in range(3))[1]
        rows.append([label, fmt_seconds(d), fmt_seconds(m), f"{m / d:.3f}×"])
    sections.append(
        f"Training epoch ({len(xs):,} samples), 90% masked vs dense\n\n"
        + markdown_table(["model", "dense", "masked", "ratio"], rows)
    )
    return "\n\n".join(sections)


def available(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()
    if device.type == "mps":
        return torch.backends.mps.is_available()
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--device", default="cuda", help="cuda (default), cuda:1, mps, or cpu for a dry run"
    )
    parser.add_argument(
        "--cpu", action="store_true", help="smoke run on the CPU: small sizes, quick timings"
    )
    parser.add_argument("--quick", action="store_true", help="10M scores only and a short epoch")
    parser.add_argument("--no-timings", action="store_true", help="correctness checks only")
    parser.add_argument("--no-ddp", action="store_true", help="skip the DDP check")
    parser.add_argument("--out", type=Path, help="markdown results (default docs/results/gpu/)")
    args = parser.parse_args(argv)
    device = torch.device("cpu" if args.cpu else args.device)
    if not available(device):
        print(
            f"gpu_check: no {device} device is available here, so nothing was checked. "
            "Run it on a machine with that GPU, or pass --cpu for a smoke run.",
            file=sys.stderr,
        )
        return 2
    if device.type == "cuda":
        # Full-precision matmuls, so float64 checks compare like with like.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    out = args.out or Path(__file__).resolve().parent.parent / "docs/results/gpu" / (
        "cpu-smoke.md" if args.cpu else f"{device.type}.md"
    )
    command = "python benchmarks/gpu_check.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    say(f"## `{command.strip()}`\n")
    details = machine_details(str(device))
    if device.type == "cuda":
        details["gpus"] = str(torch.cuda.device_count())
    for key, value in details.items():
        say(f"- {key}: {value}")
    check_selection(device, (1_000, 300_000) if args.cpu else (1_000, 300_000, 5_000_000))
    check_models(device)
    check_obs(device)
    check_dtypes(device)
    if not args.no_ddp:
        check_ddp(device)
    if not args.no_timings:
        sizes = (1_000_000,) if args.cpu else (10_000_000, 50_000_000)
        samples = 2048 if args.cpu else None
        say("\n### Timings\n\n" + timings(device, args.quick or args.cpu, sizes, samples))
    if failures:
        say(f"\n{len(failures)} check(s) FAILED: " + "; ".join(failures))
    else:
        say("\nall checks passed")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(report) + "\n")
    print(f"wrote {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
