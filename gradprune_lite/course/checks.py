"""Self-checks for the coursework exercises in ``notebooks/exercises/``.

Each ``check_*`` function takes the student's function, runs it on small made-up inputs,
compares the result with the library's own implementation (an independent reference the
student does not write) and ``assert``s with a message that names the likely mistake.
A check returns ``True`` when everything holds, so a notebook cell can end with it.

Checks only raise ``AssertionError`` (never ``NotImplementedError``), so nbval and pytest
report them the same way whether the stub is unsolved or the answer is wrong.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..core.criteria import score
from ..core.masks import remove_masks
from ..core.selection import global_masks, layerwise_masks
from ..core.stats import gradient_stats

_NOT_DONE = "{name} still raises NotImplementedError: replace the stub with your code."


def _call(function: Callable, name: str, *args):
    """Call the student's function, turning an unsolved stub into a clear AssertionError."""
    try:
        return function(*args)
    except NotImplementedError:
        raise AssertionError(_NOT_DONE.format(name=name)) from None


def _tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))


def _tiny_batches(seed: int = 0, batches: int = 2, size: int = 16):
    generator = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(size, 12, generator=generator), torch.randint(3, (size,), generator=generator))
        for _ in range(batches)
    ]


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-7)


def _check_same_keys(result, expected, what: str) -> None:
    assert isinstance(result, dict), (
        f"{what} should return a dict name -> tensor, got {type(result).__name__}."
    )
    assert set(result) == set(expected), (
        f"{what} should return one entry per prunable weight {sorted(expected)}, got {sorted(result)}."
    )
    for name in expected:
        assert isinstance(result[name], torch.Tensor), f"{what}[{name!r}] is not a tensor."
        assert result[name].shape == expected[name].shape, (
            f"{what}[{name!r}] has shape {tuple(result[name].shape)}; it must be shaped like "
            f"the weight, {tuple(expected[name].shape)}."
        )


def check_taylor_score(taylor_score: Callable) -> bool:
    """Check ``taylor_score(weights, stats) -> dict name → |w·ḡ|``.

    ``weights``: dict name → weight tensor; ``stats``: dict name → ``gp.GradientStats``.
    Reference: ``gp.score(model, "taylor", batches)``.
    """
    model, batches = _tiny_model(), _tiny_batches()
    stats = gradient_stats(model, batches)
    weights = {name: p.detach() for name, p in model.named_parameters() if name in stats}
    expected = score(model, "taylor", batches)
    result = _call(taylor_score, "taylor_score", weights, stats)
    _check_same_keys(result, expected, "taylor_score")
    for name, want in expected.items():
        got, w, g = result[name].detach(), weights[name], stats[name].mean
        if _close(got, want):
            continue
        assert not _close(got, w * g) and not _close(got, -w * g), (
            f"{name}: you returned ±w·ḡ. The score is the size of the loss change, so take "
            "its absolute value: |w·ḡ|."
        )
        assert not _close(got, g.abs()), f"{name}: that is |ḡ|; multiply by the weight w too."
        assert not _close(got, w.abs()), (
            f"{name}: that is |w| (magnitude); multiply by the mean gradient stats[name].mean."
        )
        assert not _close(got, (w * stats[name].sq_mean.sqrt()).abs()), (
            f"{name}: you used sqrt(E[g²]); the first-order Taylor term uses the mean gradient ḡ."
        )
        assert not _close(got, 0.5 * w.square() * stats[name].sq_mean), (
            f"{name}: that is ½w²E[g²], the second-order (Fisher) term; we want the first-order |w·ḡ|."
        )
        raise AssertionError(
            f"{name}: taylor_score differs from |w·ḡ| (max difference "
            f"{float((got - want).abs().max()):.3g}). Use weights[name] and stats[name].mean."
        )
    return True


def check_global_threshold(global_threshold: Callable) -> bool:
    """Check ``global_threshold(scores, sparsity) -> dict name → bool mask`` (True = keep).

    One threshold over all layers, found by selection (``kthvalue``) rather than a sort.
    Reference: ``gp.global_masks``.
    """
    generator = torch.Generator().manual_seed(1)
    # Layers with different score scales, so one threshold per layer gives a different answer.
    scores = {
        "fc1.weight": torch.rand(30, 20, generator=generator),
        "fc2.weight": 3 * torch.rand(10, 30, generator=generator),
        "fc3.weight": 0.5 * torch.rand(4, 10, generator=generator),
    }
    total = sum(s.numel() for s in scores.values())
    for sparsity in (0.5, 0.9, 0.37):
        expected = global_masks(scores, sparsity)
        result = _call(global_threshold, "global_threshold", scores, sparsity)
        _check_same_keys(result, expected, "global_threshold")
        result = {name: m.bool() for name, m in result.items()}
        if all(torch.equal(result[n], expected[n]) for n in expected):
            continue
        pruned = sum(int((~m).sum()) for m in result.values())
        want = round(sparsity * total)
        kept_low = all(torch.equal(result[n], ~expected[n]) for n in expected)
        assert not kept_low, "You kept the lowest scores: True means keep, so keep scores > t."
        per_layer = layerwise_masks(scores, sparsity)
        assert not all(torch.equal(result[n], per_layer[n]) for n in expected), (
            "You used one threshold per layer. Concatenate all layers' scores and select "
            "the k-th smallest once, over all of them."
        )
        assert pruned != want + 1, (
            f"At sparsity {sparsity} you pruned {pruned}, one too many: the k-th smallest "
            "score t itself is pruned, everything above it is kept (keep = score > t)."
        )
        assert pruned != want - 1, (
            f"At sparsity {sparsity} you pruned {pruned}, one too few: k = round(sparsity·N) "
            "is 1-based in torch.kthvalue, so prune score <= t."
        )
        raise AssertionError(
            f"At sparsity {sparsity} you pruned {pruned} of {total} weights; "
            f"expected {want} with a single global threshold."
        )
    keep_all = _call(global_threshold, "global_threshold", scores, 0.0)
    assert all(bool(m.all()) for m in keep_all.values()), (
        "At sparsity 0 nothing may be pruned (k = 0: torch.kthvalue needs k >= 1, so handle it)."
    )
    return True


