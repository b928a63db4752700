"""gp.save / gp.load: sparse, bit-exact, and safe against bad files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

import gradprune_lite as gp
from conftest import small_mlp
from gradprune_lite.core import io as checkpoint

DATA = Path(__file__).parent / "data"


def pruned(build, sparsity, seed=0):
    model = build(seed=seed)
    generator = torch.Generator().manual_seed(seed)
    scores = {
        n: torch.rand(w.shape, generator=generator) for n, w in gp.prunable_weights(model).items()
    }
    gp.apply_masks(model, gp.global_masks(scores, sparsity))
    return model


def same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]) for k in sa
    )


@pytest.mark.parametrize("sparsity", [0.5, 0.99, 0.999])
def test_round_trip_is_bit_exact_and_restores_masks(tmp_path, sparsity):
    model = pruned(gp.models.lenet5, sparsity)
    path = tmp_path / "model.pt"
    gp.save(model, path)
    restored = gp.load(path, gp.models.lenet5(seed=9))
    assert same_state(model, restored)
    masks, back = gp.current_masks(model), gp.current_masks(restored)
    assert masks.keys() == back.keys()
    assert all(torch.equal(masks[n], back[n]) for n in masks)


def test_positions_use_the_smaller_encoding():
    dense_ish = checkpoint.sparse_state(pruned(gp.models.lenet_300_100, 0.5))
    very_sparse = checkpoint.sparse_state(pruned(gp.models.lenet_300_100, 0.995))
    assert "bitmask" in dense_ish["sparse"]["fc1.weight"]
    assert "indices" in very_sparse["sparse"]["fc1.weight"]
    # Bits cost numel/8 bytes; int32 indices 4 bytes per kept weight.
    entry = very_sparse["sparse"]["fc1.weight"]
    assert entry["indices"].numel() * 4 < 784 * 300 / 8


def test_file_holds_only_kept_values_and_is_smaller_than_dense(tmp_path):
    model = pruned(gp.models.lenet_300_100, 0.95)
    state = checkpoint.sparse_state(model)
    kept = sum(int(m.sum()) for m in gp.current_masks(model).values())
    assert sum(e["values"].numel() for e in state["sparse"].values()) == kept
    sizes = gp.checkpoint_sizes(model)
    gp.save(model, tmp_path / "sparse.pt")
    torch.save(model.state_dict(), tmp_path / "dense.pt")
    # torch.save names the archive after the file, so sizes agree to a few bytes only.
    assert sizes["sparse_bytes"] == pytest.approx((tmp_path / "sparse.pt").stat().st_size, rel=0.01)
    assert sizes["dense_bytes"] == pytest.approx((tmp_path / "dense.pt").stat().st_size, rel=0.01)
    assert sizes["sparse_bytes"] < sizes["dense_bytes"] / 5


def test_unmasked_model_round_trips_with_its_zeros(tmp_path):
    model = gp.models.lenet_300_100(seed=0)
    with torch.no_grad():
        model.fc2.weight[:50] = 0
    gp.save(model, tmp_path / "m.pt")
    restored = gp.load(tmp_path / "m.pt", gp.models.lenet_300_100(seed=1))
    assert same_state(model, restored)
    assert gp.current_masks(restored) == {}


def test_file_is_readable_with_weights_only(tmp_path):
    gp.save(pruned(gp.models.lenet_300_100, 0.9), tmp_path / "m.pt")
    loaded = torch.load(tmp_path / "m.pt", weights_only=True)
    assert loaded["format"] == checkpoint.FORMAT


def test_truncated_file_is_an_error_and_model_untouched(tmp_path):
    path = tmp_path / "m.pt"
    gp.save(pruned(gp.models.lenet_300_100, 0.9), path)
    path.write_bytes(path.read_bytes()[:2000])
    target = gp.models.lenet_300_100(seed=5)
    before = gp.models.lenet_300_100(seed=5)
    with pytest.raises(ValueError, match="corrupt"):
        gp.load(path, target)
    assert same_state(target, before)


def test_shape_mismatch_is_an_error_and_model_untouched(tmp_path):
    path = tmp_path / "m.pt"
    gp.save(pruned(gp.models.lenet_300_100, 0.9), path)
    target = gp.models.lenet5(seed=5)
    with pytest.raises(ValueError, match="does not fit this model"):
        gp.load(path, target)
    assert same_state(target, gp.models.lenet5(seed=5))
    wider = torch.nn.Sequential(torch.nn.Flatten())
    wider.add_module("fc1", torch.nn.Linear(784, 301))
    wider.add_module("fc2", torch.nn.Linear(301, 100))
    wider.add_module("fc3", torch.nn.Linear(100, 10))
    before = {k: v.clone() for k, v in wider.state_dict().items()}
    with pytest.raises(ValueError, match="shape"):
        gp.load(path, wider)
    assert all(torch.equal(before[k], v) for k, v in wider.state_dict().items())


def test_tampered_values_count_is_an_error(tmp_path):
    state = checkpoint.sparse_state(pruned(gp.models.lenet_300_100, 0.9))
    state["sparse"]["fc2.weight"]["values"] = state["sparse"]["fc2.weight"]["values"][:-1]
    torch.save(state, tmp_path / "m.pt")
    target = gp.models.lenet_300_100(seed=5)
    with pytest.raises(ValueError, match="corrupt"):
        gp.load(tmp_path / "m.pt", target)
    assert same_state(target, gp.models.lenet_300_100(seed=5))


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no checkpoint"):
        gp.load(tmp_path / "absent.pt", gp.models.lenet_300_100())


def test_a_file_written_by_release_0_1_0_still_loads():
    """tests/data/checkpoint_v1.pt was written by gp.save of 0.1.0 (make_checkpoint_fixture.py)
    and is never rewritten; every later release must restore it bit-exactly, masks included."""
    data = Path(__file__).resolve().parent / "data"
    spec = importlib.util.spec_from_file_location("fixture", data / "make_checkpoint_fixture.py")
    fixture = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixture)
    expected = torch.load(data / "checkpoint_v1_expected.pt", weights_only=True)
    model = gp.load(data / "checkpoint_v1.pt", fixture.fixture_model())
    state = model.state_dict()
    assert state.keys() == expected["state"].keys()
    assert all(torch.equal(state[k], expected["state"][k]) for k in state)
    masks = gp.current_masks(model)
    assert sorted(expected["masks"]) == ["0.weight", "2.weight"]
    for name, mask in masks.items():  # a layer saved unmasked may come back with a keep-all mask
        assert torch.equal(mask, expected["masks"].get(name, torch.ones_like(mask)))
    assert set(expected["masks"]) <= set(masks)


def v0_1_model():
    """The model tests/data/save_v0_1_masks.pt was written from, by gp.save of version 0.1.0.

    The small MLP of conftest, 1.weight masked at 50% by magnitude with its first kept
    weight set to exactly zero, 3.weight unmasked with its first five entries zero.
    """
    model = small_mlp()
    masks = gp.global_masks({"1.weight": gp.score(model, "magnitude")["1.weight"]}, 0.5)
    with torch.no_grad():
        model[1].weight.mul_(masks["1.weight"])
        model[1].weight.view(-1)[masks["1.weight"].flatten().nonzero()[0, 0]] = 0.0
        model[3].weight.view(-1)[:5] = 0.0
    return model, masks


def test_a_file_written_by_version_0_1_still_loads_with_its_masks():
    expected, masks = v0_1_model()
    restored = gp.load(DATA / "save_v0_1_masks.pt", small_mlp())
    assert same_state(restored, expected)
    back = gp.current_masks(restored)
    assert set(back) == {"1.weight"}  # 3.weight was saved unmasked, and stays so
    assert torch.equal(back["1.weight"], masks["1.weight"])  # the kept zero is still kept


def test_a_loaded_checkpoint_trained_with_a_new_optimizer_stays_pruned(tmp_path):
    """Item 1: gp.save → gp.load into a fresh model, then a new Adam (was 0.000 sparsity)."""
    model = pruned(gp.models.lenet_300_100, 0.8)
    gp.save(model, tmp_path / "m.pt")
    restored = gp.load(tmp_path / "m.pt", gp.models.lenet_300_100(seed=3))
    masks = gp.current_masks(restored)
    optimizer = torch.optim.Adam(restored.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        x = torch.randn(16, 1, 28, 28, generator=generator)
        y = torch.randint(0, 10, (16,), generator=generator)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(restored(x), y).backward()
        optimizer.step()
    weights = gp.prunable_weights(restored)
    assert all((weights[n].detach()[~m] == 0).all() for n, m in masks.items())
    assert gp.sparsity(restored) == pytest.approx(0.8, abs=1e-4)
