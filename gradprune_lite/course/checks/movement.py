"""Exercise 11: movement pruning (Sanh, Wolf & Rush 2020) in the student's own training loop.

The checks judge the loop by what it did, not by how it is written. While the student's
``fine_prune`` runs on a small model, they record, at every step t,

- the weights the forward pass used, wₜ (a forward pre-hook on the model),
- the gradient of that step's backward pass, gₜ (a hook on each weight tensor),
- the weights right after each ``optimizer.step()`` (torch's global step post-hook),

and rebuild from them the reference S = −Σₜ wₜ·gₜ and every likely mistake (the sign, |g|,
|w·g|, the last step only, the weight after the step, the previous step's gradient, …).
A correct answer may differ from the reference by a positive factor (a mean over steps
instead of the sum, a learning rate folded in) and may accumulate in float64: the ranking,
which is all that pruning uses, is the same.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from ._common import call, check_same_keys, self_check
from ._tiny import tiny_batches, tiny_model

_NAMES = ("1.weight", "3.weight")
# How close a score must be to a (scaled) reference: float32 sums of a dozen steps agree
# with the float64 reference to about 1e-6; the nearest wrong answer (the weight read after
# the step) differs by a few percent on the check's model.
_RTOL = 1e-3
_LIBRARY = tuple(
    str(Path(__file__).resolve().parents[2] / "core" / f) for f in ("movement.py", "gradual.py")
)


def _cubic(step: int, final_sparsity: float, end_step: int) -> float:
    return final_sparsity * (1.0 - (1.0 - min(step / end_step, 1.0)) ** 3)


@self_check
def check_cubic_sparsity(cubic_sparsity: Callable) -> bool:
    """Check ``cubic_sparsity(step, final_sparsity, end_step) -> float``.

    Zhu & Gupta's schedule from 0 at step 0 to ``final_sparsity`` at ``end_step``, held
    after it: s_f · (1 − (1 − t/end)³).
    """
    for final, end in ((0.9, 100), (0.5, 7)):
        for step in (0, 1, end // 4, end // 2, end - 1, end, end + 5, 3 * end):
            got = float(call(cubic_sparsity, "cubic_sparsity", step, final, end))
            want = _cubic(step, final, end)
            if abs(got - want) < 1e-9:
                continue
            f = min(step / end, 1.0)
            assert abs(got - final * f) > 1e-9, (
                "Your schedule is linear; the cubic one prunes fast early: s_f·(1 − (1 − t/end)³)."
            )
            assert abs(got - final * f**3) > 1e-9, (
                "Your schedule starts slowly (s_f·(t/end)³); the cubic one is s_f·(1 − (1 − t/end)³)."
            )
            assert step <= end, (
                f"At step {step}, after end_step = {end}, the sparsity must stay at "
                f"final_sparsity = {final}, got {got:.4f}: clip t/end at 1."
            )
            raise AssertionError(
                f"cubic_sparsity({step}, {final}, {end}) = {got:.4f}, expected {want:.4f}."
            )


def _scores_and_masks(seed: int):
    generator = torch.Generator().manual_seed(seed)
    scores = {
        "a": torch.randn(6, 5, generator=generator),
        "b": 3 * torch.randn(4, generator=generator),
    }
    masks = {"a": torch.rand(6, 5, generator=generator) > 0.3, "b": torch.ones(4, dtype=torch.bool)}
    return scores, masks


def _lowest(scores: dict, alive: dict, count: int) -> dict:
    """Masks keeping all but the ``count`` lowest-scored living weights, pooled over names."""
    names = list(scores)
    flat = torch.cat([scores[n].reshape(-1).double() for n in names])
    living = torch.cat([alive[n].reshape(-1) for n in names])
    ranked = flat.masked_fill(~living, -torch.inf)
    keep = torch.zeros_like(living)
    keep[ranked.topk(flat.numel() - count).indices] = True
    parts = keep.split([scores[n].numel() for n in names])
    return {n: part.view(scores[n].shape) for n, part in zip(names, parts)}


def _mask_counts(masks: dict) -> int:
    return sum(int((~m).sum()) for m in masks.values())


@self_check
def check_movement_masks(movement_masks: Callable) -> bool:
    """Check ``movement_masks(scores, masks, sparsity) -> masks``.

    One global ranking over every name: exactly ``round(sparsity · N)`` weights pruned
    (False), the lowest *signed* scores among the living, and the weights already pruned
    (``masks`` False) stay pruned. The inputs must be left unchanged.
    """
    for seed, sparsity in ((1, 0.5), (2, 0.8), (3, 0.37)):
        scores, masks = _scores_and_masks(seed)
        before = (
            {n: s.clone() for n, s in scores.items()},
            {n: m.clone() for n, m in masks.items()},
        )
        result = call(movement_masks, "movement_masks", scores, masks, sparsity)
        check_same_keys(result, scores, "movement_masks")
        assert all(torch.equal(scores[n], before[0][n]) for n in scores) and all(
            torch.equal(masks[n], before[1][n]) for n in masks
        ), "movement_masks changed its inputs; return new masks and leave scores and masks alone."
        result = {n: torch.as_tensor(m).bool() for n, m in result.items()}
        total = sum(s.numel() for s in scores.values())
        count = round(sparsity * total)
        want = _lowest(scores, masks, count)
        if all(torch.equal(result[n], want[n]) for n in want):
            continue
        pruned = _mask_counts(result)
        assert pruned != int(sparsity * total) or pruned == count, (
            f"You pruned int(s·N) = {pruned} weights; round(s·N) = {count} is the rule here."
        )
        assert pruned == count, (
            f"At sparsity {sparsity} of N = {total}, prune exactly round(s·N) = {count} "
            f"weights in all; you pruned {pruned}."
        )
        assert all(bool(result[n][~masks[n]].logical_not().all()) for n in masks), (
            "A weight that was already pruned came back: rank the pruned weights below every "
            "living one (e.g. set their score to -inf) so they stay pruned."
        )
        highest = _lowest({n: -s for n, s in scores.items()}, masks, count)
        assert not all(torch.equal(result[n], highest[n]) for n in want), (
            "You pruned the highest scores; prune the lowest S (True in a mask = keep)."
        )
        absolute = _lowest({n: s.abs() for n, s in scores.items()}, masks, count)
        assert not all(torch.equal(result[n], absolute[n]) for n in want), (
            "You ranked by |S|; movement is signed: weights moving towards zero (S < 0) go first."
        )
        per_layer = [int((~result[n]).sum()) == round(sparsity * scores[n].numel()) for n in scores]
        assert not all(per_layer), (
            "You pruned each tensor to the sparsity separately; rank all weights together."
        )
        raise AssertionError(
            f"At sparsity {sparsity} your masks do not prune the lowest-scored living weights."
        )


@contextlib.contextmanager
def _library_calls():
    """Record whether the library's movement or gradual pruning code runs in the block."""
    seen = []
    previous = sys.getprofile()

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_filename in _LIBRARY:
            seen.append(frame.f_code.co_name)

    sys.setprofile(profile)
    try:
        yield seen
    finally:
        sys.setprofile(previous)


