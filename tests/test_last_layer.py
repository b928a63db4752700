"""course/last_layer.py: the exact last-layer Hessian and removal costs, against
references that run the whole model."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

import gradprune_lite as gp
from gradprune_lite.course.last_layer import last_layer_hessian, removal_changes


@pytest.fixture(scope="module")
def model_and_digits():
    torch.manual_seed(0)
    digits = gp.mnist("train", verbose=False).take(64)
    model = gp.models.lenet_300_100(seed=0)
    # A shrunken last layer keeps the whole-model reference Hessian small: 10 × 8 weights.
    model.fc2 = nn.Linear(300, 8)
    model.fc3 = nn.Linear(8, 10)
    model = model.double()
    return model, digits.images.double(), digits.labels


def test_hessian_matches_torch_func_on_the_whole_model(model_and_digits):
    model, images, labels = model_and_digits
    params = {n: p.detach() for n, p in model.named_parameters()}

    def loss_of(weight):
        logits = functional_call(model, {**params, "fc3.weight": weight}, (images,))
        return F.cross_entropy(logits, labels)

    reference = torch.autograd.functional.hessian(loss_of, params["fc3.weight"])
    ours = last_layer_hessian(model, images, labels)
    assert ours.shape == (80, 80)
    torch.testing.assert_close(ours, reference.reshape(80, 80), rtol=1e-9, atol=1e-12)


def test_removal_changes_match_zeroing_each_weight_in_the_whole_model(model_and_digits):
    model, images, labels = model_and_digits
    changes = removal_changes(model, images, labels)
    assert changes.shape == model.fc3.weight.shape
    with torch.no_grad():
        base = F.cross_entropy(model(images), labels).item()
        for row, col in [(0, 0), (3, 5), (9, 7)]:
            saved = model.fc3.weight[row, col].item()
            model.fc3.weight[row, col] = 0.0
            actual = F.cross_entropy(model(images), labels).item() - base
            model.fc3.weight[row, col] = saved
            assert changes[row, col].item() == pytest.approx(actual, rel=1e-9, abs=1e-14)


def test_a_model_without_a_last_linear_layer_is_refused():
    digits = gp.mnist("train", verbose=False).take(4)
    with pytest.raises(ValueError, match="last module is an nn.Linear"):
        removal_changes(nn.Sequential(nn.Flatten(), nn.ReLU()), digits.images, digits.labels)
    with pytest.raises(ValueError, match="nn.Sequential"):
        last_layer_hessian(nn.Linear(784, 10), digits.images.flatten(1), digits.labels)
