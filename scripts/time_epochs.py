"""Time one training epoch, dense against pruned, and compare checkpoint sizes.

Usage:
    python scripts/time_epochs.py [--threads 2] [--models lenet_300_100,lenet5]

Prints a markdown table for docs/RESULTS.md. Each model trains one warm-up epoch on
2,000 digits, then one timed epoch on the full training set (GRADPRUNE_DATA), dense and
at 98% sparsity (magnitude masks held by gp.fit). Checkpoint sizes are those of gp.save
against torch.save(state_dict) at each sparsity.
"""

from __future__ import annotations

import argparse

import torch

import gradprune_lite as gp


def pruned_copy(model, sparsity):
    scores = {n: w.abs() for n, w in gp.prunable_weights(model).items()}
    gp.apply_masks(model, gp.global_masks(scores, sparsity))
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default="lenet_300_100,lenet5")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train = gp.mnist("train")
    print(f"\n{args.threads} thread(s); one epoch = {len(train):,} digits, batch 128\n")
    print("| model | weights kept | seconds per epoch | sparse checkpoint | dense checkpoint |")
    print("|---|---|---|---|---|")
    for name in args.models.split(","):
        for sparsity in (0.0, 0.9, 0.98, 0.99):
            model = gp.models.MODELS[name](seed=0)
            if sparsity:
                pruned_copy(model, sparsity)
            gp.fit(model, train.take(2000), epochs=1, lr=0.05, progress=False)  # warm-up
            seconds = gp.fit(model, train, epochs=1, lr=0.05, progress=False)["seconds"][0]
            sizes = gp.checkpoint_sizes(model)
            print(
                f"| {name} | {100 * (1 - sparsity):g}% | {seconds:.2f} | "
                f"{sizes['sparse_bytes'] / 1024:.0f} KiB | {sizes['dense_bytes'] / 1024:.0f} KiB |"
            )


if __name__ == "__main__":
    main()
