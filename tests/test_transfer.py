"""The Split-MNIST transfer task: digits cut and relabelled, a new head, one short run."""

from __future__ import annotations

import warnings

import pytest
import torch

import gradprune_lite as gp
from gradprune_lite.experiment import transfer


@pytest.fixture(scope="module")
def digits():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gp.mnist("train", limit=600, verbose=False, download=False)


def test_digits_of_keeps_the_range_and_relabels_from_zero(digits):
    upper = transfer.digits_of(digits, 5, 9, "digits 5-9")
    assert len(upper) == int((digits.labels >= 5).sum())
    assert set(upper.labels.tolist()) == {0, 1, 2, 3, 4}
    torch.testing.assert_close(upper.images, digits.images[digits.labels >= 5])


def test_new_head_keeps_the_body_and_replaces_fc3_with_a_seeded_five_way_layer():
    base = gp.models.lenet_300_100(seed=3)
    net = transfer.with_new_head(base, seed=1)
    assert net.fc3.weight.shape == (5, 100)
    torch.testing.assert_close(net.fc1.weight, base.fc1.weight)
    torch.testing.assert_close(net.fc2.weight, base.fc2.weight)
    torch.testing.assert_close(transfer.with_new_head(base, 1).fc3.weight, net.fc3.weight)
    assert not torch.equal(transfer.with_new_head(base, 2).fc3.weight, net.fc3.weight)


@pytest.mark.parametrize("method", ["magnitude", "movement"])
def test_fine_prune_reaches_the_sparsity_over_fc1_fc2_and_leaves_head_and_base(digits, method):
    base = gp.models.lenet_300_100(seed=0)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    train = transfer.digits_of(digits, 5, 9, "digits 5-9")
    model = transfer.fine_prune(base, train, method, 0.9, 0.01, epochs=1, seed=0)
    assert transfer.pruned_fraction(model) == pytest.approx(0.9, abs=1e-5)
    assert bool((model.fc3.weight != 0).all())  # the new head is never pruned
    for key, value in base.state_dict().items():
        assert torch.equal(value, before[key])


def test_fine_prune_refuses_an_unknown_method_and_a_dense_sparsity(digits):
    base = gp.models.lenet_300_100(seed=0)
    with pytest.raises(ValueError, match="method must be one of"):
        transfer.fine_prune(base, digits, "snip", 0.9, 0.01, 1, 0)
    with pytest.raises(ValueError, match="dense runs at sparsity 0"):
        transfer.fine_prune(base, digits, "dense", 0.9, 0.01, 1, 0)
