"""Exact selection: kth_smallest against torch.kthvalue, masks against a stable sort and torch.prune.

The sampling path is tested on small inputs by lowering ``SMALL_INPUT`` and ``SAMPLE_SIZE``,
so hypothesis can try hundreds of cases (ties, ±0, band misses) in a second; one test runs a
real input above the cutoff. Both sweeps (compiled numba and pure torch) run every case.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import prune as torch_prune

import gradprune_lite as gp
from gradprune_lite.core import _band_kernel
from gradprune_lite.core import selection as sel

SWEEPS = ["compiled", "torch"]


@contextlib.contextmanager
def sweep_path(path: str, small_input: int | None = None, sample_size: int | None = None):
    """Force one sweep implementation, and optionally a tiny cutoff and sample."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_band_kernel, "DISABLED", path == "torch")
        if small_input is not None:
            mp.setattr(sel, "SMALL_INPUT", small_input)
        if sample_size is not None:
            mp.setattr(sel, "SAMPLE_SIZE", sample_size)
        # Several chunks per tensor even for tiny inputs, so chunk bookkeeping is exercised.
        mp.setattr(_band_kernel, "CHUNK", 8)
        yield


def reference_kth(tensors, k):
    return torch.cat([t.flatten() for t in tensors]).kthvalue(k).values


def reference_masks(scores: dict, k: int) -> dict:
    """Prune the k lowest; ties in (dict order, flat index) order, via a stable sort."""
    flat = torch.cat([s.flatten() for s in scores.values()])
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    keep[torch.sort(flat, stable=True).indices[:k]] = False
    out, start = {}, 0
    for name, s in scores.items():
        out[name] = keep[start : start + s.numel()].reshape(s.shape)
        start += s.numel()
    return out


# Few distinct values force ties; ±0 and negatives included on purpose.
tie_values = st.sampled_from([-2.5, -1.0, -0.0, 0.0, 0.5, 1.0, 3.0])
any_values = st.floats(-1e6, 1e6, allow_nan=False, width=32)
tensor_lists = st.lists(
    st.lists(st.one_of(tie_values, any_values), min_size=1, max_size=60), min_size=1, max_size=4
)


@pytest.mark.parametrize("path", SWEEPS)
@settings(max_examples=60, deadline=None)
@given(data=tensor_lists, pick=st.floats(0, 1))
def test_kth_smallest_equals_kthvalue_on_sampling_path(path, data, pick):
    tensors = [torch.tensor(values, dtype=torch.float32) for values in data]
    total = sum(t.numel() for t in tensors)
    k = 1 + round(pick * (total - 1))
    with sweep_path(path, small_input=4, sample_size=8):
        got = gp.kth_smallest(tensors, k)
    assert torch.equal(got, reference_kth(tensors, k))


@settings(max_examples=100, deadline=None)
@given(data=tensor_lists, pick=st.floats(0, 1))
def test_kth_smallest_equals_kthvalue_on_small_inputs(data, pick):
    tensors = [torch.tensor(values, dtype=torch.float32) for values in data]
    total = sum(t.numel() for t in tensors)
    k = 1 + round(pick * (total - 1))
    assert torch.equal(gp.kth_smallest(tensors, k), reference_kth(tensors, k))


@pytest.mark.parametrize("path", SWEEPS)
def test_band_miss_is_widened_not_assumed(path):
    # A zero-width band around a 2-element sample misses almost always; the result must not care.
    generator = torch.Generator().manual_seed(3)
    tensors = [torch.randn(500, generator=generator), torch.randn(37, generator=generator)]
    with sweep_path(path, small_input=4, sample_size=2), pytest.MonkeyPatch.context() as mp:
        mp.setattr(sel, "BAND_SIGMAS", 0.0)
        for k in [1, 2, 100, 268, 269, 536, 537]:
            assert torch.equal(gp.kth_smallest(tensors, k), reference_kth(tensors, k))


@pytest.mark.parametrize("path", SWEEPS)
def test_large_input_takes_the_sampling_path_and_is_exact(path, monkeypatch):
    generator = torch.Generator().manual_seed(0)
    # Above the default cutoff; rounded values give many ties around every quantile.
    tensors = [
        (torch.randn(300, 400, generator=generator) * 50).round(),
        (torch.randn(90_000, generator=generator) * 50).round(),
    ]
    assert sum(t.numel() for t in tensors) > sel.SMALL_INPUT
    calls = []
    target = "_locate_torch" if path == "torch" else "_locate_compiled"
    original = getattr(sel, target)
    monkeypatch.setattr(sel, target, lambda *a: calls.append(1) or original(*a))
    with sweep_path(path):
        for k in [1, 12_345, 105_000, 210_000]:
            assert torch.equal(gp.kth_smallest(tensors, k), reference_kth(tensors, k))
    assert len(calls) == 4


