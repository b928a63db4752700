"""gp.fit: learns real digits, keeps pruned weights at zero, is reproducible."""

from __future__ import annotations

import pytest
import torch

import gradprune_lite as gp


@pytest.fixture(scope="module")
def digits(real_digits):
    return real_digits(4000, 1000)


def test_one_epoch_learns_far_better_than_chance(digits):
    train, test = digits
    model = gp.models.lenet_300_100(seed=0)
    before = gp.evaluate(model, test).accuracy
    history = gp.fit(model, train, epochs=1, lr=0.05, progress=False)
    after = gp.evaluate(model, test).accuracy
    assert len(history["loss"]) == len(history["seconds"]) == 1
    assert before < 0.3 and after > 0.8  # chance is 0.1


def test_pruned_weights_stay_zero_and_masks_unchanged(digits):
    train, _ = digits
    model = gp.models.lenet_300_100(seed=0)
    scores = {n: w.abs() for n, w in gp.prunable_weights(model).items()}
    masks = gp.global_masks(scores, 0.9)
    gp.apply_masks(model, masks)
    gp.fit(model, train.take(1000), epochs=2, lr=0.05, progress=False)
    for name, weight in gp.prunable_weights(model).items():
        assert bool((weight[~masks[name]] == 0).all())
        assert bool((weight[masks[name]] != 0).any())
    assert gp.sparsity(model) == pytest.approx(0.9, abs=1e-5)


def test_same_seed_gives_identical_weights(digits):
    train, _ = digits
    runs = []
    for _ in range(2):
        model = gp.models.lenet_300_100(seed=1)
        gp.fit(model, train.take(512), epochs=1, lr=0.05, seed=5, progress=False, schedule="cosine")
        runs.append(model.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_loss_falls_over_epochs(digits):
    train, _ = digits
    model = gp.models.lenet_300_100(seed=2)
    history = gp.fit(model, train.take(1000), epochs=3, lr=0.05, progress=False, schedule="step")
    assert history["loss"][-1] < history["loss"][0]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"epochs": -1}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": 0.0}, "lr"),
        ({"schedule": "exp"}, "schedule"),
        ({"step_every": 2}, "step_every"),  # needs schedule="step"
        ({"schedule": "step", "step_every": 0}, "step_every"),
    ],
)
def test_bad_arguments_are_errors_and_change_nothing(digits, kwargs, match):
    train, _ = digits
    model = gp.models.lenet_300_100(seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=match):
        gp.fit(model, train.take(10), progress=False, **kwargs)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_step_every_divides_the_rate_by_ten_after_each_period():
    from gradprune_lite.experiment.train import _lr_factor

    factors = [_lr_factor("step", step, 100, step_every=30) for step in (0, 29, 30, 59, 60, 99)]
    assert factors == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01, 0.001])
    # without it, the steps stay at half and three quarters of training
    assert _lr_factor("step", 49, 100) == 1.0 and _lr_factor("step", 50, 100) == 0.1
    assert _lr_factor("step", 75, 100) == pytest.approx(0.01)