class _Recording:
    """What happened to the weights ``names`` of ``model`` at each training step."""

    def __init__(self, model: nn.Module, names: tuple, batches: list):
        self.model, self.names, self.batches = model, names, batches
        self.used: list[dict] = []  # wₜ, as the forward pass read them
        self.inputs: list[torch.Tensor] = []
        self.grads = {name: [] for name in names}  # gₜ of each backward pass
        self.stepped: list[dict] = []  # the weights right after each optimizer.step()
        self._handles = []

    def _weights(self) -> dict:
        return {n: self.model.get_parameter(n).detach().clone() for n in self.names}

    def __enter__(self):
        def before_forward(module, args):
            self.used.append(self._weights())
            self.inputs.append(args[0] if args else None)

        self._handles.append(self.model.register_forward_pre_hook(before_forward))
        for name in self.names:
            weight = self.model.get_parameter(name)
            self._handles.append(
                weight.register_hook(lambda g, n=name: self.grads[n].append(g.detach().clone()))
            )
        self._handles.append(
            register_optimizer_step_post_hook(lambda *_: self.stepped.append(self._weights()))
        )
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()

    def check_steps(self) -> int:
        steps = len(self.batches)
        assert len(self.used) == steps, (
            f"Your loop ran the model {len(self.used)} times for {steps} batches: one forward "
            "pass per batch, in order, and no other."
        )
        assert all(len(g) == steps for g in self.grads.values()), (
            f"Your loop ran backward {len(self.grads[self.names[0]])} times for {steps} "
            "batches: one backward pass per batch."
        )
        for t, (inputs, _) in enumerate(self.batches):
            assert self.inputs[t] is inputs or (
                isinstance(self.inputs[t], torch.Tensor) and torch.equal(self.inputs[t], inputs)
            ), f"Step {t} did not use batch {t}: take the batches in the given order."
        return steps


