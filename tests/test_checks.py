"""The exercise self-checks pass on a correct answer and name the mistake on a wrong one."""

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


@pytest.mark.parametrize("how", ["torch.sort", "Tensor.sort", "argsort", "sorted"])
def test_threshold_check_rejects_a_full_sort(how):
    def by_sorting(scores, sparsity):
        flat = torch.cat([s.reshape(-1) for s in scores.values()])
        k = round(sparsity * flat.numel())
        if k == 0:
            return {name: torch.ones_like(s, dtype=torch.bool) for name, s in scores.items()}
        if how == "torch.sort":
            t = torch.sort(flat).values[k - 1]
        elif how == "Tensor.sort":
            t = flat.sort().values[k - 1]
        elif how == "argsort":
            t = flat[flat.argsort()[k - 1]]
        else:
            t = sorted(flat.tolist())[k - 1]
        return {name: s > t for name, s in scores.items()}

    with pytest.raises(AssertionError, match="You sorted"):
        gp.checks.check_global_threshold(by_sorting)
    assert torch.sort(torch.tensor([2.0, 1.0])).values.tolist() == [1.0, 2.0], "sort restored"


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


def test_obs_checks_pass_and_name_the_sign_and_the_half():
    assert gp.checks.check_obs_update(lambda F_inv, w, q: -F_inv[:, q] * w[q] / F_inv[q, q])
    with pytest.raises(AssertionError, match="wrong sign"):
        gp.checks.check_obs_update(lambda F_inv, w, q: F_inv[:, q] * w[q] / F_inv[q, q])
    assert gp.checks.check_obs_saliency(lambda F_inv, w: w.square() / (2 * F_inv.diagonal()))
    with pytest.raises(AssertionError, match="½ is missing"):
        gp.checks.check_obs_saliency(lambda F_inv, w: w.square() / F_inv.diagonal())


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
        import copy

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


def test_lottery_checks_name_trained_weights_and_the_same_initialisation():
    def rewind(init_state, masks):
        model = gp.models.lenet_300_100()
        model.load_state_dict(init_state)
        gp.apply_masks(model, masks)
        return model

    assert gp.checks.check_rewind(rewind)

    def not_held(init_state, masks):
        model = gp.models.lenet_300_100()
        model.load_state_dict(init_state)
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, mask in masks.items():
                params[name].mul_(mask)
        return model

    with pytest.raises(AssertionError, match="not held during training"):
        gp.checks.check_rewind(not_held)

    def same_init(masks, seed):
        model = gp.models.lenet_300_100(seed=5)
        gp.apply_masks(model, masks)
        return model

    with pytest.raises(AssertionError, match="ticket's initial weights"):
        gp.checks.check_random_reinit(same_init)