@pytest.mark.parametrize("path", SWEEPS)
def test_empty_tensors_among_the_inputs_are_ignored(path):
    tensors = [torch.empty(0), torch.randn(40), torch.empty(0, 3), torch.randn(25)]
    with sweep_path(path, small_input=4, sample_size=8):
        for k in [1, 30, 65]:
            assert torch.equal(gp.kth_smallest(tensors, k), reference_kth(tensors, k))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_other_dtypes_are_exact(dtype):
    generator = torch.Generator().manual_seed(1)
    tensors = [torch.randn(300, generator=generator).to(dtype), torch.randn(50).to(dtype)]
    with sweep_path("compiled", small_input=4, sample_size=16):
        for k in [1, 77, 350]:
            assert torch.equal(gp.kth_smallest(tensors, k), reference_kth(tensors, k))


def test_kth_smallest_rejects_k_out_of_range():
    with pytest.raises(ValueError, match="k must be in"):
        gp.kth_smallest([torch.zeros(3)], 0)
    with pytest.raises(ValueError, match="k must be in"):
        gp.kth_smallest([torch.zeros(3)], 4)


@pytest.mark.parametrize("path", SWEEPS)
@settings(max_examples=60, deadline=None)
@given(data=tensor_lists, sparsity=st.floats(0, 1))
def test_global_masks_match_stable_sort_reference(path, data, sparsity):
    scores = {f"layer{i}": torch.tensor(values) for i, values in enumerate(data)}
    total = sum(s.numel() for s in scores.values())
    with sweep_path(path, small_input=4, sample_size=8):
        masks = gp.global_masks(scores, sparsity)
    expected = reference_masks(scores, round(sparsity * total))
    assert list(masks) == list(scores)
    for name in scores:
        assert masks[name].dtype == torch.bool
        assert torch.equal(masks[name], expected[name])


def test_all_equal_scores_prune_in_dict_then_index_order():
    scores = {"b": torch.ones(2, 3), "a": torch.ones(4)}
    masks = gp.global_masks(scores, 0.5)  # 5 of 10
    assert masks["b"].flatten().tolist() == [False] * 5 + [True]
    assert masks["a"].tolist() == [True] * 4


@pytest.mark.parametrize("sparsity, kept", [(0.0, 10), (1.0, 0)])
def test_global_masks_k_zero_and_k_total(sparsity, kept):
    masks = gp.global_masks({"w": torch.randn(10)}, sparsity)
    assert masks["w"].dtype == torch.bool
    assert int(masks["w"].sum()) == kept


@pytest.mark.parametrize("path", SWEEPS)
def test_global_masks_equal_torch_global_unstructured(path):
    generator = torch.Generator().manual_seed(7)
    layers = nn.Sequential(nn.Linear(400, 300), nn.Linear(300, 100), nn.Linear(100, 10))
    with torch.no_grad():
        for layer in layers:  # continuous random weights: no ties in |w|
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator))
    scores = {f"{i}.weight": layer.weight.detach().abs() for i, layer in enumerate(layers)}
    assert sum(s.numel() for s in scores.values()) > sel.SMALL_INPUT
    with sweep_path(path):
        masks = gp.global_masks(scores, 0.9)
    torch_prune.global_unstructured(
        [(layer, "weight") for layer in layers],
        pruning_method=torch_prune.L1Unstructured,
        amount=0.9,
    )
    for i, layer in enumerate(layers):
        assert torch.equal(masks[f"{i}.weight"], layer.weight_mask.bool())


