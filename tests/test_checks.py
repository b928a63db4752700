"""The exercise self-checks pass on a correct answer and name the mistake on a wrong one.

Each exercise whose check judges a method by what ran (no sort, no stored per-sample
gradient, kept weights still training, random draws) gets a table of wrong answers, the
ones named in issue 19 and at least three more, each with the one line it must produce,
and a table of correct variants that must pass.
"""

import copy
import random

import numpy as np
import pytest
import torch

import gradprune_lite as gp


def stub(*args):
    raise NotImplementedError


def correct_taylor(weights, stats):
    return {name: (w * stats[name].mean).abs() for name, w in weights.items()}


def correct_threshold(scores, sparsity):
    flat = torch.cat([s.reshape(-1) for s in scores.values()])
    k = round(sparsity * flat.numel())
    if k == 0:
        return {name: torch.ones_like(s, dtype=torch.bool) for name, s in scores.items()}
    t = flat.kthvalue(k).values
    return {name: s > t for name, s in scores.items()}


def correct_hook(model, masks, optimizer):
    gp.apply_masks(model, masks, optimizer)


def correct_largest(error_at, levels, limit):
    best = None
    for s in sorted(levels):
        if error_at(s) >= limit:
            break
        best = s
    return best


CORRECT = {
    gp.checks.check_taylor_score: correct_taylor,
    gp.checks.check_global_threshold: correct_threshold,
    gp.checks.check_mask_hook: correct_hook,
    gp.checks.check_largest_sparsity: correct_largest,
}


@pytest.mark.parametrize("check", list(CORRECT), ids=lambda c: c.__name__)
def test_check_passes_on_a_correct_answer(check):
    assert check(CORRECT[check]) is True


@pytest.mark.parametrize("check", list(CORRECT), ids=lambda c: c.__name__)
def test_check_turns_the_unsolved_stub_into_one_short_line(check):
    with pytest.raises(gp.checks.CheckFailed, match="NotImplementedError") as failure:
        check(stub)
    rendered = failure.value._render_traceback_()
    assert len(rendered) == 1 and "replace the stub" in rendered[0]


def test_a_crash_in_student_code_shows_the_students_frames_only():
    def crashes(weights, stats):
        return {name: weights[name] * stats["nope"].mean for name in weights}

    with pytest.raises(gp.checks.CheckFailed, match="KeyError") as failure:
        gp.checks.check_taylor_score(crashes)
    rendered = "\n".join(failure.value._render_traceback_())
    assert "crashes" in rendered and "gradprune_lite" not in rendered


def test_taylor_check_names_the_missing_absolute_value():
    def signed(weights, stats):
        return {name: w * stats[name].mean for name, w in weights.items()}

    with pytest.raises(AssertionError, match="sign is missing"):
        gp.checks.check_taylor_score(signed)


def test_taylor_check_names_the_missing_weight():
    def gradient_only(weights, stats):
        return {name: stats[name].mean.abs() for name in weights}

    with pytest.raises(AssertionError, match="weight w is missing"):
        gp.checks.check_taylor_score(gradient_only)


def test_threshold_check_names_one_threshold_per_layer():
    with pytest.raises(AssertionError, match="one threshold per layer"):
        gp.checks.check_global_threshold(gp.layerwise_masks)


def test_threshold_check_names_the_flipped_comparison():
    def keeps_lowest(scores, sparsity):
        if sparsity == 0:
            return correct_threshold(scores, sparsity)
        return {name: ~m for name, m in correct_threshold(scores, sparsity).items()}

    with pytest.raises(AssertionError, match="kept the lowest"):
        gp.checks.check_global_threshold(keeps_lowest)


def test_threshold_check_reaches_the_k_zero_message():
    def forgets_k_zero(scores, sparsity):
        flat = torch.cat([s.reshape(-1) for s in scores.values()])
        t = flat.kthvalue(round(sparsity * flat.numel())).values
        return {name: s > t for name, s in scores.items()}

    with pytest.raises(AssertionError, match="k = 0") as failure:
        gp.checks.check_global_threshold(forgets_k_zero)
    assert "kthvalue(): " not in str(failure.value)


def test_threshold_check_names_int_instead_of_round():
    def truncates(scores, sparsity):
        flat = torch.cat([s.reshape(-1) for s in scores.values()])
        k = int(sparsity * flat.numel())
        if k == 0:
            return {name: torch.ones_like(s, dtype=torch.bool) for name, s in scores.items()}
        t = flat.kthvalue(k).values
        return {name: s > t for name, s in scores.items()}

    with pytest.raises(AssertionError, match=r"int\(0.37") as failure:
        gp.checks.check_global_threshold(truncates)
    assert "counts from 1" not in str(failure.value)


def test_threshold_check_names_the_off_by_one():
    def prunes_one_too_many(scores, sparsity):
        flat = torch.cat([s.reshape(-1) for s in scores.values()])
        k = round(sparsity * flat.numel())
        if k == 0:
            return {name: torch.ones_like(s, dtype=torch.bool) for name, s in scores.items()}
        t = flat.kthvalue(min(k + 1, flat.numel())).values
        return {name: s > t for name, s in scores.items()}

    with pytest.raises(AssertionError, match="one too many"):
        gp.checks.check_global_threshold(prunes_one_too_many)


def test_hook_check_catches_zeroing_only_once():
    @torch.no_grad()
    def zero_once(model, masks, optimizer):
        params = dict(model.named_parameters())
        for name, mask in masks.items():
            params[name].mul_(mask)

    with pytest.raises(AssertionError, match="came back after step 1; their gradient"):
        gp.checks.check_mask_hook(zero_once)


def test_hook_check_catches_stale_momentum():
    def weights_only(model, masks, optimizer):
        params = dict(model.named_parameters())

        @torch.no_grad()
        def rezero(*_):
            for name, mask in masks.items():
                params[name].mul_(mask)

        rezero()
        optimizer.register_step_post_hook(rezero)

    with pytest.raises(AssertionError, match="momentum buffer"):
        gp.checks.check_mask_hook(weights_only)


