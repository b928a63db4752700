"""The movement criterion: −Σₜ wₜ·gₜ against a hand-written loop and, on models people
bring (in-place ReLU, BatchNorm, a layer used twice, tied weights), against torch.func."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradprune_lite as gp


def digit_mlp() -> nn.Module:
    torch.manual_seed(7)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10))


@pytest.fixture(scope="module")
def digits():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gp.mnist("train", limit=256, verbose=False, download=False)


def steps(digits, n=6, size=32):
    return [
        (digits.images[i * size : (i + 1) * size], digits.labels[i * size : (i + 1) * size])
        for i in range(n)
    ]


def reference_movement(model: nn.Module, data, lr=0.05, momentum=0.9) -> dict:
    """Plain torch: SGD with momentum written out, −Σ w·g summed before every update."""
    weights = {"1.weight": model[1].weight, "3.weight": model[3].weight}
    params = list(model.parameters())
    velocity = [torch.zeros_like(p) for p in params]
    totals = {name: torch.zeros_like(w) for name, w in weights.items()}
    for x, y in data:
        grads = torch.autograd.grad(F.cross_entropy(model(x), y), params)
        grad_of = {id(p): g for p, g in zip(params, grads)}
        with torch.no_grad():
            for name, w in weights.items():
                totals[name] -= w * grad_of[id(w)]
            for p, g, v in zip(params, grads, velocity):
                v.mul_(momentum).add_(g)
                p.sub_(lr * v)
    return totals


def test_accumulated_scores_equal_a_hand_written_loop(digits):
    model = digit_mlp()
    reference = reference_movement(copy.deepcopy(model), steps(digits))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    movement = gp.MovementScores(model)
    for x, y in steps(digits):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        movement.update(model)
        optimizer.step()
    scores = movement.scores()
    assert movement.steps == 6
    for name, expected in reference.items():
        torch.testing.assert_close(scores[name], expected, rtol=1e-5, atol=1e-7)


def test_the_pruner_accumulates_the_same_scores_from_its_optimiser_hook(digits):
    model = digit_mlp()
    reference = reference_movement(copy.deepcopy(model), steps(digits))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    # Pruning only at step 100: the 6 steps here train densely, as the reference does.
    pruner = gp.GradualPruner(model, "movement", 0.5, 100, 100, 1, optimizer=optimizer)
    for x, y in steps(digits):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        pruner.step()
    for name, expected in reference.items():
        torch.testing.assert_close(pruner.state.scores()[name], expected, rtol=1e-5, atol=1e-7)


def test_a_weight_moving_away_from_zero_scores_high_and_one_moving_to_zero_low():
    layer = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, 0.5, -0.5]]))
    target = torch.tensor([[2.0, 0.0, -2.0]])  # away from 0, towards 0, away (negative)
    model = nn.Sequential(layer)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    movement = gp.MovementScores(model)
    for _ in range(5):
        optimizer.zero_grad()
        (layer.weight - target).square().sum().backward()
        movement.update(model)
        optimizer.step()
    away, towards, away_negative = movement.scores()["0.weight"][0].tolist()
    assert away > 0 and away_negative > 0 and towards < 0
    # |g| alone would rank the weight heading to zero as important; movement does not.
    masks = gp.global_masks(movement.scores(), 1 / 3)
    assert masks["0.weight"].tolist() == [[True, False, True]]


def test_one_shot_score_is_minus_weight_times_the_mean_gradient(digits):
    model = digit_mlp()
    data = steps(digits, 2)
    scores = gp.score(model, "movement", data)
    x = torch.cat([x for x, _ in data])
    y = torch.cat([y for _, y in data])
    weights = [model[1].weight, model[3].weight]
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), weights)
    for name, w, g in zip(("1.weight", "3.weight"), weights, grads):
        torch.testing.assert_close(scores[name], -(w.detach() * g), rtol=1e-4, atol=1e-7)
    taylor = gp.score(model, "taylor", data)
    torch.testing.assert_close(scores["1.weight"].abs(), taylor["1.weight"])


def test_update_with_another_model_is_refused():
    movement = gp.MovementScores(digit_mlp())
    with pytest.raises(ValueError, match="different model"):
        movement.update(digit_mlp())


def test_in_gp_prune_rounds_movement_ranks_by_one_step(digits):
    """gp.prune makes a fresh state that nothing feeds: the ranking is −w·ḡ on the batches."""
    model = digit_mlp()
    data = steps(digits, 2)
    expected = gp.global_masks(gp.score(model, "movement", data), 0.6)
    masks = gp.prune(model, "movement", 0.6, data)
    for name, mask in expected.items():
        assert torch.equal(masks[name], mask)


# --- Models people bring, against torch.func step by step ----------------------------------


class ConvBatchNorm(nn.Module):
    """Conv → BatchNorm → in-place ReLU → Linear, trained in train mode (batch statistics)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        return self.fc(self.relu(self.bn(self.conv(x))).flatten(1))


