"""Exercise 11's self-checks: movement pruning in the student's own training loop.

Each wrong answer the exercise is about (issue 23: the sign, |g|; and the loop's timing) is
one knob away from a correct ``fine_prune``; each must be rejected with the one line that
names it. Rank-equivalent correct answers (a mean instead of a sum, float64, a learning
rate folded in, the same pruning made at the top of the next step, holding masks by hand)
must pass.
"""

import math

import pytest
import torch
from torch import nn

import gradprune_lite as gp
from gradprune_lite.course.checks import movement as checks


def cubic_sparsity(step, final_sparsity, end_step):
    return final_sparsity * (1 - (1 - min(step / end_step, 1.0)) ** 3)


def movement_masks(scores, masks, sparsity, rank=lambda s: s, count=round):
    names = list(scores)
    flat = torch.cat([rank(scores[n]).flatten().double() for n in names])
    alive = torch.cat([masks[n].flatten() for n in names])
    ranked = flat.masked_fill(~alive, -math.inf)
    keep = torch.zeros_like(alive)
    keep[ranked.topk(flat.numel() - count(sparsity * flat.numel())).indices] = True
    parts = keep.split([scores[n].numel() for n in names])
    return {n: part.view_as(scores[n]) for n, part in zip(names, parts)}


SCHEDULES = {
    "cubic": cubic_sparsity,
    "linear": lambda t, s, end: s * min(t / end, 1.0),
    "one shot": lambda t, s, end: s,
}
TERMS = {
    "movement": lambda w, g: -(w * g),
    "+w g": lambda w, g: w * g,
    "|g|": lambda w, g: g.abs(),
    "|w g|": lambda w, g: (w * g).abs(),
    "-g": lambda w, g: -g,
}