def check_mask_hook(keep_pruned_at_zero: Callable) -> bool:
    """Check ``keep_pruned_at_zero(model, masks, optimizer)``.

    After the call, pruned weights (mask False) must be zero and stay zero through SGD
    steps with momentum, and the optimiser's momentum must be zero there too.
    """
    model = _tiny_model(seed=2)
    params = dict(model.named_parameters())
    generator = torch.Generator().manual_seed(3)
    masks = {
        name: torch.rand(p.shape, generator=generator) > 0.5
        for name, p in params.items()
        if name.endswith("weight")
    }
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    # A step before pruning fills the momentum buffers, which is what revives weights.
    inputs, targets = _tiny_batches(seed=4, batches=1)[0]
    nn.functional.cross_entropy(model(inputs), targets).backward()
    optimizer.step()
    optimizer.zero_grad()
    _call(keep_pruned_at_zero, "keep_pruned_at_zero", model, masks, optimizer)
    for name, mask in masks.items():
        assert bool((params[name][~mask] == 0).all()), (
            f"{name}: pruned weights are not zero right after your call; multiply the weight by "
            "its mask (in place, under torch.no_grad())."
        )
    for step, (inputs, targets) in enumerate(_tiny_batches(seed=5, batches=3)):
        nn.functional.cross_entropy(model(inputs), targets).backward()
        optimizer.step()
        optimizer.zero_grad()
        for name, mask in masks.items():
            assert bool((params[name][~mask] == 0).all()), (
                f"{name}: pruned weights came back after optimiser step {step + 1}. Momentum "
                "revives them: register a hook with optimizer.register_step_post_hook that "
                "re-zeroes them after every step."
            )
    for name, mask in masks.items():
        momentum = optimizer.state[params[name]].get("momentum_buffer")
        assert momentum is None or bool((momentum[~mask] == 0).all()), (
            f"{name}: the momentum buffer is not zero at pruned entries, so the first step "
            "without your hook would revive them. Zero optimizer.state[param]['momentum_buffer'] "
            "at pruned entries in the hook as well."
        )
    remove_masks(model)
    return True


def check_largest_sparsity(largest_sparsity: Callable) -> bool:
    """Check ``largest_sparsity(error_at, levels, limit) -> float | None``.

    ``error_at(s)`` gives the test error in percent at sparsity ``s``; the answer is the
    largest of ``levels`` whose error is below ``limit`` (None if there is none). The error
    is not assumed monotone: a dip at high sparsity counts.
    """
    levels = [0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99]
    curves = {
        "rising": ({0.0: 1.5, 0.5: 1.5, 0.8: 1.6, 0.9: 1.8, 0.95: 2.3, 0.98: 3.0, 0.99: 9.0}, 0.9),
        "with a dip": ({0.0: 1.9, 0.5: 1.7, 0.8: 2.1, 0.9: 1.9, 0.95: 2.5, 0.98: 4.0, 0.99: 8.0}, 0.9),
        "never under": ({s: 2.5 for s in levels}, None),
        "always under": ({s: 1.0 for s in levels}, 0.99),
        "exactly at the limit": ({0.0: 1.0, 0.5: 1.0, 0.8: 2.0, 0.9: 2.0, 0.95: 2.0,
                                  0.98: 3.0, 0.99: 3.0}, 0.5),
    }  # fmt: skip
    for label, (errors, want) in curves.items():
        got = _call(largest_sparsity, "largest_sparsity", errors.__getitem__, list(levels), 2.0)
        if got == want:
            continue
        assert not (want is None and got is not None), (
            f"curve {label!r}: no level has error < 2%, so return None, not {got!r}."
        )
        assert not (label == "exactly at the limit" and got == 0.95), (
            "An error of exactly 2% is not *under* 2%: use error < limit, not <=."
        )
        assert not (label == "with a dip" and got == 0.5), (
            "You stopped at the first level over the limit; the error can dip again, so "
            "check every level and keep the largest one under the limit."
        )
        raise AssertionError(f"curve {label!r}: expected {want!r}, got {got!r}.")
    shuffled = [0.9, 0.0, 0.99, 0.5]
    got = _call(
        largest_sparsity, "largest_sparsity", curves["rising"][0].__getitem__, shuffled, 2.0
    )
    assert got == 0.9, f"With levels given out of order {shuffled} the answer is 0.9, got {got!r}."
    return True