def func_movement_reference(model: nn.Module, data, loss_fn) -> dict:
    """(library, reference): −Σₜ wₜ·gₜ from ``gp.MovementScores`` and from torch.func.

    Trains ``model`` itself with SGD (momentum 0.9) and a ``gp.MovementScores`` attached; the
    reference takes gₜ from torch.func (functional_call + grad) at each step's weights. The reference never reads ``.grad``:
    it differentiates a functional copy (BatchNorm without running statistics, which train
    mode does not use for the output) at a detached copy of the current parameters.
    """
    from torch.func import functional_call, grad, replace_all_batch_norm_modules_

    functional = replace_all_batch_norm_modules_(copy.deepcopy(model))
    names = list(gp.prunable_weights(model))
    reference = {n: torch.zeros_like(gp.prunable_weights(model)[n]) for n in names}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    movement = gp.MovementScores(model)

    def loss(params, x, y):
        return loss_fn(functional_call(functional, params, (x,)), y)

    for x, y in data:
        params = {k: v.detach().clone() for k, v in model.named_parameters()}
        grads = grad(loss)(params, x, y)
        for name in names:
            reference[name] -= params[name] * grads[name]
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        movement.update(model)
        optimizer.step()
    return movement.scores(), reference


def labelled_steps(n_steps, shape, classes, seed=0, size=8):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(size, *shape, generator=g), torch.randint(0, classes, (size,), generator=g))
        for _ in range(n_steps)
    ]


def _real_model(name):
    """A model of tests/test_real_models.py (imported there, so its tests are not re-collected)."""
    import test_real_models

    return getattr(test_real_models, name)


@pytest.mark.parametrize(
    ("build", "in_shape", "classes"),
    [
        pytest.param(lambda: _real_model("vgg_style")(), (3, 8, 8), 5, id="inplace-relu"),
        pytest.param(ConvBatchNorm, (1, 8, 8), 3, id="batchnorm"),
        pytest.param(lambda: _real_model("UsedTwice")(), (5,), 3, id="layer-used-twice"),
    ],
)
def test_movement_equals_torch_func_step_by_step(build, in_shape, classes):
    model = build()
    data = labelled_steps(4, in_shape, classes)
    scores, reference = func_movement_reference(model, data, F.cross_entropy)
    assert list(scores) == list(reference)
    for name, expected in reference.items():
        assert float(expected.abs().max()) > 0, f"{name}: the reference moved nothing"
        torch.testing.assert_close(scores[name], expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("transposed", [False, True], ids=["tied-layer", "tied-transpose"])
def test_tied_weight_accumulates_the_gradient_of_both_uses(transposed):
    model = _real_model("TiedAutoencoder")(transposed)
    g = torch.Generator().manual_seed(5)
    data = [(x, x.clone()) for x in (torch.randn(6, 8, generator=g) for _ in range(4))]
    scores, reference = func_movement_reference(model, data, _real_model("mse"))
    assert list(scores) == ["enc.weight"]
    torch.testing.assert_close(scores["enc.weight"], reference["enc.weight"], rtol=1e-4, atol=1e-6)