@pytest.mark.parametrize("path", SWEEPS)
def test_ties_against_global_unstructured_follow_the_documented_rule(path):
    """Item 14: with tied scores both prune the same count, and differ only at the threshold.

    3,200 scores taking 8 values, so hundreds tie at the threshold: global_unstructured's
    topk chooses among them in an unspecified order, global_masks in (dict order, flat
    index) order, as its docstring says.
    """
    generator = torch.Generator().manual_seed(11)
    layers = nn.Sequential(nn.Linear(40, 60), nn.Linear(40, 20))
    with torch.no_grad():
        for layer in layers:
            layer.weight.copy_(torch.randint(0, 8, layer.weight.shape, generator=generator))
    scores = {f"{i}.weight": layer.weight.detach().abs().clone() for i, layer in enumerate(layers)}
    with sweep_path(path):
        masks = gp.global_masks(scores, 0.45)
    torch_prune.global_unstructured(
        [(layer, "weight") for layer in layers],
        pruning_method=torch_prune.L1Unstructured,
        amount=0.45,
    )
    theirs = {f"{i}.weight": layer.weight_mask.bool() for i, layer in enumerate(layers)}
    flat = torch.cat([s.flatten() for s in scores.values()])
    ours_kept = torch.cat([m.flatten() for m in masks.values()])
    their_kept = torch.cat([m.flatten() for m in theirs.values()])
    k = round(0.45 * flat.numel())
    assert int((~ours_kept).sum()) == int((~their_kept).sum()) == k  # equal counts
    threshold = torch.kthvalue(flat, k).values
    below, at = flat < threshold, flat == threshold
    assert not ours_kept[below].any() and not their_kept[below].any()
    assert ours_kept[flat > threshold].all() and their_kept[flat > threshold].all()
    differ = ours_kept != their_kept
    assert differ.any() and at[differ].all()  # ties at the threshold only
    tied_pruned = k - int(below.sum())
    first_tied = at.nonzero().flatten()[:tied_pruned]  # (dict order, flat index) order
    assert not ours_kept[first_tied].any() and ours_kept[at].sum() == at.sum() - tied_pruned
    doc = " ".join(gp.global_masks.__doc__.split())
    assert "(dict order, flat index)" in doc and "different* tied entries" in doc


def test_layerwise_masks_prune_each_layer_exactly():
    generator = torch.Generator().manual_seed(2)
    scores = {
        "fc1": torch.randint(0, 5, (30, 20), generator=generator).float(),
        "fc2": torch.randn(7, generator=generator),
    }
    masks = gp.layerwise_masks(scores, 0.3)
    for name, s in scores.items():
        expected = reference_masks({name: s}, round(0.3 * s.numel()))[name]
        assert torch.equal(masks[name], expected)


def test_masks_do_not_change_the_scores():
    scores = {"w": torch.randn(50)}
    before = scores["w"].clone()
    gp.global_masks(scores, 0.5)
    assert torch.equal(scores["w"], before)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_scores_raise(bad):
    scores = {"a": torch.randn(5), "b": torch.tensor([1.0, bad])}
    with pytest.raises(ValueError, match="scores\\['b'\\] contains"):
        gp.global_masks(scores, 0.5)
    with pytest.raises(ValueError, match="contains"):
        gp.layerwise_masks(scores, 0.5)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "half", None])
def test_bad_sparsity_raises(bad):
    with pytest.raises(ValueError, match="sparsity"):
        gp.global_masks({"w": torch.randn(4)}, bad)


def test_empty_scores_raise():
    with pytest.raises(ValueError, match="scores is empty"):
        gp.global_masks({}, 0.5)


def reference_capped_masks(scores: dict, k: int, caps: dict) -> dict:
    """Greedy: walk the stable sort upwards, pruning each entry whose layer is under its cap."""
    names = list(scores)
    flat = torch.cat([s.flatten() for s in scores.values()])
    owner = torch.cat([torch.full((s.numel(),), i) for i, s in enumerate(scores.values())])
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    pruned = dict.fromkeys(names, 0)
    left = k
    for index in torch.sort(flat, stable=True).indices.tolist():
        if left == 0:
            break
        name = names[int(owner[index])]
        if pruned[name] < caps[name]:
            keep[index] = False
            pruned[name] += 1
            left -= 1
    out, start = {}, 0
    for name, s in scores.items():
        out[name] = keep[start : start + s.numel()].reshape(s.shape)
        start += s.numel()
    return out


@pytest.mark.parametrize("path", SWEEPS)
@settings(max_examples=60, deadline=None)
@given(data=tensor_lists, sparsity=st.floats(0, 1), min_density=st.floats(0, 1))
def test_min_density_masks_match_the_greedy_reference(path, data, sparsity, min_density):
    scores = {f"l{i}": torch.tensor(v) for i, v in enumerate(data)}
    total = sum(s.numel() for s in scores.values())
    k = round(sparsity * total)
    caps = {n: sel._most_prunable(s.numel(), min_density) for n, s in scores.items()}
    with sweep_path(path, small_input=16, sample_size=8):
        if k > sum(caps.values()):
            with pytest.raises(ValueError, match="min_density"):
                gp.global_masks(scores, sparsity, min_density=min_density)
            return
        masks = gp.global_masks(scores, sparsity, min_density=min_density)
    expected = reference_capped_masks(scores, k, caps)
    for name in scores:
        assert torch.equal(masks[name], expected[name])
        assert int(masks[name].sum()) >= min_density * scores[name].numel() - 1e-9


