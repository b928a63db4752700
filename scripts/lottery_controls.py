"""Which random controls of a lottery ticket train? The experiment behind exercise 10.

For LeNet-300-100 trained one pass over 6,000 digits (lr 0.05, momentum 0.9, as in
ex10), prune 90% and 97% by global magnitude, then retrain with the same budget from:
the ticket (the survivors' initial values); the default initialisation of another seed
("default"); normal draws at the survivors' own per-layer std ("surv_std"); normal draws
at σ·√(fan_in/k_i) per unit, σ the layer's initial std and k_i the unit's surviving inputs
("fanin"); the ticket's surviving values shuffled within each layer ("shuffle"); the
ticket's signs with shuffled magnitudes ("sign"); the ticket's signs with one constant
magnitude per layer ("const_sign", Zhou et al. 2019); the ticket with its signs flipped
("flip_sign"). Controls keep the ticket's biases except "default". Prints validation
error (%) for control draws 100, 101, 102.

Usage: python scripts/lottery_controls.py [INIT_SEEDS, comma-separated; default 0]
(about 4 min per initial seed on one core). Output of seeds 0 and 1 on 5 December 2026:
docs/results/lottery_controls.txt.
"""

import copy
import sys
import time

import torch

import gradprune_lite as gp


def build(state, masks):
    model = gp.models.lenet_300_100()
    model.load_state_dict(state)
    gp.apply_masks(model, masks)
    return model


def main(init_seeds):
    torch.set_num_threads(1)
    train, validation, _ = gp.splits()
    digits = train.take(6_000)
    for init_seed in init_seeds:
        init_state = copy.deepcopy(gp.models.lenet_300_100(seed=init_seed).state_dict())
        dense = gp.models.lenet_300_100(seed=init_seed)
        start = time.time()
        gp.fit(dense, digits, epochs=1, lr=0.05, seed=0, progress=False)
        error = gp.evaluate(dense, validation).error
        print(f"init {init_seed} dense {error:.2f}% fit {time.time() - start:.1f}s", flush=True)
        for sparsity in (0.9, 0.97):
            masks = gp.global_masks(gp.score(dense, "magnitude"), sparsity)
            for n, m in masks.items():
                print(
                    f"  {sparsity} {n} kept {m.float().mean():.3f} "
                    f"fanin {m.sum(1).float().mean():.1f}/{m.shape[1]} "
                    f"init std {init_state[n].std():.4f} surv std {init_state[n][m].std():.4f}"
                )
            errors = {}

            def run(label, model, errors=errors):
                gp.fit(model, digits, epochs=1, lr=0.05, seed=0, progress=False)
                errors.setdefault(label, []).append(gp.evaluate(model, validation).error)

            run("ticket", build(init_state, masks))
            for control_seed in (100, 101, 102):
                generator = torch.Generator().manual_seed(control_seed)
                default = gp.models.lenet_300_100(seed=control_seed)
                gp.apply_masks(default, masks)
                run("default", default)
                kinds = ("surv_std", "fanin", "shuffle", "sign", "const_sign", "flip_sign")
                states = {kind: copy.deepcopy(init_state) for kind in kinds}
                for n, mask in masks.items():
                    w0 = init_state[n]
                    survivors = w0[mask]
                    z = torch.randn(w0.shape, generator=generator)
                    states["surv_std"][n] = z * survivors.std() * mask
                    kept_inputs = mask.sum(1, keepdim=True).clamp(min=1).float()
                    states["fanin"][n] = z * w0.std() * (w0.shape[1] / kept_inputs).sqrt() * mask
                    order = torch.randperm(len(survivors), generator=generator)
                    shuffled = torch.zeros_like(w0)
                    shuffled[mask] = survivors[order]
                    states["shuffle"][n] = shuffled
                    order = torch.randperm(len(survivors), generator=generator)
                    magnitudes = torch.zeros_like(w0)
                    magnitudes[mask] = survivors.abs()[order]
                    states["sign"][n] = magnitudes * w0.sign()
                    states["const_sign"][n] = survivors.abs().mean() * w0.sign() * mask
                    states["flip_sign"][n] = w0.abs() * -w0.sign() * mask
                for kind, state in states.items():
                    run(kind, build(state, masks))
            line = "  ".join(f"{k} " + "/".join(f"{e:.2f}" for e in v) for k, v in errors.items())
            print(f" {sparsity}: {line}", flush=True)


if __name__ == "__main__":
    main([int(s) for s in sys.argv[1].split(",")] if len(sys.argv) > 1 else [0])
