"""Check every kernel's CUDA result against the CPU result, then time the same ratios on GPU.

    python benchmarks/gpu_check.py                # on a CUDA machine, about 1-3 minutes
    python benchmarks/gpu_check.py --device cpu   # dry run: CPU against CPU, to test the script

Exits 0 when every check passes, 1 on any mismatch, and 2 (with a message) when the
requested CUDA device does not exist. The CPU test suite never needs this script.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

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


def check(ok: bool, what: str) -> None:
    print(f"  {'ok  ' if ok else 'FAIL'} {what}", flush=True)
    if not ok:
        failures.append(what)


def tied_scores(total: int, seed: int) -> dict[str, torch.Tensor]:
    """Scores with heavy ties, negatives and ±0, split over a few layers."""
    scores = layer_scores(total, torch.Generator().manual_seed(seed))
    return {name: (s * 8).round() - 4 for name, s in scores.items()}


def check_selection(device: torch.device) -> None:
    print("selection: kth_smallest, global_masks, layerwise_masks", flush=True)
    for total, seed in ((1_000, 0), (300_000, 1), (5_000_000, 2)):
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


def data(batch: int, seed: int = 0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 1, 28, 28, generator=generator, dtype=dtype)
    return x, torch.randint(10, (batch,), generator=generator)


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a.cpu(), b.cpu(), rtol=1e-6, atol=1e-9)


def check_models(device: torch.device) -> None:
    # float64 on both sides, so CPU and GPU agree to round-off whatever the kernels' order.
    x, y = data(64)
    for label, build in MODELS:
        print(f"{label}: gradient_stats, scores, apply/enforce masks", flush=True)
        cpu_model = build(seed=0).double()
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
    x, y = data(128)
    for label, build in MODELS:
        print(f"{label}: obs prune (OBS update, 2 steps), CPU against {device}", flush=True)
        cpu_model = build(seed=0).double()
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


def timings(device: torch.device, quick: bool) -> str:
    sections = []
    rows = []
    for total in (10_000_000,) if quick else (10_000_000, 50_000_000):
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
    rows = []
    xs, ys = data(8192 if quick else 30_000, seed=1, dtype=torch.float32)
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
        "Training epoch, 90% masked vs dense\n\n"
        + markdown_table(["model", "dense", "masked", "ratio"], rows)
    )
    return "\n\n".join(sections)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--device", default="cuda", help="cuda (default), cuda:1, or cpu for a dry run"
    )
    parser.add_argument("--quick", action="store_true", help="10M scores only and a short epoch")
    parser.add_argument("--no-timings", action="store_true", help="correctness checks only")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA device is available here, so nothing was checked. "
            "Run it on a machine with an NVIDIA GPU, or pass --device cpu for a dry run.",
            file=sys.stderr,
        )
        return 2
    if device.type == "cuda":
        # Full-precision matmuls, so float64 checks compare like with like.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    print("\n".join(f"{k}: {v}" for k, v in machine_details(str(device)).items()), flush=True)
    check_selection(device)
    check_models(device)
    check_obs(device)
    if not args.no_timings:
        print("\n" + timings(device, args.quick))
    if failures:
        print(f"\n{len(failures)} check(s) FAILED: " + "; ".join(failures))
        return 1
    print("\nall checks passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