def _stack(per_step: list[dict]) -> dict:
    return {n: torch.stack([s[n].double() for s in per_step]) for n in per_step[0]}


def _vector(scores: dict, names) -> torch.Tensor:
    return torch.cat([torch.as_tensor(scores[n]).detach().double().reshape(-1) for n in names])


def _proportional(got: torch.Tensor, want: torch.Tensor) -> bool:
    """got = c·want for one c > 0 (a mean instead of a sum, a learning rate, float64)."""
    norm = float(want @ want)
    if norm == 0.0:
        return bool((got == 0).all())
    c = float(got @ want) / norm
    return c > 0 and float((got - c * want).norm()) <= _RTOL * c * norm**0.5


def _mistakes(record: _Recording, final: dict, end: int, every: int) -> list[tuple[dict, str]]:
    """Every likely wrong score with its one-line message, built from what ran."""
    w, g = _stack(record.used), {n: torch.stack(v).double() for n, v in record.grads.items()}
    after = {n: torch.cat([w[n][1:], final[n].double()[None]]) for n in w}
    previous = {n: torch.cat([torch.zeros_like(g[n][:1]), g[n][:-1]]) for n in g}
    piled = {n: g[n].cumsum(0) for n in g}
    first = {n: w[n][0] for n in w}
    last = {n: final[n].double() for n in w}
    since = max(p for p in range(0, end + 1, every) if p < len(record.used)) + 1
    same_weight = "movement adds wₜ·gₜ at every step, with the weight of that step."
    return [
        (
            {n: (w[n] * g[n]).sum(0) for n in w},
            "Sign error: S = −Σ w·g (a weight moving away from zero has w·g < 0); you summed +w·g.",
        ),
        (
            {n: g[n].abs().sum(0) for n in w},
            "You summed |g|; movement multiplies the gradient by the weight: S = −Σ w·g, signed.",
        ),
        (
            {n: (w[n] * g[n]).abs().sum(0) for n in w},
            "You summed |w·g|, the Taylor score; movement keeps the sign: S = −Σ w·g.",
        ),
        (
            {n: -(w[n][-1] * g[n][-1]) for n in w},
            "Only the last step is in your scores: add −w·g to the running total every step.",
        ),
        (
            {n: -(after[n] * g[n]).sum(0) for n in w},
            "You read the weight after optimizer.step(); add −w·g after backward, before step().",
        ),
        (
            {n: -(w[n] * previous[n]).sum(0) for n in w},
            "Your −w·g pairs each weight with the previous step's gradient: accumulate after "
            "backward() and before optimizer.step().",
        ),
        (
            {n: -(w[n] * piled[n]).sum(0) for n in w},
            "Your gradients pile up over the steps: call optimizer.zero_grad() before each backward.",
        ),
        (
            {n: -(first[n] * g[n].sum(0)) for n in w},
            f"You used the first weights only; {same_weight}",
        ),
        (
            {n: -(last[n] * g[n].sum(0)) for n in w},
            f"You used the final weights only; {same_weight}",
        ),
        ({n: -g[n].sum(0) for n in w}, "You summed −g alone; movement is S = −Σ w·g."),
        (
            {n: -(w[n][since:] * g[n][since:]).sum(0) for n in w},
            "You restarted the scores after pruning; movement sums −w·g over the whole run.",
        ),
        (
            {n: last[n].abs() for n in w},
            "Your scores are magnitudes |w|; movement ranks by S = −Σ w·g.",
        ),
        (
            {n: last[n].square() for n in w},
            "Your scores are magnitudes w²; movement ranks by S = −Σ w·g.",
        ),
        (
            {n: first[n].abs() for n in w},
            "Your scores are magnitudes |w|; movement ranks by S = −Σ w·g.",
        ),
    ]