def test_largest_sparsity_check_refuses_to_take_a_dip():
    def takes_dips(error_at, levels, limit):
        under = [s for s in levels if error_at(s) < limit]
        return max(under) if under else None

    with pytest.raises(AssertionError, match="took the dip"):
        gp.checks.check_largest_sparsity(takes_dips)


def test_largest_sparsity_check_catches_less_or_equal():
    def at_most(error_at, levels, limit):
        best = None
        for s in sorted(levels):
            if error_at(s) > limit:
                break
            best = s
        return best

    with pytest.raises(AssertionError, match="not \\*under\\* 2%"):
        gp.checks.check_largest_sparsity(at_most)


def test_largest_sparsity_check_catches_ignoring_the_order():
    def in_given_order(error_at, levels, limit):
        best = None
        for s in levels:
            if error_at(s) >= limit:
                break
            best = s
        return best

    with pytest.raises(AssertionError, match="out of order"):
        gp.checks.check_largest_sparsity(in_given_order)


def hooked_stats(model, layer, inputs, targets, *, undo_mean=True, square_mean=False):
    seen = {}

    def record(module, args, output):
        seen["x"] = args[0].detach()
        output.register_hook(lambda grad: seen.update(d=grad.detach()))

    handle = layer.register_forward_hook(record)
    torch.nn.functional.cross_entropy(model(inputs), targets).backward()
    handle.remove()
    n = len(targets)
    x, d = seen["x"], seen["d"] * (n if undo_mean else 1)
    mean = d.T @ x / n
    sq_mean = mean.square() if square_mean else d.square().T @ x.square() / n
    return mean, sq_mean, sq_mean - mean.square()


def test_linear_stats_check_passes_and_names_the_missing_factor_n():
    assert gp.checks.check_linear_gradient_stats(hooked_stats)
    with pytest.raises(AssertionError, match="N times too small"):
        gp.checks.check_linear_gradient_stats(lambda *a: hooked_stats(*a, undo_mean=False))


def test_linear_stats_check_names_squaring_the_mean():
    with pytest.raises(AssertionError, match="square of the mean"):
        gp.checks.check_linear_gradient_stats(lambda *a: hooked_stats(*a, square_mean=True))


def test_linear_stats_check_names_hooks_left_behind():
    def leaves_hooks(model, layer, inputs, targets):
        layer.register_forward_hook(lambda *a: None)
        return hooked_stats(model, layer, inputs, targets)

    with pytest.raises(AssertionError, match="hooks are still registered"):
        gp.checks.check_linear_gradient_stats(leaves_hooks)


def scan(model, levels, error_at, *, in_place=False):
    curves = {}
    for name in gp.prunable_weights(model):
        curves[name] = []
        for s in levels:
            pruned = model if in_place else __import__("copy").deepcopy(model)
            weight = gp.prunable_weights(pruned)[name]
            mask = gp.layerwise_masks({name: weight.detach().abs()}, s)[name]
            with torch.no_grad():
                weight.mul_(mask)
            curves[name].append(error_at(pruned))
    return curves


def test_sensitivity_check_passes_and_catches_pruning_in_place():
    assert gp.checks.check_sensitivity_scan(scan)
    with pytest.raises(AssertionError, match="changed the model"):
        gp.checks.check_sensitivity_scan(lambda *a: scan(*a, in_place=True))


def test_layer_choice_check_refuses_a_dip():
    def takes_dips(curves, levels, limit):
        return {
            n: max((s for s, e in zip(levels, errs) if e < limit), default=None)
            for n, errs in curves.items()
        }

    with pytest.raises(AssertionError, match="take the dip"):
        gp.checks.check_choose_layer_sparsities(takes_dips)


def test_channel_checks_name_the_sum_of_squares_and_an_unchanged_conv2():
    def sum_of_squares(model, inputs, targets):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(inputs), targets).backward()
        conv = model.conv1
        per_weight = (conv.weight.grad * conv.weight).square().sum(dim=(1, 2, 3))
        return (per_weight + (conv.bias.grad * conv.bias).square()).detach()

    with pytest.raises(AssertionError, match="squares the \\*sum\\*"):
        gp.checks.check_channel_importance(sum_of_squares)

    def conv1_only(model, c):

        smaller = copy.deepcopy(model)
        keep = [i for i in range(20) if i != c]
        smaller.conv1 = torch.nn.Conv2d(1, 19, 5)
        with torch.no_grad():
            smaller.conv1.weight.copy_(model.conv1.weight[keep])
            smaller.conv1.bias.copy_(model.conv1.bias[keep])
        return smaller

    with pytest.raises(AssertionError, match="conv2.weight"):
        gp.checks.check_remove_conv1_channel(conv1_only)


