"""gp.GradualPruner: schedules, monotone exact sparsity, masks held, statistics, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradprune_lite as gp
from gradprune_lite.core import criteria


def digit_mlp() -> nn.Module:
    torch.manual_seed(5)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 24), nn.ReLU(), nn.Linear(24, 10))


@pytest.fixture(scope="module")
def digits():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gp.mnist("train", limit=512, verbose=False, download=False)


def batches(digits, steps: int, size: int = 32):
    for t in range(steps):
        start = (t * size) % len(digits)
        yield digits.images[start : start + size], digits.labels[start : start + size]


def train(model, optimizer, pruner, digits, steps, after_step=None):
    for t, (x, y) in enumerate(batches(digits, steps)):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        pruner.step()
        if after_step is not None:
            after_step(t)


def masked_count(model) -> int:
    return sum(int((~m).sum()) for m in gp.current_masks(model).values())


def total_weights(model) -> int:
    return sum(w.numel() for w in gp.prunable_weights(model).values())


@pytest.mark.parametrize("t", [10, 11, 17, 25, 33, 40])
def test_cubic_schedule_is_zhu_and_gupta_closed_form(t):
    s_i, s_f, t0, n, dt = 0.1, 0.9, 10, 6, 5
    expected = s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt)) ** 3
    assert gp.gradual_sparsity(t, s_f, t0, t0 + n * dt, "cubic", s_i) == pytest.approx(expected)


@pytest.mark.parametrize("t", [10, 12, 25, 39])
def test_linear_and_exponential_schedules_match_their_closed_forms(t):
    s_i, s_f, t0, t1 = 0.2, 0.95, 10, 40
    f = (t - t0) / (t1 - t0)
    linear = gp.gradual_sparsity(t, s_f, t0, t1, "linear", s_i)
    exponential = gp.gradual_sparsity(t, s_f, t0, t1, "exponential", s_i)
    assert linear == pytest.approx(s_i + (s_f - s_i) * f)
    assert 1 - exponential == pytest.approx((1 - s_i) * ((1 - s_f) / (1 - s_i)) ** f)


@pytest.mark.parametrize("schedule", ["cubic", "linear", "exponential"])
def test_schedule_is_zero_before_start_exact_at_end_and_never_decreases(schedule):
    values = [gp.gradual_sparsity(t, 0.97, 5, 50, schedule, 0.3) for t in range(70)]
    assert values[:5] == [0.0] * 5
    assert values[5] == pytest.approx(0.3)
    assert values[50:] == [0.97] * 20  # exactly, not 0.97 up to round-off
    assert all(b >= a for a, b in zip(values, values[1:]))


def test_pruning_steps_are_start_every_and_end():
    pruner = gp.GradualPruner(digit_mlp(), "magnitude", 0.8, 3, 20, 5)
    assert pruner.pruning_steps == [3, 8, 13, 18, 20]
    assert [t for t in range(30) if pruner.is_pruning_step(t)] == pruner.pruning_steps


@pytest.mark.parametrize("schedule", ["cubic", "linear", "exponential"])
def test_sparsity_is_monotone_exact_at_each_pruning_step_and_nothing_revives(digits, schedule):
    model = digit_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    pruner = gp.GradualPruner(model, "magnitude", 0.9, 2, 26, 4, schedule, optimizer=optimizer)
    n = total_weights(model)
    seen = {"count": 0, "pruned": {}}

    def check(t):
        count = masked_count(model)
        assert count >= seen["count"], f"sparsity fell at step {t}"
        if pruner.is_pruning_step(t):
            assert count == round(pruner.sparsity_at(t) * n)
        for name, mask in gp.current_masks(model).items():
            before = seen["pruned"].get(name)
            if before is not None:
                assert not (before & mask).any(), f"a pruned weight of {name} revived"
            seen["pruned"][name] = ~mask
        assert gp.sparsity(model) == pytest.approx(count / n)
        seen["count"] = count

    train(model, optimizer, pruner, digits, 30, check)
    assert masked_count(model) == round(0.9 * n)
    assert [t for t, _ in pruner.history] == pruner.pruning_steps


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9),
        lambda params: torch.optim.Adam(params, lr=0.01),
    ],
    ids=["sgd-momentum", "adam"],
)
def test_masks_hold_between_pruning_steps_with_stateful_optimisers(digits, make_optimizer):
    model = digit_mlp()
    optimizer = make_optimizer(model.parameters())
    pruner = gp.GradualPruner(model, "taylor", 0.7, 0, 12, 6, optimizer=optimizer)

    def check(t):
        for name, module in gp.core.layers.prunable_modules(model).items():
            mask = gp.current_masks(model).get(name)
            if mask is None:
                continue
            assert (module.weight[~mask] == 0).all(), f"pruned weights of {name} moved at {t}"
            for value in optimizer.state[module.weight].values():
                if isinstance(value, torch.Tensor) and value.shape == mask.shape:
                    assert (value[~mask] == 0).all(), f"optimiser state revives {name}"

    train(model, optimizer, pruner, digits, 20, check)
    assert masked_count(model) == round(0.7 * total_weights(model))


@pytest.mark.parametrize(
    "criterion, options",
    [
        ("magnitude", {}),
        ("random", {"seed": 3}),
        ("gradient", {}),
        ("taylor", {}),
        ("snip", {}),
        ("fisher", {}),
        ("movement", {}),
        ("synflow", {"input_shape": (1, 28, 28)}),
    ],
)
def test_every_gradient_statistic_or_data_free_criterion_reaches_the_target(
    digits, criterion, options
):
    model = digit_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    pruner = gp.GradualPruner(model, criterion, 0.8, 0, 9, 3, optimizer=optimizer, **options)
    train(model, optimizer, pruner, digits, 12)
    assert masked_count(model) == round(0.8 * total_weights(model))


def test_criteria_read_the_mean_and_square_of_the_window_gradients(digits):
    """ctx.stats averages the .grad of each optimiser step since the last pruning step."""
    model = digit_mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    seen = []

    def recorder(ctx):
        seen.append(
            {name: (s.mean.clone(), s.sq_mean.clone(), s.count) for name, s in ctx.stats.items()}
        )
        return {name: w.abs() for name, w in ctx.weights.items()}

    gp.register_criterion("test_window", recorder, options=())
    try:
        pruner = gp.GradualPruner(model, "test_window", 0.5, 2, 5, 3, optimizer=optimizer)
        seen.clear()  # the construction's dry run
        grads = []
        for x, y in batches(digits, 6):
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            grads.append(model[1].weight.grad.clone())
            optimizer.step()
            pruner.step()
    finally:
        criteria.CRITERIA.pop("test_window")
    # Pruning steps 2 and 5: windows are steps 0-2 and 3-5.
    assert len(seen) == 2
    for record, window in zip(seen, (grads[:3], grads[3:])):
        mean, sq_mean, count = record["1.weight"]
        stacked = torch.stack(window)
        assert count == 3
        torch.testing.assert_close(mean, stacked.mean(0))
        torch.testing.assert_close(sq_mean, stacked.square().mean(0))


def test_gp_fit_drives_the_pruner(digits):
    model = digit_mlp()
    pruner = gp.GradualPruner(model, "movement", 0.85, 0, 10, 2)
    gp.fit(model, digits, 1, 0.05, batch_size=32, progress=False, pruner=pruner)
    assert pruner.step_count == 16  # 512 digits / 32
    assert masked_count(model) == round(0.85 * total_weights(model))


def test_step_without_an_optimiser_says_how_to_attach_one():
    pruner = gp.GradualPruner(digit_mlp(), "magnitude", 0.5, 0, 4, 1)
    with pytest.raises(ValueError, match="attach"):
        pruner.step()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"final_sparsity": 1.0}, "below 1"),
        ({"final_sparsity": -0.1}, r"in \[0, 1\]"),
        ({"final_sparsity": "0.9"}, "number"),
        ({"initial_sparsity": 0.95}, "must not exceed"),
        ({"start_step": 10, "end_step": 5}, "must not come before"),
        ({"start_step": -1}, "start_step"),
        ({"every": 0}, "every"),
        ({"every": True}, "every"),
        ({"every": 2.5}, "every"),
        ({"schedule": "quadratic"}, "schedule"),
        ({"scope": "local"}, "scope"),
        ({"criterion": "magnitud"}, "unknown criterion"),
        ({"criterion": "obs"}, "moves the surviving weights"),
        ({"criterion": "grasp"}, "its own passes over data"),
        ({"criterion": "synflow"}, "input_shape"),
        ({"criterion": "taylor", "loss_fn": F.cross_entropy}, "do not apply"),
        ({"criterion": "random", "seeds": 1}, "does not take"),
        ({"exclude": "fc9.weight"}, "fc9"),
    ],
)
def test_bad_arguments_raise_clear_errors_and_change_nothing(kwargs, message):
    model = digit_mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    arguments = {
        "criterion": "magnitude",
        "final_sparsity": 0.9,
        "start_step": 0,
        "end_step": 10,
        "every": 2,
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        gp.GradualPruner(model, **arguments)
    assert gp.current_masks(model) == {}
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_a_resumed_pruner_ends_exactly_where_an_uninterrupted_one_does(digits, tmp_path):
    def run(interrupt_at=None):
        model = digit_mlp()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        pruner = gp.GradualPruner(model, "movement", 0.8, 0, 12, 3, optimizer=optimizer)
        for t, (x, y) in enumerate(batches(digits, 16)):
            if t == interrupt_at:
                path = tmp_path / "checkpoint.pt"
                torch.save(
                    {
                        "model": model.state_dict(),
                        "masks": gp.current_masks(model),
                        "optimizer": optimizer.state_dict(),
                        "pruner": pruner.state_dict(),
                    },
                    path,
                )
                saved = torch.load(path, weights_only=True)
                model = digit_mlp()
                model.load_state_dict(saved["model"])
                optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
                optimizer.load_state_dict(saved["optimizer"])
                gp.apply_masks(model, saved["masks"], optimizer)
                pruner = gp.GradualPruner(model, "movement", 0.8, 0, 12, 3, optimizer=optimizer)
                pruner.load_state_dict(saved["pruner"])
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            pruner.step()
        return model, pruner

    straight, straight_pruner = run()
    resumed, resumed_pruner = run(interrupt_at=7)  # between pruning steps 6 and 9
    assert resumed_pruner.history == straight_pruner.history
    for a, b in zip(straight.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b)
    for name, mask in gp.current_masks(straight).items():
        assert torch.equal(mask, gp.current_masks(resumed)[name])