def test_min_density_keeps_the_ceiling_of_each_layer():
    scores = {"big": torch.arange(1000.0) + 10, "small": torch.arange(150.0)}
    masks = gp.global_masks(scores, 0.9, min_density=0.1)
    assert int(masks["small"].sum()) == 15  # 0.1 * 150 is 15.000000000000002 in floats
    assert sum(int((~m).sum()) for m in masks.values()) == round(0.9 * 1150)


def test_exclude_patterns_keep_layers_dense_and_out_of_the_count():
    g = torch.Generator().manual_seed(0)
    scores = {n: torch.rand(20, generator=g) for n in ("a.weight", "b.weight", "head.weight")}
    masks = gp.global_masks(scores, 0.5, exclude=["head.*"])
    assert list(masks) == list(scores)
    assert masks["head.weight"].all()
    rest = {n: s for n, s in scores.items() if n != "head.weight"}
    expected = gp.global_masks(rest, 0.5)
    assert all(torch.equal(masks[n], expected[n]) for n in rest)
    layerwise = gp.layerwise_masks(scores, 0.5, exclude="head.weight")
    assert layerwise["head.weight"].all() and int((~layerwise["a.weight"]).sum()) == 10
    with pytest.raises(ValueError, match="matches no prunable weight"):
        gp.global_masks(scores, 0.5, exclude="head")
    with pytest.raises(ValueError, match="exclude must be"):
        gp.global_masks(scores, 0.5, exclude=[3])


def test_layerwise_min_density_raises_when_sparsity_breaks_it():
    scores = {"a": torch.rand(10), "b": torch.rand(30)}
    with pytest.raises(ValueError, match="min_density"):
        gp.layerwise_masks(scores, 0.9, min_density=0.2)
    masks = gp.layerwise_masks(scores, 0.8, min_density=0.2)
    assert int(masks["a"].sum()) == 2


def test_integer_scores_select_like_their_float_copy():
    g = torch.Generator().manual_seed(1)
    scores = {"a": torch.randint(0, 50, (300, 400), generator=g), "b": torch.randint(0, 50, (90,))}
    as_float = {n: s.double() for n, s in scores.items()}
    masks, expected = gp.global_masks(scores, 0.7), gp.global_masks(as_float, 0.7)
    assert all(torch.equal(masks[n], expected[n]) for n in scores)


@pytest.mark.parametrize(
    "bad", [torch.ones(4, dtype=torch.bool), torch.ones(4, dtype=torch.cfloat)]
)
def test_unrankable_score_dtypes_raise(bad):
    with pytest.raises(ValueError, match="cannot be ranked"):
        gp.global_masks({"w": bad}, 0.5)


@pytest.mark.parametrize("bad", ["0.9", True, b"0.9", torch.tensor(True)])
def test_strings_and_bools_are_not_sparsities(bad):
    with pytest.raises(ValueError, match="not a string or a bool"):
        gp.global_masks({"w": torch.randn(4)}, bad)


def test_numeric_sparsity_types_are_accepted():
    import numpy as np

    for value in (0.5, 1, np.float32(0.5), torch.tensor(0.5)):
        assert int((~gp.global_masks({"w": torch.randn(4)}, value)["w"]).sum()) == round(
            4 * float(value)
        )


def test_without_numba_selection_falls_back_to_torch_and_is_exact(monkeypatch):
    """numba is an optional extra: without it the torch sweep gives the same answer."""
    import sys

    import gradprune_lite.core

    monkeypatch.setitem(sys.modules, "numba", None)  # makes `import numba` fail
    monkeypatch.delitem(sys.modules, "gradprune_lite.core._numba_sweep", raising=False)
    monkeypatch.delattr(gradprune_lite.core, "_numba_sweep", raising=False)
    monkeypatch.setattr(_band_kernel, "_kernels", None)
    monkeypatch.setattr(_band_kernel, "DISABLED", False)
    g = torch.Generator().manual_seed(7)
    scores = {"a": torch.rand(300, 500, generator=g), "b": torch.rand(70_000, generator=g)}
    assert not _band_kernel.available(list(scores.values()))
    k = round(0.9 * 220_000)
    assert torch.equal(gp.kth_smallest(list(scores.values()), k), reference_kth(scores.values(), k))
    masks = gp.global_masks(scores, 0.9)
    expected = reference_masks(scores, k)
    assert all(torch.equal(masks[n], expected[n]) for n in scores)