def test_stability_checks_name_pruned_sets_and_shared_digits():
    def kept(a, b):
        return sum(int((a[n] & b[n]).sum()) for n in a) / sum(int((a[n] | b[n]).sum()) for n in a)

    assert gp.checks.check_jaccard(kept)
    with pytest.raises(AssertionError, match="pruned sets"):
        gp.checks.check_jaccard(
            lambda a, b: kept({n: ~m for n, m in a.items()}, {n: ~m for n, m in b.items()})
        )

    def overlapping(n, total, seed):
        order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
        return order[:n], order[n // 2 : n // 2 + n]

    with pytest.raises(AssertionError, match="share digits"):
        gp.checks.check_disjoint_draws(overlapping)


def _interval(values, t_of, spread):
    """A mean ± t · spread / √n interval, with the quantile and the spread passed in."""
    x = torch.tensor(values, dtype=torch.float64)
    half = t_of(len(values)) * spread(x) / len(values) ** 0.5
    return x.mean().item(), x.mean().item() - half, x.mean().item() + half


def test_mean_interval_check_accepts_the_t_interval_and_names_each_slip():
    from gradprune_lite.core.stability import t_quantile

    def t(n):
        return t_quantile(0.975, n - 1)

    assert gp.checks.check_mean_interval(lambda v: _interval(v, t, lambda x: x.std()))
    slips = {
        "not the normal 1.96": (lambda n: 1.96, lambda x: x.std()),
        "n − 1 in the denominator": (t, lambda x: x.std(correction=0)),
    }
    for message, (quantile, spread) in slips.items():
        with pytest.raises(AssertionError, match=message):
            gp.checks.check_mean_interval(lambda v, q=quantile, s=spread: _interval(v, q, s))
    with pytest.raises(AssertionError, match="divide the standard deviation"):
        gp.checks.check_mean_interval(
            lambda v: _interval(v, lambda n: t(n) * n**0.5, lambda x: x.std())
        )


def rejects(check, answer, message):
    """``check(answer)`` fails with one line that matches ``message``."""
    with pytest.raises(gp.checks.CheckFailed, match=message) as failure:
        check(answer)
    assert "\n" not in str(failure.value), str(failure.value)


# Exercise 1: any score ranked like |w·ḡ| over all layers together passes.


def taylor_variant(form):
    return lambda weights, stats: {n: form(w, stats[n]) for n, w in weights.items()}


TAYLOR_CORRECT = {
    "|w g|": lambda w, s: (w * s.mean).abs(),
    "(w g)^2": lambda w, s: (w * s.mean).square(),
    "|w| |g|": lambda w, s: w.abs() * s.mean.abs(),
    "float64": lambda w, s: (w.double() * s.mean.double()).abs(),
    "1000 |w g|": lambda w, s: 1000 * (w * s.mean).abs(),
}
TAYLOR_WRONG = {
    "signed w g": (lambda w, s: w * s.mean, "sign is missing"),
    "-|w g|": (lambda w, s: -(w * s.mean).abs(), "ranked the other way"),
    "|w|": (lambda w, s: w.abs(), "magnitude"),
    "w sqrt(E[g^2])": (lambda w, s: (w * s.sq_mean.sqrt()).abs(), r"sqrt\(E\[g²\]\)"),
    "|w var|": (lambda w, s: (w * s.var).abs(), "does not rank the weights as"),
}


@pytest.mark.parametrize("form", TAYLOR_CORRECT.values(), ids=TAYLOR_CORRECT)
def test_taylor_check_accepts_rank_equivalent_scores(form):
    assert gp.checks.check_taylor_score(taylor_variant(form))


@pytest.mark.parametrize("form, message", TAYLOR_WRONG.values(), ids=TAYLOR_WRONG)
def test_taylor_check_rejects(form, message):
    rejects(gp.checks.check_taylor_score, taylor_variant(form), message)


def test_taylor_check_rejects_a_per_layer_normalisation():
    def per_layer(weights, stats):
        scores = {n: (w * stats[n].mean).abs() for n, w in weights.items()}
        return {n: s / s.max() for n, s in scores.items()}

    rejects(gp.checks.check_taylor_score, per_layer, "not all layers together")


# Exercise 2: the threshold check records what ran and rejects any sort.


def threshold_by(pick):
    def global_threshold(scores, sparsity):
        flat = torch.cat([s.reshape(-1) for s in scores.values()])
        k = round(sparsity * flat.numel())
        if k == 0:
            return {name: torch.ones_like(s, dtype=torch.bool) for name, s in scores.items()}
        t = pick(flat, k)
        return {name: s > t for name, s in scores.items()}

    return global_threshold


def bisection(flat, k):
    low, high = flat.min(), flat.max()
    for _ in range(60):
        middle = (low + high) / 2
        if int((flat <= middle).sum()) >= k:
            high = middle
        else:
            low = middle
    return flat[flat <= high].max()


def quickselect(flat, k):
    while True:
        pivot = flat[len(flat) // 2]
        below, equal = flat[flat < pivot], flat[flat == pivot]
        if k <= len(below):
            flat = below
        elif k <= len(below) + len(equal):
            return pivot
        else:
            k -= len(below) + len(equal)
            flat = flat[flat > pivot]


def list_sort(flat, k):
    values = flat.tolist()
    values.sort()
    return values[k - 1]


THRESHOLD_CORRECT = {
    "Tensor.kthvalue": lambda flat, k: flat.kthvalue(k).values,
    "torch.kthvalue": lambda flat, k: torch.kthvalue(flat, k)[0],
    "bisection": bisection,
    "quickselect": quickselect,
    "np.partition": lambda flat, k: float(np.partition(flat.numpy(), k - 1)[k - 1]),
}
THRESHOLD_WRONG = {
    "unique": (lambda flat, k: flat.unique()[k - 1], "torch.unique ran"),
    "topk": (lambda flat, k: flat.topk(k, largest=False).values.max(), "torch.topk ran"),
    "topk unsorted": (
        lambda flat, k: flat.topk(k, largest=False, sorted=False).values.max(),
        "torch.topk ran",
    ),
    "quantile": (
        lambda flat, k: flat.quantile((k - 1) / (flat.numel() - 1), interpolation="lower"),
        "a sort ran",
    ),
    "torch.sort": (lambda flat, k: torch.sort(flat).values[k - 1], "a sort ran"),
    "Tensor.sort stable": (lambda flat, k: flat.sort(stable=True).values[k - 1], "a sort ran"),
    "argsort": (lambda flat, k: flat[flat.argsort()[k - 1]], "a sort ran"),
    "msort": (lambda flat, k: torch.msort(flat)[k - 1], "a sort ran"),
    "np.sort": (lambda flat, k: float(np.sort(flat.numpy())[k - 1]), "NumPy sort ran"),
    "np.unique": (lambda flat, k: float(np.unique(flat.numpy())[k - 1]), "NumPy sort ran"),
    "sorted": (lambda flat, k: sorted(flat.tolist())[k - 1], r"sorted\(\) ran"),
    "list.sort": (list_sort, r"list.sort\(\) ran"),
}


@pytest.mark.parametrize("pick", THRESHOLD_CORRECT.values(), ids=THRESHOLD_CORRECT)
def test_threshold_check_accepts_any_selection(pick):
    assert gp.checks.check_global_threshold(threshold_by(pick))


@pytest.mark.parametrize("pick, message", THRESHOLD_WRONG.values(), ids=THRESHOLD_WRONG)
def test_threshold_check_rejects_every_sort(pick, message):
    rejects(gp.checks.check_global_threshold, threshold_by(pick), f"You sorted: .*{message}")


def test_threshold_check_leaves_no_recorder_behind():
    import sys

    rejects(gp.checks.check_global_threshold, threshold_by(THRESHOLD_WRONG["sorted"][0]), "sorted")
    assert sys.getprofile() is None
    assert not torch._C._len_torch_dispatch_stack()


# Exercise 3: pruned weights stay zero, kept weights train with their momentum.


def step_hook(rezero):
    """A keep_pruned_at_zero that calls ``rezero(params, optimizer, masks)`` now and
    after every step."""

    def keep_pruned_at_zero(model, masks, optimizer):
        params = dict(model.named_parameters())

        @torch.no_grad()
        def hook(*_):
            rezero(params, optimizer, masks)

        hook()
        optimizer.register_step_post_hook(hook)

    return keep_pruned_at_zero


def masked_weights_and_momentum(params, optimizer, masks):
    for name, mask in masks.items():
        params[name].mul_(mask)
        buffer = optimizer.state[params[name]].get("momentum_buffer")
        if buffer is not None:
            buffer.mul_(mask)


def data_reassigned(params, optimizer, masks):
    for name, mask in masks.items():
        params[name].data = params[name].data * mask
        buffer = optimizer.state[params[name]].get("momentum_buffer")
        if buffer is not None:
            buffer.data = buffer.data * mask


def masked_gradients(model, masks, optimizer):
    """No step hook: mask the gradient; with no weight decay this holds the mask too."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            params[name].mul_(mask)
            optimizer.state[params[name]]["momentum_buffer"].mul_(mask)
            params[name].register_hook(lambda grad, mask=mask: grad * mask)


def zero_everything(params, optimizer, masks):
    for name in masks:
        params[name].zero_()
        optimizer.state[params[name]].get("momentum_buffer", torch.zeros(1)).zero_()


def hook_zeroes_every_weight(model, masks, optimizer):
    gp.apply_masks(model, masks)
    params = dict(model.named_parameters())

    @torch.no_grad()
    def hook(*_):
        for name in masks:
            params[name].zero_()

    optimizer.register_step_post_hook(hook)


def whole_buffer_cleared(params, optimizer, masks):
    for name, mask in masks.items():
        params[name].mul_(mask)
        optimizer.state[params[name]].get("momentum_buffer", torch.zeros(1)).zero_()


def state_cleared(params, optimizer, masks):
    for name, mask in masks.items():
        params[name].mul_(mask)
    optimizer.state.clear()


def new_parameters(model, masks, optimizer):
    with torch.no_grad():
        for name, mask in masks.items():
            layer = model.get_submodule(name.rsplit(".", 1)[0])
            layer.weight = torch.nn.Parameter(layer.weight * mask)


def pre_step_hook(model, masks, optimizer):
    params = dict(model.named_parameters())

    @torch.no_grad()
    def hook(*_):
        masked_weights_and_momentum(params, optimizer, masks)

    hook()
    optimizer.register_step_pre_hook(hook)


def biases_zeroed_too(params, optimizer, masks):
    masked_weights_and_momentum(params, optimizer, masks)
    for name, p in params.items():
        if name.endswith("bias"):
            p.zero_()


HOOK_CORRECT = {
    "gp.apply_masks": correct_hook,
    "mul_ in a step hook": step_hook(masked_weights_and_momentum),
    ".data reassigned": step_hook(data_reassigned),
    "masked gradients": masked_gradients,
}
HOOK_WRONG = {
    "zeroes every weight at once": (step_hook(zero_everything), "zeroed the kept weights"),
    "hook zeroes every weight": (hook_zeroes_every_weight, "your hook zeroes every weight"),
    "clears the whole buffer": (step_hook(whole_buffer_cleared), "momentum of kept weights"),
    "clears the optimiser state": (step_hook(state_cleared), "momentum of kept weights"),
    "new Parameters": (new_parameters, "is a new Parameter"),
    "pre-step hook": (pre_step_hook, "came back after step 1"),
    "zeroes the biases": (step_hook(biases_zeroed_too), "1.bias: kept entries are zero"),
}


@pytest.mark.parametrize("answer", HOOK_CORRECT.values(), ids=HOOK_CORRECT)
def test_hook_check_accepts_every_way_of_holding_the_mask(answer):
    assert gp.checks.check_mask_hook(answer)


@pytest.mark.parametrize("answer, message", HOOK_WRONG.values(), ids=HOOK_WRONG)
def test_hook_check_rejects(answer, message):
    rejects(gp.checks.check_mask_hook, answer, message)


# Exercise 5: no per-sample gradient is ever stored, one forward pass.


def per_sample_functional(model, layer, inputs, targets, chunk=None):
    from torch.func import functional_call, grad, vmap

    name = next(n for n, p in model.named_parameters() if p is layer.weight)
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(p, x, y):
        return torch.nn.functional.cross_entropy(functional_call(model, p, (x[None],)), y[None])

    total, squares, step = 0, 0, chunk or len(targets)
    for start in range(0, len(targets), step):
        g = vmap(grad(loss), in_dims=(None, 0, 0))(
            params, inputs[start : start + step], targets[start : start + step]
        )[name]
        total, squares = total + g.sum(0), squares + g.square().sum(0)
    mean, sq_mean = total / len(targets), squares / len(targets)
    return mean, sq_mean, sq_mean - mean.square()


def per_sample_einsum(model, layer, inputs, targets):
    seen = {}

    def record(module, args, output):
        seen["x"] = args[0].detach()
        output.register_hook(lambda grad: seen.update(d=grad.detach()))

    handle = layer.register_forward_hook(record)
    torch.nn.functional.cross_entropy(model(inputs), targets).backward()
    handle.remove()
    g = torch.einsum("ni,nj->nij", seen["d"] * len(targets), seen["x"])
    return g.mean(0), g.square().mean(0), g.var(0, unbiased=False)


def per_sample_loop(model, layer, inputs, targets, stack=False):
    grads = []
    for x, y in zip(inputs, targets):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x[None]), y[None]).backward()
        grads.append(layer.weight.grad.detach().clone())
    if stack:
        g = torch.stack(grads)
        return g.mean(0), g.square().mean(0), g.var(0, unbiased=False)
    mean = sum(grads) / len(grads)
    sq_mean = sum(g.square() for g in grads) / len(grads)
    return mean, sq_mean, sq_mean - mean.square()


def batched_autograd(model, layer, inputs, targets):
    losses = torch.nn.functional.cross_entropy(model(inputs), targets, reduction="none")
    (g,) = torch.autograd.grad(losses, layer.weight, torch.eye(len(targets)), is_grads_batched=True)
    return g.mean(0), g.square().mean(0), g.var(0, unbiased=False)


def hooked_stats_stacked(*args):
    mean, sq_mean, var = hooked_stats(*args)
    return tuple(torch.stack([mean, sq_mean, var]).unbind())


def hooked_stats_einsum(model, layer, inputs, targets):
    seen = {}

    def record(module, args, output):
        seen["x"] = args[0].detach()
        output.register_hook(lambda grad: seen.update(d=grad.detach()))

    handle = layer.register_forward_hook(record)
    torch.nn.functional.cross_entropy(model(inputs), targets, reduction="sum").backward()
    handle.remove()
    n, x, d = len(targets), seen["x"], seen["d"]  # a sum-reduced loss: grad_output is d_n
    mean = torch.einsum("ni,nj->ij", d, x) / n
    sq_mean = torch.einsum("ni,nj->ij", d.square(), x.square()) / n
    return mean, sq_mean, sq_mean - mean.square()


STATS_CORRECT = {
    "hooks and matmul": hooked_stats,
    "stacked statistics": hooked_stats_stacked,
    "sum-reduced loss, einsum without n": hooked_stats_einsum,
}
STATS_WRONG = {
    "vmap of grad": (per_sample_functional, r"shape \(40, 8, 12\), per-sample gradients"),
    "vmap in chunks of 6": (
        lambda *a: per_sample_functional(*a, chunk=6),
        r"shape \(6, 8, 12\), per-sample gradients",
    ),
    "outer products by einsum": (per_sample_einsum, r"shape \(40, 8, 12\)"),
    "a loop of stacked gradients": (
        lambda *a: per_sample_loop(*a, stack=True),
        r"shape \(40, 8, 12\)",
    ),
    "a loop of running sums": (per_sample_loop, "You ran the model 40 times"),
    "batched autograd.grad": (batched_autograd, "per-sample gradients"),
}


@pytest.mark.parametrize("answer", STATS_CORRECT.values(), ids=STATS_CORRECT)
def test_linear_stats_check_accepts(answer):
    assert gp.checks.check_linear_gradient_stats(answer)


@pytest.mark.parametrize("answer, message", STATS_WRONG.values(), ids=STATS_WRONG)
def test_linear_stats_check_rejects_stored_per_sample_gradients(answer, message):
    rejects(gp.checks.check_linear_gradient_stats, answer, message)


# Exercise 8: any positive multiple (a sum-reduced loss) passes, other orderings fail.


def importance(model, inputs, targets, reduction="mean", bias=True, zero_grad=True, form="sq"):
    if zero_grad:
        model.zero_grad()
    torch.nn.functional.cross_entropy(model(inputs), targets, reduction=reduction).backward()
    conv = model.conv1
    weight_gw, bias_gw = conv.weight.grad * conv.weight, conv.bias.grad * conv.bias
    total = weight_gw.sum(dim=(1, 2, 3)) + (bias_gw if bias else 0)
    forms = {"sq": total.square(), "signed": total, "abs": total.abs(), "neg": -total.square()}
    return forms[form].detach()


def channel_gradient_only(model, inputs, targets):
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(inputs), targets).backward()
    return (model.conv1.weight.grad.sum(dim=(1, 2, 3)) + model.conv1.bias.grad).square()


CHANNEL_WRONG = {
    "signed sum": (lambda *a: importance(*a, form="signed"), "Square the group sum"),
    "|sum|": (lambda *a: importance(*a, form="abs"), "Square the group sum"),
    "no bias": (lambda *a: importance(*a, bias=False), "bias is part of the channel"),
    "old gradients kept": (lambda *a: importance(*a, zero_grad=False), "model.zero_grad"),
    "negated": (lambda *a: importance(*a, form="neg"), "yours are negative"),
    "gradient only": (channel_gradient_only, "differs from"),
}


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_channel_importance_check_accepts_a_mean_or_a_sum_reduced_loss(reduction):
    assert gp.checks.check_channel_importance(lambda *a: importance(*a, reduction=reduction))


@pytest.mark.parametrize("answer, message", CHANNEL_WRONG.values(), ids=CHANNEL_WRONG)
def test_channel_importance_check_rejects(answer, message):
    rejects(gp.checks.check_channel_importance, answer, message)


# Exercise 9: draws are random, disjoint and spread over the whole range.


def from_permutation(n, total, seed):
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    return order[:n], order[n : 2 * n]


def from_numpy(n, total, seed):
    order = np.random.default_rng(seed).permutation(total)
    return torch.from_numpy(order[:n]), torch.from_numpy(order[n : 2 * n])


def from_python(n, total, seed):
    sample = random.Random(seed).sample(range(total), 2 * n)
    return sample[:n], sample[n:]


def sorted_draws(n, total, seed):
    first, second = from_permutation(n, total, seed)
    return first.sort().values, second.sort().values


def consecutive_blocks(n, total, seed):
    generator = torch.Generator().manual_seed(seed)
    start = int(torch.randint(total - 2 * n + 1, (1,), generator=generator))
    return torch.arange(start, start + n), torch.arange(start + n, start + 2 * n)


def shuffled_blocks(n, total, seed):
    first, second = consecutive_blocks(n, total, seed)
    generator = torch.Generator().manual_seed(seed)
    return first[torch.randperm(n, generator=generator)], second[
        torch.randperm(n, generator=generator)
    ]


def evenly_spaced(n, total, seed):
    indices = (torch.arange(2 * n) * (total // (2 * n)) + seed) % total
    return indices[0::2], indices[1::2]


def low_part_only(n, total, seed):
    order = torch.randperm(max(2 * n, total // 2), generator=torch.Generator().manual_seed(seed))
    return order[:n], order[n : 2 * n]


def shifted_copy(n, total, seed):
    first = torch.randperm(total // 2, generator=torch.Generator().manual_seed(seed))[:n]
    return first, first + total // 2


def two_permutations(n, total, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(total, generator=generator)[:n], torch.randperm(
        total, generator=generator
    )[:n]


DRAWS_CORRECT = {
    "torch.randperm": from_permutation,
    "numpy permutation": from_numpy,
    "random.sample": from_python,
    "sorted draws": sorted_draws,
}
DRAWS_WRONG = {
    "consecutive blocks": (consecutive_blocks, "consecutive blocks are not a random sample"),
    "shuffled blocks": (shuffled_blocks, "crowd together"),
    "evenly spaced": (evenly_spaced, "evenly spaced"),
    "low part only": (low_part_only, r"tenths of \[0, total\)"),
    "shifted copy": (shifted_copy, "shifted by a constant"),
    "two permutations": (two_permutations, "share digits"),
}


@pytest.mark.parametrize("answer", DRAWS_CORRECT.values(), ids=DRAWS_CORRECT)
def test_draws_check_accepts_any_uniform_sample(answer):
    assert gp.checks.check_disjoint_draws(answer)


@pytest.mark.parametrize("answer, message", DRAWS_WRONG.values(), ids=DRAWS_WRONG)
def test_draws_check_rejects(answer, message):
    rejects(gp.checks.check_disjoint_draws, answer, message)


# Exercise 7: OBS from per-sample gradients; any exact inverse passes, each slip is named.


def fc3_gradients(model, images, labels):
    with torch.no_grad():
        h = model[:-1](images)
        d = torch.softmax(model.fc3(h), dim=1) - torch.nn.functional.one_hot(labels, 10)
    return (d[:, :, None] * h[:, None, :]).reshape(len(images), -1)


def fc3_autograd(model, images, labels):
    rows = []
    for x, y in zip(images, labels):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x[None]), y[None]).backward()
        rows.append(model.fc3.weight.grad.reshape(-1).clone())
    return torch.stack(rows)


FC3_CORRECT = {"outer product": fc3_gradients, "one backward per digit": fc3_autograd}
FC3_WRONG = {
    "mean loss": (lambda m, x, y: fc3_gradients(m, x, y) / len(x), "N times too small"),
    "transposed": (
        lambda m, x, y: (
            fc3_gradients(m, x, y).reshape(-1, 10, 100).transpose(1, 2).reshape(len(x), -1)
        ),
        "laid out like fc3.weight",
    ),
    "onehot - softmax": (lambda m, x, y: -fc3_gradients(m, x, y), "Wrong sign"),
    "with the bias": (
        lambda m, x, y: torch.cat([fc3_gradients(m, x, y), torch.zeros(len(x), 10)], dim=1),
        "shape",
    ),
}


@pytest.mark.parametrize("answer", list(FC3_CORRECT))
def test_fc3_gradient_check_accepts(answer):
    assert gp.checks.check_fc3_per_sample_gradients(FC3_CORRECT[answer])


@pytest.mark.parametrize(("answer", "message"), list(FC3_WRONG.values()), ids=list(FC3_WRONG))
def test_fc3_gradient_check_rejects(answer, message):
    rejects(gp.checks.check_fc3_per_sample_gradients, answer, message)


def damped(G, relative):
    F = G.T @ G / len(G)
    return F + relative * F.diagonal().mean() * torch.eye(len(F), dtype=G.dtype)


DAMPED_WRONG = {
    "no damping": (lambda G, r: G.T @ G / len(G), "No damping"),
    "absolute damping": (
        lambda G, r: G.T @ G / len(G) + r * torch.eye(G.shape[1], dtype=G.dtype),
        "λ is relative",
    ),
    "no 1/N": (lambda G, r: damped(G, r) * len(G), "Divide GᵀG by N"),
}


def test_damped_fisher_check_accepts_an_einsum():
    def by_einsum(G, relative):
        F = torch.einsum("np,nq->pq", G, G) / G.shape[0]
        return F + torch.diag_embed(
            torch.full((F.shape[0],), float(relative * F.trace() / len(F)), dtype=G.dtype)
        )

    assert gp.checks.check_damped_fisher(damped)
    assert gp.checks.check_damped_fisher(by_einsum)


@pytest.mark.parametrize(("answer", "message"), list(DAMPED_WRONG.values()), ids=list(DAMPED_WRONG))
def test_damped_fisher_check_rejects(answer, message):
    rejects(gp.checks.check_damped_fisher, answer, message)


def obs_loop(H, w, count, *, inverse="inv", saliency="obs", sign=1.0, downdate=True):
    """OBS one weight at a time; the keywords give the correct variants and the mistakes."""
    if inverse == "cholesky":
        H_inv = torch.cholesky_inverse(torch.linalg.cholesky(H))
    elif inverse == "float32":
        H_inv = torch.linalg.inv(H.float())
    else:
        H_inv = torch.linalg.inv(H)
    w, pruned = w.clone().to(H_inv.dtype), torch.zeros(len(w), dtype=torch.bool)
    for _ in range(count):
        if inverse == "recompute":  # invert H without the removed rows and columns
            keep = (~pruned).nonzero().squeeze(1)
            H_inv = torch.zeros_like(H)
            H_inv[keep[:, None], keep] = torch.linalg.inv(H[keep[:, None], keep])
        diagonal = {"obs": H_inv.diagonal(), "H": H.diagonal(), "obd": 1 / H.diagonal()}
        score = w.square() / (2 * diagonal[saliency].to(w.dtype))
        q = int(score.masked_fill(pruned, float("inf")).argmin())
        if saliency != "none":
            w = w - sign * w[q] / H_inv[q, q] * H_inv[:, q]
        w[q], pruned[q] = 0.0, True
        if downdate and inverse != "recompute":
            H_inv = H_inv - torch.outer(H_inv[:, q], H_inv[q]) / H_inv[q, q]
    return w.double(), pruned


def obs_zero_only(H, w, count):
    H_inv = torch.linalg.inv(H)
    w, pruned = w.clone(), torch.zeros(len(w), dtype=torch.bool)
    for _ in range(count):
        q = int((w.square() / (2 * H_inv.diagonal())).masked_fill(pruned, float("inf")).argmin())
        w[q], pruned[q] = 0.0, True
    return w, pruned


def obs_largest(H, w, count):
    H_inv = torch.linalg.inv(H)
    w, pruned = w.clone(), torch.zeros(len(w), dtype=torch.bool)
    for _ in range(count):
        q = int((w.square() / H_inv.diagonal()).masked_fill(pruned, -1.0).argmax())
        w = w - w[q] / H_inv[q, q] * H_inv[:, q]
        w[q], pruned[q] = 0.0, True
        H_inv = H_inv - torch.outer(H_inv[:, q], H_inv[q]) / H_inv[q, q]
    return w, pruned


OBS_CORRECT = {
    "inverse + downdate": lambda H, w, c: obs_loop(H, w, c),
    "cholesky": lambda H, w, c: obs_loop(H, w, c, inverse="cholesky"),
    "recomputed inverse": lambda H, w, c: obs_loop(H, w, c, inverse="recompute"),
    "float32 inside": lambda H, w, c: obs_loop(H, w, c, inverse="float32"),
}
OBS_WRONG = {
    "no update, only zeroing": (obs_zero_only, "did not move"),
    "H on the diagonal": (lambda H, w, c: obs_loop(H, w, c, saliency="H"), "not by H_qq"),
    "OBD's saliency": (lambda H, w, c: obs_loop(H, w, c, saliency="obd"), "OBD"),
    "wrong sign": (lambda H, w, c: obs_loop(H, w, c, sign=-1.0), "Wrong sign"),
    "no downdate": (lambda H, w, c: obs_loop(H, w, c, downdate=False), "downdate"),
    "float mask": (lambda H, w, c: (obs_loop(H, w, c)[0], obs_loop(H, w, c)[1].float()), "bool"),
    "largest saliency": (obs_largest, "a different weight was chosen"),
}


@pytest.mark.parametrize("answer", list(OBS_CORRECT))
def test_obs_prune_check_accepts(answer):
    assert gp.checks.check_obs_prune(OBS_CORRECT[answer])


@pytest.mark.parametrize(("answer", "message"), list(OBS_WRONG.values()), ids=list(OBS_WRONG))
def test_obs_prune_check_rejects(answer, message):
    rejects(gp.checks.check_obs_prune, answer, message)


def test_obs_reference_is_the_unconstrained_formula_one_step_at_a_time():
    """The KKT reference agrees with w_q²/(2[H⁻¹]_qq) and −(w_q/[H⁻¹]_qq)·H⁻¹e_q."""
    from gradprune_lite.course.checks.obs import kkt_step

    generator = torch.Generator().manual_seed(0)
    g = torch.randn(30, 7, generator=generator, dtype=torch.float64)
    H = g.T @ g / 30 + 1e-2 * torch.eye(7, dtype=torch.float64)
    w = torch.randn(7, generator=generator, dtype=torch.float64)
    H_inv = torch.linalg.inv(H)
    for q in range(7):
        step = kkt_step(H, w, q)
        assert torch.allclose(step, -w[q] / H_inv[q, q] * H_inv[:, q])
        assert torch.allclose(0.5 * step @ H @ step, w[q] ** 2 / (2 * H_inv[q, q]))


# Exercise 10: the control differs from the ticket only in its values; retraining is SGD.


def rewind_ticket(init_state, masks):
    model = gp.models.lenet_300_100()
    model.load_state_dict(init_state)
    gp.apply_masks(model, masks)
    return model


def control_from(draw):
    """A control whose surviving weights are draw(shape, generator) × the fair per-unit std."""

    def control(init_state, masks, seed):
        generator = torch.Generator().manual_seed(seed)
        state = copy.deepcopy(init_state)
        for name, mask in masks.items():
            std = (
                init_state[name].std()
                * (mask.shape[1] / mask.sum(1, keepdim=True).clamp(min=1)).sqrt()
            )
            state[name] = draw(mask.shape, generator) * std * mask
        return rewind_ticket(state, masks)

    return control


def uniform_unit_variance(shape, generator):
    return (torch.rand(shape, generator=generator) * 2 - 1) * 3**0.5


def default_init(init_state, masks, seed):
    model = gp.models.lenet_300_100(seed=seed)
    gp.apply_masks(model, masks)
    return model


def keeps_signs(init_state, masks, seed):
    model = control_from(lambda s, g: torch.randn(s, generator=g).abs())(init_state, masks, seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in masks:
                p.mul_(init_state[name].sign())
    return model


def shuffled_ticket(init_state, masks, seed):
    generator = torch.Generator().manual_seed(seed)
    state = copy.deepcopy(init_state)
    for name, mask in masks.items():
        values = init_state[name][mask]
        state[name] = torch.zeros_like(init_state[name])
        state[name][mask] = values[torch.randperm(len(values), generator=generator)]
    return rewind_ticket(state, masks)


def layer_average_scale(init_state, masks, seed):
    generator = torch.Generator().manual_seed(seed)
    state = copy.deepcopy(init_state)
    for name, mask in masks.items():
        std = init_state[name].std() * (mask.numel() / mask.sum()).sqrt()
        state[name] = torch.randn(mask.shape, generator=generator) * std * mask
    return rewind_ticket(state, masks)


def fresh_biases(init_state, masks, seed):
    model = control_from(lambda s, g: torch.randn(s, generator=g))(init_state, masks, seed)
    with torch.no_grad():
        model.fc1.bias.add_(0.01)
    return model


def per_column_scale(init_state, masks, seed):
    generator = torch.Generator().manual_seed(seed)
    state = copy.deepcopy(init_state)
    for name, mask in masks.items():
        kept = mask.sum(0, keepdim=True).clamp(min=1)
        std = init_state[name].std() * (mask.shape[0] / kept).sqrt()
        state[name] = torch.randn(mask.shape, generator=generator) * std * mask
    return rewind_ticket(state, masks)


CONTROL_CORRECT = {
    "normal": control_from(lambda s, g: torch.randn(s, generator=g)),
    "uniform, unit variance": control_from(uniform_unit_variance),
}
CONTROL_WRONG = {
    "default initialisation": (default_init, "fair scale"),
    "the ticket's signs": (keeps_signs, "signs are the ticket's"),
    "the ticket's values shuffled": (shuffled_ticket, "reshuffled"),
    "the ticket itself": (lambda i, m, s: rewind_ticket(i, m), "ticket's initial weights"),
    "new biases": (fresh_biases, "keep the initial biases"),
    # The exercise's mask at 97% gives fc1's units very different fan-ins; the check's
    # second mask does too, so one scale for the whole layer is caught there.
    "one scale per layer": (layer_average_scale, "its own surviving fan-in"),
    "scaled per column (fan-out)": (per_column_scale, "its own surviving fan-in"),
    "same draw for every seed": (
        lambda i, m, s: control_from(lambda sh, g: torch.randn(sh, generator=g))(i, m, 0),
        "Another seed",
    ),
}


def test_rewind_check_passes_and_names_trained_weights_and_unheld_masks():
    assert gp.checks.check_rewind(rewind_ticket)

    def not_held(init_state, masks):
        model = gp.models.lenet_300_100()
        model.load_state_dict(init_state)
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, mask in masks.items():
                params[name].mul_(mask)
        return model

    rejects(gp.checks.check_rewind, not_held, "not held during training")


@pytest.mark.parametrize("answer", list(CONTROL_CORRECT))
def test_fair_control_check_accepts(answer):
    assert gp.checks.check_fair_control(CONTROL_CORRECT[answer])


@pytest.mark.parametrize(
    ("answer", "message"), list(CONTROL_WRONG.values()), ids=list(CONTROL_WRONG)
)
def test_fair_control_check_rejects(answer, message):
    rejects(gp.checks.check_fair_control, answer, message)


def sgd_pass(model, batches, lr, *, momentum=0.9, zero_grad=True, fresh=False, reduction="mean"):
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    for images, labels in batches:
        if fresh:
            optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
        if zero_grad:
            optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(images), labels, reduction=reduction)
        loss.backward()
        optimizer.step()
    return model


def sgd_by_hand(model, batches, lr):
    velocity = {p: torch.zeros_like(p) for p in model.parameters()}
    for images, labels in batches:
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        with torch.no_grad():
            for p in model.parameters():
                velocity[p].mul_(0.9).add_(p.grad)
                p.sub_(lr * velocity[p])
    return None


def no_step(model, batches, lr):
    for images, labels in batches:
        torch.nn.functional.cross_entropy(model(images), labels).backward()
    return model


RETRAIN_CORRECT = {"torch.optim.SGD": sgd_pass, "SGD by hand, trained in place": sgd_by_hand}
RETRAIN_WRONG = {
    "no zero_grad": (lambda m, b, lr: sgd_pass(m, b, lr, zero_grad=False), "zero_grad"),
    "no momentum": (lambda m, b, lr: sgd_pass(m, b, lr, momentum=0.0), "No momentum carried"),
    "an optimiser per batch": (
        lambda m, b, lr: sgd_pass(m, b, lr, fresh=True),
        "No momentum carried",
    ),
    "summed loss": (lambda m, b, lr: sgd_pass(m, b, lr, reduction="sum"), "mean loss"),
    "no step": (no_step, "did not change"),
}


@pytest.mark.parametrize("answer", list(RETRAIN_CORRECT))
def test_retrain_check_accepts(answer):
    assert gp.checks.check_retrain(RETRAIN_CORRECT[answer])


@pytest.mark.parametrize(
    ("answer", "message"), list(RETRAIN_WRONG.values()), ids=list(RETRAIN_WRONG)
)
def test_retrain_check_rejects(answer, message):
    rejects(gp.checks.check_retrain, answer, message)