def _run(fine_prune: Callable, seed: int, steps: int, sparsity: float, end_step: int, every: int):
    model = tiny_model(seed=seed)
    assert all(bool((model.get_parameter(n) != 0).all()) for n in _NAMES)
    batches = tiny_batches(seed=seed + 1, batches=steps, size=16)
    with _library_calls() as library, _Recording(model, _NAMES, batches) as record:
        result = call(
            fine_prune, "fine_prune", model, batches, list(_NAMES), sparsity, 0.1, end_step, every
        )
    assert not library, (
        "You called the library's movement pruning (gp.MovementScores / gp.GradualPruner): "
        "write the accumulation and the pruning yourself."
    )
    assert isinstance(result, tuple) and len(result) == 2, "Return a tuple (scores, masks)."
    scores, masks = result
    weights = {n: model.get_parameter(n) for n in _NAMES}
    check_same_keys(scores, weights, "fine_prune's scores")
    check_same_keys(masks, weights, "fine_prune's masks")
    record.check_steps()
    final = {n: w.detach().clone() for n, w in weights.items()}
    return record, scores, {n: torch.as_tensor(m).bool() for n, m in masks.items()}, final


def _check_scores(record: _Recording, scores: dict, final: dict, end: int, every: int) -> None:
    w, g = _stack(record.used), {n: torch.stack(v).double() for n, v in record.grads.items()}
    want = _vector({n: -(w[n] * g[n]).sum(0) for n in w}, _NAMES)
    got = _vector(scores, _NAMES)
    if _proportional(got, want):
        return
    for mistake, message in _mistakes(record, final, end, every):
        assert not _proportional(got, _vector(mistake, _NAMES)), message
    raise AssertionError(
        "Your scores are not proportional to S = −Σₜ wₜ·gₜ over the training steps (one "
        "positive factor for all weights)."
    )


def _schedule_message(counts: list[int], total: int, final: float, end: int, every: int) -> str:
    """Why the pruned counts after each step do not follow the cubic schedule, or ''."""
    pruning = list(range(0, end + 1, every))

    def expected(schedule, shift):
        out = []
        for t in range(len(counts)):
            done = [p for p in pruning if p <= t - shift]
            out.append(round(schedule(done[-1]) * total) if done else 0)
        return out

    cubic = lambda t: _cubic(t, final, end)  # noqa: E731 - one-line schedules side by side
    linear = lambda t: final * min(t / end, 1.0)  # noqa: E731
    near = lambda a, b: all(abs(x - y) <= 1 for x, y in zip(a, b))  # noqa: E731
    # counts[t] is measured at the forward pass of step t (after the last prune, if any):
    # pruning after step p shows at step p + 1, pruning before the forward of p at step p.
    if near(counts, expected(cubic, 1)):
        return ""
    if near(counts, expected(cubic, 0)):
        return (
            "You pruned at the start of step t, before its gradient was in S: prune after "
            "optimizer.step() of step t, at t = 0, every, …, end_step."
        )
    if near(counts, expected(linear, 1)) or near(counts, expected(linear, 0)):
        return "Your sparsity rises linearly; raise it along the cubic schedule, cubic_sparsity."
    goal = round(final * total)
    if counts[1] >= goal - 1 or counts[0] >= goal - 1:
        return "You pruned to the final sparsity at once; raise it step by step (cubic schedule)."
    want = expected(cubic, 1)
    t = next(i for i, (x, y) in enumerate(zip(counts, want)) if abs(x - y) > 1)
    return (
        f"After step {t - 1}, {counts[t]} of {total} weights are pruned; the cubic schedule "
        f"prunes {want[t]}: prune after optimizer.step() at t = 0, every, 2·every, …, end_step."
    )


