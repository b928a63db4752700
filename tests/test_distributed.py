"""DDP: two gloo processes on the CPU, each scoring its own shard of real MNIST, get masks
that are exactly equal to each other, and equal to one process scoring both shards up to
ties at the threshold that the order of float additions can flip.

Why the two can differ at all: a rank sums its two batches, (b0 + b1), and the all-reduce
adds the ranks' sums, (b0 + b1) + (b2 + b3); one process sums ((b0 + b1) + b2) + b3. The
results differ by a few ulps, so two scores equal to a few ulps can swap places, and only
when they straddle the threshold does a mask entry change. The test asserts that every
entry that differs has a score within 1e-5 (relative) of the threshold, never elsewhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import gradprune_lite as gp
from gradprune_lite.core.distributed import all_reduce_sums, is_distributed

WORLD = 2
PER_RANK = 256
BATCH = 128
SPARSITY = 0.9
CRITERIA = ("gradient", "taylor", "snip", "fisher", "grasp", "synflow")


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)
    )


def _shards() -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """Rank r's batches: digits r·PER_RANK … (r+1)·PER_RANK − 1 in batches of BATCH."""
    digits = gp.mnist("train", limit=WORLD * PER_RANK, verbose=False, download=False)
    shards = []
    for rank in range(WORLD):
        start = rank * PER_RANK
        shards.append(
            [
                (digits.images[i : i + BATCH], digits.labels[i : i + BATCH])
                for i in range(start, start + PER_RANK, BATCH)
            ]
        )
    return shards


def _results(batches) -> dict:
    """Everything a rank computes: counts, scores, masks, and the models gp.prune leaves."""
    model = _model()
    out = {"count": gp.gradient_stats(model, batches)["1.weight"].count}
    for criterion in CRITERIA:
        scores = gp.score(model, criterion, batches)
        out[criterion] = (scores, gp.global_masks(scores, SPARSITY))
    pruned = _model()
    masks = gp.prune(pruned, "taylor", SPARSITY, batches, rounds=2)
    out["prune taylor"] = (gp.score(_model(), "taylor", batches), masks)
    obs_model = _model()
    out["prune obs"] = (
        None,
        gp.prune(obs_model, "obs", 0.5, batches, steps=2, block_size=16),
    )
    out["obs weights"] = {n: w.detach().clone() for n, w in gp.prunable_weights(obs_model).items()}
    return out


def _rank_main(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        assert is_distributed()
        torch.save(_results(_shards()[rank]), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _differing_entries(masks_a, masks_b) -> int:
    return sum(int((masks_a[n] != masks_b[n]).sum()) for n in masks_a)


def _threshold(scores) -> float:
    flat = torch.cat([s.flatten() for s in scores.values()])
    return float(gp.kth_smallest([flat], round(SPARSITY * flat.numel())))


def test_two_gloo_ranks_get_identical_masks_equal_to_one_process(tmp_path):
    mp.spawn(_rank_main, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    shards = _shards()
    single = _results([batch for shard in shards for batch in shard])

    assert ranks[0]["count"] == ranks[1]["count"] == single["count"] == WORLD * PER_RANK
    for key in (*CRITERIA, "prune taylor", "prune obs"):
        masks = [r[key][1] for r in ranks]
        for name in masks[0]:
            assert torch.equal(masks[0][name], masks[1][name]), f"{key}: ranks differ at {name}"
    for name, weight in ranks[0]["obs weights"].items():
        assert torch.equal(weight, ranks[1]["obs weights"][name]), f"obs moved {name} differently"

    for key in (*CRITERIA, "prune taylor"):
        scores, masks = single[key]
        differing = _differing_entries(ranks[0][key][1], masks)
        if differing:
            # Only ties to a few ulps at the threshold may flip (see the module docstring).
            threshold = _threshold(scores)
            for name, mask in masks.items():
                flipped = scores[name][mask != ranks[0][key][1][name]]
                assert torch.allclose(flipped, torch.full_like(flipped, threshold), rtol=1e-5), key
        assert differing <= 4, f"{key}: {differing} mask entries differ from one process"
    obs_differing = _differing_entries(ranks[0]["prune obs"][1], single["prune obs"][1])
    total = sum(m.numel() for m in single["prune obs"][1].values())
    # obs moves the weights and re-ranks them after each step, so one flipped tie can
    # change a few later choices; still a tiny share of the weights.
    assert obs_differing <= total // 1000, f"obs: {obs_differing} of {total} entries differ"


def test_all_reduce_sums_is_a_no_op_without_a_process_group():
    tensors = [torch.arange(3.0)]
    assert all_reduce_sums(tensors, [5, 0]) == [5, 0]
    assert torch.equal(tensors[0], torch.arange(3.0))
    assert not is_distributed()


def test_the_readme_ddp_recipe_runs_under_torchrun_and_keeps_ranks_identical(tmp_path):
    # The README's command, `torchrun --standalone --nproc_per_node=2 scripts/ddp_prune.py`,
    # here through `python -m torch.distributed.run` (what `torchrun` runs), on 512 digits.
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node=2", str(root / "scripts" / "ddp_prune.py"), "--limit", "512"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    result = subprocess.run(
        command, capture_output=True, text=True, env=environment, cwd=tmp_path, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "sparsity 0.9000" in result.stdout and "identical on all ranks: True" in result.stdout
