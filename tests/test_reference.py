"""The dense reference: validation split, fingerprint and the on-disk cache."""

from __future__ import annotations

import pytest
import torch

import gradprune_lite as gp
from gradprune_lite.experiment.reference import fingerprint


def test_splits_hold_out_the_end_of_the_training_digits():
    train, validation, test = gp.splits()
    full = gp.mnist("train", verbose=False)
    assert len(train) + len(validation) == len(full)
    assert round(len(full) / 12) == len(validation)
    assert torch.equal(validation.labels, full.labels[len(train) :])
    assert len(test) == len(gp.mnist("test", verbose=False))
    assert "validation" in validation.source


def test_fingerprint_tells_data_apart(real_digits):
    train, _ = real_digits(200, 10)
    assert fingerprint(train) == fingerprint(train.take(200))
    assert fingerprint(train) != fingerprint(train.take(199))


def test_trained_is_cached_and_reloaded_exactly(tmp_path, real_digits):
    train, _ = real_digits(300, 10)
    first = gp.trained(train=train, epochs=1, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 1
    again = gp.trained(train=train, epochs=1, cache_dir=tmp_path)
    for a, b in zip(first.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    other_seed = gp.trained(train=train, epochs=1, seed=1, cache_dir=tmp_path)
    assert not torch.equal(other_seed.fc1.weight, first.fc1.weight)
    assert not first.training


def test_trained_rejects_unknown_models():
    with pytest.raises(ValueError, match="unknown model"):
        gp.trained("resnet")


def test_trained_weights_do_not_depend_on_the_callers_thread_count(tmp_path, real_digits):
    train, _ = real_digits(600, 10)
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        results.append(gp.trained(train=train, epochs=1, cache=False))
        assert torch.get_num_threads() == threads  # restored after training
    for a, b in zip(results[0].state_dict().values(), results[1].state_dict().values()):
        assert torch.equal(a, b)