def _check_pruning(record: _Recording, masks: dict, final: dict, sparsity, end, every) -> None:
    names = _NAMES
    total = sum(final[n].numel() for n in names)
    alive = [{n: used[n] != 0 for n in names} for used in record.used]
    alive.append({n: final[n] != 0 for n in names})
    for t in range(1, len(alive)):
        back = [n for n in names if bool((alive[t][n] & ~alive[t - 1][n]).any())]
        assert not back, (
            f"Pruned weights of {back[0]} came back after step {t - 1}: hold the masks through "
            "every optimizer.step() (gp.apply_masks(model, masks, optimizer))."
        )
    counts = [sum(int((~a[n]).sum()) for n in names) for a in alive]
    goal = round(sparsity * total)
    assert abs(counts[-1] - goal) <= 1, (
        f"After training {counts[-1]} of {total} weights are pruned; final_sparsity = "
        f"{sparsity} means {goal}."
    )
    message = _schedule_message(counts, total, sparsity, end, every)
    assert not message, message
    assert all(torch.equal(masks[n], alive[-1][n]) for n in names), (
        "The masks you return are not the zero pattern of the trained model (True = kept)."
    )
    w, g = _stack(record.used), {n: torch.stack(v).double() for n, v in record.grads.items()}
    contributions = {n: -(w[n] * g[n]) for n in names}
    last_prune = 0
    for t in range(len(record.used)):
        now, then = alive[t], alive[t + 1]
        newly = counts[t + 1] - counts[t]
        if newly == 0:
            continue
        # Pruned after step t (or before the forward of step t + 1): S holds steps 0..t.
        movement = {n: contributions[n][: t + 1].sum(0) for n in names}
        if _agrees(then, _lowest(movement, now, counts[t + 1])):
            last_prune = t + 1
            continue
        stepped = record.stepped[t] if len(record.stepped) == len(record.used) else record.used[t]
        wrong = [
            (
                {n: stepped[n].abs() for n in names},
                "You pruned by magnitude |w|; prune the living weights with the lowest S = −Σ w·g.",
            ),
            (
                {n: -movement[n] for n in names},
                "You pruned the highest movement scores; prune the lowest S (True = keep).",
            ),
            (
                {n: movement[n].abs() for n in names},
                "You ranked by |S|; movement is signed: weights moving towards zero (S < 0) go first.",
            ),
            (
                {n: contributions[n][last_prune : t + 1].sum(0) for n in names},
                "You restarted the scores after pruning; movement sums −w·g over the whole run.",
            ),
        ]
        for scores, message in wrong:
            assert not _agrees(then, _lowest(scores, now, counts[t + 1])), message
        # Right within each layer, wrong across layers: each layer pruned on its own.
        own_counts = {n: int((~then[n]).sum()) for n in names}
        assert not all(
            _agrees({n: then[n]}, _lowest({n: movement[n]}, {n: now[n]}, own_counts[n]))
            for n in names
        ), "You pruned each layer to the sparsity separately; rank all weights together."
        raise AssertionError(
            f"After step {t} you pruned weights that are not the lowest S = −Σ w·g among the "
            "living ones."
        )


def _agrees(got: dict, want: dict) -> bool:
    """The same kept set, but for at most one weight (a float near-tie)."""
    return sum(int((got[n] != want[n]).sum()) for n in want) <= 2


@self_check
def check_fine_prune(fine_prune: Callable) -> bool:
    """Check ``fine_prune(model, batches, names, final_sparsity, lr, end_step, every)``.

    It must train ``model`` in place with SGD (momentum 0.9), one step per batch in order,
    accumulate S = −Σₜ wₜ·gₜ for the weights ``names`` (after backward, before the step),
    prune after the step at t = 0, every, …, end_step to ``cubic_sparsity(t)`` (the lowest
    S among the living weights, all names together), hold the masks, and return
    ``(scores, masks)``, dicts name → tensor shaped like the weight.

    Run twice on a small model: without pruning, the scores are compared with S rebuilt
    from the recorded wₜ and gₜ (any positive factor accepted); with pruning, the recorded
    zero pattern must follow the cubic schedule, never revive, and drop the lowest S.
    """
    record, scores, _, final = _run(
        fine_prune, seed=21, steps=10, sparsity=0.0, end_step=6, every=2
    )
    _check_scores(record, scores, final, 6, 2)
    record, scores, masks, final = _run(
        fine_prune, seed=31, steps=14, sparsity=0.75, end_step=8, every=2
    )
    _check_pruning(record, masks, final, 0.75, 8, 2)