def fine_prune_with(
    term="movement",
    read="before step",
    total="sum",
    zero_grad=True,
    dtype=None,
    rank="movement",
    schedule="cubic",
    hold="gp.apply_masks",
    prune_at="after step",
):
    """A ``fine_prune`` one choice away from the solution (the defaults are the solution)."""
    score_term, sparsity_at = TERMS[term], SCHEDULES[schedule]

    def accumulate(weights, scores, sums):
        with torch.no_grad():
            for name, w in weights.items():
                value = score_term(w, w.grad).to(scores[name].dtype)
                if total == "last":
                    scores[name] = value
                else:
                    scores[name] += value
                sums[name] += w.grad

    def prune(model, weights, scores, masks, optimizer, step, final, end):
        if rank == "magnitude":
            ranking = {n: w.detach().abs() for n, w in weights.items()}
        elif rank == "highest":
            ranking = {n: -s for n, s in scores.items()}
        elif rank == "|S|":
            ranking = {n: s.abs() for n, s in scores.items()}
        else:
            ranking = scores
        sparsity = sparsity_at(step, final, end)
        if rank == "per layer":
            masks = {
                n: movement_masks({n: ranking[n]}, {n: masks[n]}, sparsity)[n] for n in ranking
            }
        else:
            masks = movement_masks(ranking, masks, sparsity)
        if hold == "gp.apply_masks":
            gp.apply_masks(model, masks, optimizer)
        else:
            with torch.no_grad():
                for name, w in weights.items():
                    w.mul_(masks[name])
        if rank == "reset":
            for s in scores.values():
                s.zero_()
        return masks

    def fine_prune(model, batches, names, final_sparsity, lr, end_step, every):
        weights = {name: model.get_parameter(name) for name in names}
        scores = {n: torch.zeros_like(w, dtype=dtype or w.dtype) for n, w in weights.items()}
        sums = {n: torch.zeros_like(w) for n, w in weights.items()}
        masks = {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        model.train()
        for step, (inputs, targets) in enumerate(batches):
            # The same prune as right after step t - 1, made at the top of step t instead.
            late = step - 1
            if prune_at == "next step" and late % every == 0 and 0 <= late <= end_step:
                masks = prune(
                    model, weights, scores, masks, optimizer, late, final_sparsity, end_step
                )
            if prune_at == "before the gradient" and step % every == 0 and step <= end_step:
                masks = prune(
                    model, weights, scores, masks, optimizer, step, final_sparsity, end_step
                )
            if read == "top of the loop" and step > 0:
                accumulate(weights, scores, sums)
            if zero_grad:
                optimizer.zero_grad()
            nn.functional.cross_entropy(model(inputs), targets).backward()
            if read == "before step":
                accumulate(weights, scores, sums)
            optimizer.step()
            if hold == "by hand":
                with torch.no_grad():
                    for name, w in weights.items():
                        w.mul_(masks[name])
            if read == "after step":
                accumulate(weights, scores, sums)
            if prune_at == "after step" and step % every == 0 and step <= end_step:
                masks = prune(
                    model, weights, scores, masks, optimizer, step, final_sparsity, end_step
                )
        if total == "mean":
            scores = {n: s / len(batches) for n, s in scores.items()}
        elif total == "final weight":
            scores = {n: -(weights[n].detach() * sums[n]) for n in weights}
        elif total == "|w|":
            scores = {n: weights[n].detach().abs() for n in weights}
        return scores, masks

    return fine_prune


def rejects(check, answer, message):
    with pytest.raises(gp.checks.CheckFailed, match=message) as failure:
        check(answer)
    assert "\n" not in str(failure.value), str(failure.value)


def stub(*args):
    raise NotImplementedError


CHECKS = (
    gp.checks.check_cubic_sparsity,
    gp.checks.check_movement_masks,
    gp.checks.check_fine_prune,
)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_an_unsolved_stub_is_one_short_line(check):
    with pytest.raises(gp.checks.CheckFailed, match="NotImplementedError") as failure:
        check(stub)
    assert len(failure.value._render_traceback_()) == 1


# The schedule.


def test_schedule_check_accepts_the_cubic_schedule_and_the_library_s():
    assert gp.checks.check_cubic_sparsity(cubic_sparsity)
    assert gp.checks.check_cubic_sparsity(lambda t, s, end: gp.gradual_sparsity(t, s, 0, end))


SCHEDULE_WRONG = {
    "linear": (SCHEDULES["linear"], "linear"),
    "slow start": (lambda t, s, end: s * min(t / end, 1.0) ** 3, "starts slowly"),
    "not clipped": (lambda t, s, end: s * (1 - (1 - t / end) ** 3), "clip t/end at 1"),
    "square": (lambda t, s, end: s * (1 - (1 - min(t / end, 1.0)) ** 2), "expected"),
}


@pytest.mark.parametrize("answer, message", SCHEDULE_WRONG.values(), ids=SCHEDULE_WRONG)
def test_schedule_check_rejects(answer, message):
    rejects(gp.checks.check_cubic_sparsity, answer, message)


# The masks.


def test_masks_check_accepts_the_solution_and_a_float32_ranking():
    assert gp.checks.check_movement_masks(movement_masks)

    def by_sorting(scores, masks, sparsity):
        names = list(scores)
        flat = torch.cat([scores[n].flatten() for n in names])
        flat = torch.where(torch.cat([masks[n].flatten() for n in names]), flat, -math.inf)
        order = flat.argsort()
        keep = torch.ones(flat.numel(), dtype=torch.bool)
        keep[order[: round(sparsity * flat.numel())]] = False
        return dict(
            zip(
                names,
                (
                    p.view_as(scores[n])
                    for p, n in zip(keep.split([scores[n].numel() for n in names]), names)
                ),
            )
        )

    assert gp.checks.check_movement_masks(by_sorting)


def no_memory(scores, masks, sparsity):
    return movement_masks(scores, {n: torch.ones_like(m) for n, m in masks.items()}, sparsity)


def in_place(scores, masks, sparsity):
    new = movement_masks(scores, masks, sparsity)
    for n in masks:
        masks[n] &= new[n]
    return new


MASKS_WRONG = {
    "int()": (lambda s, m, p: movement_masks(s, m, p, count=int), r"int\(s·N\)"),
    "|S|": (lambda s, m, p: movement_masks(s, m, p, rank=torch.abs), r"ranked by \|S\|"),
    "highest": (lambda s, m, p: movement_masks(s, m, p, rank=torch.neg), "highest scores"),
    "pruned revive": (no_memory, "already pruned came back"),
    "per tensor": (
        lambda s, m, p: {n: movement_masks({n: s[n]}, {n: m[n]}, p)[n] for n in s},
        "each tensor",
    ),
    "changes its input": (in_place, "changed its inputs"),
}


@pytest.mark.parametrize("answer, message", MASKS_WRONG.values(), ids=MASKS_WRONG)
def test_masks_check_rejects(answer, message):
    rejects(gp.checks.check_movement_masks, answer, message)


# The training loop.

LOOP_CORRECT = {
    "the solution": {},
    "mean over steps": {"total": "mean"},
    "float64 scores": {"dtype": torch.float64},
    "masks held by hand": {"hold": "by hand"},
    "pruned at the top of the next step": {"prune_at": "next step"},
}


@pytest.mark.parametrize("choices", LOOP_CORRECT.values(), ids=LOOP_CORRECT)
def test_loop_check_accepts(choices):
    assert gp.checks.check_fine_prune(fine_prune_with(**choices))


def test_loop_check_accepts_a_learning_rate_folded_into_the_score():
    TERMS["lr movement"] = lambda w, g: -0.1 * w * g
    try:
        assert gp.checks.check_fine_prune(fine_prune_with(term="lr movement"))
    finally:
        del TERMS["lr movement"]


LOOP_WRONG = {
    "sign error": ({"term": "+w g"}, "Sign error"),
    "|g|": ({"term": "|g|"}, r"summed \|g\|"),
    "|w g| (Taylor)": ({"term": "|w g|"}, "Taylor"),
    "-g alone": ({"term": "-g"}, "−g alone"),
    "last step only": ({"total": "last"}, "Only the last step"),
    "weight after the step": ({"read": "after step"}, "after optimizer.step"),
    "previous step's gradient": ({"read": "top of the loop"}, "previous step's gradient"),
    "no zero_grad": ({"zero_grad": False}, "pile up"),
    "final weight times summed gradient": ({"total": "final weight"}, "final weights only"),
    "magnitude scores": ({"total": "|w|"}, r"magnitudes \|w\|"),
    "pruned by magnitude": ({"rank": "magnitude"}, r"pruned by magnitude \|w\|"),
    "pruned the highest": ({"rank": "highest"}, "highest movement scores"),
    "ranked by |S|": ({"rank": "|S|"}, r"ranked by \|S\|"),
    "scores reset at pruning": ({"rank": "reset"}, "restarted the scores"),
    "per-layer pruning": ({"rank": "per layer"}, "each layer"),
    "linear schedule": ({"schedule": "linear"}, "rises linearly"),
    "one shot": ({"schedule": "one shot"}, "at once"),
    "pruned before the step's gradient": ({"prune_at": "before the gradient"}, "start of step t"),
    "masks not held": ({"hold": "zeroed once"}, "came back after step"),
}


@pytest.mark.parametrize("choices, message", LOOP_WRONG.values(), ids=LOOP_WRONG)
def test_loop_check_rejects(choices, message):
    rejects(gp.checks.check_fine_prune, fine_prune_with(**choices), message)


def test_loop_check_rejects_the_library_s_movement_pruning():
    def library(model, batches, names, final_sparsity, lr, end_step, every):
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        exclude = [n for n in gp.prunable_weights(model) if n not in names]
        pruner = gp.GradualPruner(
            model,
            "movement",
            final_sparsity,
            0,
            end_step,
            every,
            optimizer=optimizer,
            exclude=exclude,
        )
        for inputs, targets in batches:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(inputs), targets).backward()
            optimizer.step()
            pruner.step()
        masks = {n: m for n, m in gp.current_masks(model).items() if n in names}
        return pruner.state.scores(), masks

    rejects(gp.checks.check_fine_prune, library, "library's movement pruning")


def test_loop_check_names_extra_forward_passes():
    solution = fine_prune_with()

    def evaluates_too(model, batches, *args):
        model(batches[0][0])
        return solution(model, batches, *args)

    rejects(gp.checks.check_fine_prune, evaluates_too, "one forward pass per batch")


def test_loop_check_names_shuffled_batches():
    solution = fine_prune_with()

    def reversed_order(model, batches, *args):
        return solution(model, batches[::-1], *args)

    rejects(gp.checks.check_fine_prune, reversed_order, "given order")


def test_the_check_leaves_no_hook_behind():
    from torch.optim.optimizer import _global_optimizer_post_hooks

    before = len(_global_optimizer_post_hooks)
    gp.checks.check_fine_prune(fine_prune_with())
    with pytest.raises(gp.checks.CheckFailed):
        gp.checks.check_fine_prune(fine_prune_with(term="+w g"))
    assert len(_global_optimizer_post_hooks) == before
    assert checks.sys.getprofile() is None
