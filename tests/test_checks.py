"""The exercise self-checks pass on a correct answer and name the mistake on a wrong one."""

import pytest
import torch

import gradprune_lite as gp


def stub(*args):
    raise NotImplementedError


def correct_taylor(weights, stats):
    return {name: (w * stats[name].mean).abs() for name, w in weights.items()}


def correct_threshold(scores, sparsity):
    return gp.global_masks(scores, sparsity)


def correct_hook(model, masks, optimizer):
    gp.apply_masks(model, masks, optimizer)


def correct_largest(error_at, levels, limit):
    under = [s for s in levels if error_at(s) < limit]
    return max(under) if under else None


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
def test_check_turns_the_unsolved_stub_into_an_assertion(check):
    with pytest.raises(AssertionError, match="NotImplementedError"):
        check(stub)


def test_taylor_check_names_the_missing_absolute_value():
    def signed(weights, stats):
        return {name: w * stats[name].mean for name, w in weights.items()}

    with pytest.raises(AssertionError, match="absolute value"):
        gp.checks.check_taylor_score(signed)


def test_taylor_check_names_the_missing_weight():
    def gradient_only(weights, stats):
        return {name: stats[name].mean.abs() for name in weights}

    with pytest.raises(AssertionError, match="multiply by the weight"):
        gp.checks.check_taylor_score(gradient_only)


def test_threshold_check_names_one_threshold_per_layer():
    with pytest.raises(AssertionError, match="one threshold per layer"):
        gp.checks.check_global_threshold(gp.layerwise_masks)


def test_threshold_check_names_the_flipped_comparison():
    def keeps_lowest(scores, sparsity):
        return {name: ~m for name, m in gp.global_masks(scores, sparsity).items()}

    with pytest.raises(AssertionError, match="kept the lowest"):
        gp.checks.check_global_threshold(keeps_lowest)


def test_threshold_check_names_the_off_by_one():
    def prunes_one_too_many(scores, sparsity):
        flat = torch.cat([s.reshape(-1) for s in scores.values()])
        k = round(sparsity * flat.numel())
        t = flat.kthvalue(k + 1).values
        return {name: s > t for name, s in scores.items()}

    with pytest.raises(AssertionError, match="one too many"):
        gp.checks.check_global_threshold(prunes_one_too_many)


def test_hook_check_catches_zeroing_only_once():
    @torch.no_grad()
    def zero_once(model, masks, optimizer):
        params = dict(model.named_parameters())
        for name, mask in masks.items():
            params[name].mul_(mask)

    with pytest.raises(AssertionError, match="came back after optimiser step"):
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


def test_largest_sparsity_check_catches_stopping_at_the_first_failure():
    def first_failure(error_at, levels, limit):
        best = None
        for s in sorted(levels):
            if error_at(s) >= limit:
                break
            best = s
        return best

    with pytest.raises(AssertionError, match="first level over the limit"):
        gp.checks.check_largest_sparsity(first_failure)


def test_largest_sparsity_check_catches_less_or_equal():
    def at_most(error_at, levels, limit):
        under = [s for s in levels if error_at(s) <= limit]
        return max(under) if under else None

    with pytest.raises(AssertionError, match="not \\*under\\* 2%"):
        gp.checks.check_largest_sparsity(at_most)
