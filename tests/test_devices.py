"""Any device: no float64 on the hot paths, a bounded number of host syncs per call that
does not grow with the number of layers, and selection that stays exact in float32.

The hot paths run under a ``TorchDispatchMode`` that sees every aten op: it fails on any
float64 tensor and counts the ops that make the host wait for the device
(``_local_scalar_dense`` behind ``.item()``/``int()``/``bool()``, and the ops whose output
shape depends on the data: ``nonzero``, ``masked_select``, boolean indexing, ``unique``),
while a ``TorchFunctionMode`` counts ``.tolist()``/``.numpy()``, which read a tensor on the
host without an aten op. On these CPU tensors nothing waits, but the same ops would on
CUDA or MPS. The code paths that only the CPU takes (where a host read is free) are
switched off here, so the path counted is the one an accelerator runs.

Host syncs per call, measured below and independent of the number of layers:

* ``global_masks``: 1 up to 2¹⁷ scores (the NaN/inf check), 3 above (+2 for the sweep's
  counts and tie counts; +2 more for each widening of a missed band, which is rare);
  ``min_density`` adds 1 per water-filling pass.
* ``layerwise_masks``: 1, plus 2 for each layer above 2¹⁷ scores (its own sweep).
* ``apply_masks``: 0 (with ``min_density=0``).
* ``gradient_stats``: 1 per batch (the loss's ``ignore_index`` check reads the targets),
  1 for the first-sample check on a model structure not seen before, and 1 per device for
  the buffer guard when the model has buffers (the masks are buffers).
* ``score``: that of ``gradient_stats`` for the data criteria; ``grasp`` 3 (its loss on
  temperature-scaled outputs is a wrapper, so how it reduces is measured once, on two
  samples); ``synflow`` 1 (the float32 overflow check); ``magnitude`` and ``random`` 0.
* The same on the 3- and 12-layer MLPs with two batches (printed by the assertion when it
  fails); before the per-batch target check joined main: gradient_stats 1, taylor/fisher/
  snip 1, grasp 3, synflow 1, global_masks 1, layerwise_masks 1, apply_masks 0, prune 2-3.
* ``prune`` one round: the sum of its parts.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import gradprune_lite as gp
from gradprune_lite.core import _band_kernel, fisher_blocks, second_order, selection
from gradprune_lite.core.fisher_blocks import damped_inverse, gradient_curvature, padded_blocks

aten = torch.ops.aten
DATA_DEPENDENT = {
    aten.nonzero,
    aten.masked_select,
    aten._unique2,
    aten.unique_consecutive,
    aten.unique_dim,
    aten.repeat_interleave,
}


class DeviceAudit(TorchDispatchMode):
    """Records float64 ops and host syncs (see the module docstring)."""

    def __init__(self):
        super().__init__()
        self.float64: list[str] = []
        self.syncs: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is aten._local_scalar_dense.default or func.overloadpacket in DATA_DEPENDENT:
            self.syncs.append(str(func))
        elif func.overloadpacket in (aten.index, aten.index_put, aten.index_put_):
            indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
            if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices):
                self.syncs.append(f"{func} with a bool index")
        out = func(*args, **kwargs)
        for t in tree_flatten((args, kwargs, out))[0]:
            if isinstance(t, torch.Tensor) and t.dtype == torch.float64:
                self.float64.append(str(func))
                break
        return out


class HostReads(TorchFunctionMode):
    """Counts host reads that issue no aten op: ``tolist``, ``numpy``, ``__array__``."""

    def __init__(self, audit: DeviceAudit):
        super().__init__()
        self.audit = audit

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in ("tolist", "numpy", "__array__"):
            self.audit.syncs.append(func.__name__)
        return func(*args, **(kwargs or {}))


def audited(fn, *args, **kwargs) -> DeviceAudit:
    audit = DeviceAudit()
    with HostReads(audit), audit:
        fn(*args, **kwargs)
    assert not audit.float64, f"float64 ops on a hot path: {sorted(set(audit.float64))}"
    return audit


@pytest.fixture
def accelerator_paths(monkeypatch):
    """Take the code paths a CUDA or MPS device takes, on CPU tensors."""
    monkeypatch.setattr(_band_kernel, "available", lambda tensors: False)
    for module in (selection, second_order, fisher_blocks):
        monkeypatch.setattr(module, "_syncs_are_free", lambda device: False)


def deep_mlp(depth: int, width: int = 24) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(784, width), nn.ReLU()]
    for _ in range(depth - 2):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


@pytest.fixture(scope="module")
def digits():
    data = gp.mnist("train", limit=128, verbose=False, download=False)
    return [(data.images[:64], data.labels[:64]), (data.images[64:], data.labels[64:])]


def scores_of(layers: int, total: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {f"l{i}": torch.rand(total // layers, generator=g) for i in range(layers)}


def test_hot_paths_use_no_float64_and_syncs_do_not_grow_with_layers(digits, accelerator_paths):
    counts = {}
    for depth in (3, 12):
        model = deep_mlp(depth)
        row = {"gradient_stats": len(audited(gp.gradient_stats, model, digits).syncs)}
        for criterion in ("magnitude", "random", "taylor", "fisher", "snip", "grasp", "synflow"):
            row[criterion] = len(audited(gp.score, model, criterion, digits).syncs)
        scores = gp.score(model, "taylor", digits)
        row["global_masks"] = len(audited(gp.global_masks, scores, 0.9).syncs)
        row["layerwise_masks"] = len(audited(gp.layerwise_masks, scores, 0.9).syncs)
        masks = gp.global_masks(scores, 0.9)
        row["apply_masks"] = len(audited(gp.apply_masks, copy.deepcopy(model), masks).syncs)
        pruned = copy.deepcopy(model)
        row["prune taylor"] = len(audited(gp.prune, pruned, "taylor", 0.5, digits).syncs)
        row["prune again"] = len(audited(gp.prune, pruned, "taylor", 0.8, digits).syncs)
        counts[depth] = row
    assert counts[3] == counts[12], counts
    expected = {"magnitude": 0, "random": 0, "apply_masks": 0, "global_masks": 1}
    assert {k: counts[3][k] for k in expected} == expected, counts[3]
    # gradient_stats: the loss's ignore_index check reads each batch's targets (one per
    # batch, not per layer), and the first-sample check one more on a new structure.
    assert counts[3]["gradient_stats"] <= len(digits) + 1 and counts[3]["synflow"] == 1, counts[3]
    assert max(counts[3].values()) <= 6, counts[3]


@pytest.mark.parametrize("layers", [3, 12])
def test_the_sweep_above_small_input_syncs_three_times_whatever_the_layers(
    layers, accelerator_paths
):
    scores = scores_of(layers, 3 * selection.SMALL_INPUT)
    audit = audited(gp.global_masks, scores, 0.9)
    assert len(audit.syncs) == 3, audit.syncs
    capped = audited(gp.global_masks, scores, 0.9, min_density=0.05)
    assert len(capped.syncs) == 4, capped.syncs  # one water-filling pass: no layer capped


def test_obs_prunes_without_float64(digits, accelerator_paths):
    model = deep_mlp(3)
    audited(gp.prune, model, "obs", 0.5, digits, steps=2, block_size=16)
    assert gp.sparsity(model) == pytest.approx(0.5, abs=1e-4)


def test_spearman_and_ranking_use_no_float64():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(5000, generator=g)
    b = (a + torch.randn(5000, generator=g)).round()  # many ties
    audit = audited(gp.ranking.spearman, a, b)
    assert len(audit.syncs) == 3, audit.syncs  # one exact integer sum each


def adversarial_scores() -> list[dict[str, torch.Tensor]]:
    """Score sets built to break a float32 selection: all equal, ±0, values one ulp apart,
    subnormals, huge magnitudes, and heavy ties at the threshold split over layers."""
    g = torch.Generator().manual_seed(5)
    one = torch.tensor(1.0)
    ulps = torch.nextafter(one.expand(5000).clone(), torch.tensor(2.0))
    ramp = one.clone()
    steps = [ramp]
    for _ in range(3000):
        steps.append(torch.nextafter(steps[-1], torch.tensor(2.0)))
    tiny = torch.finfo(torch.float32).tiny
    return [
        {"a": torch.ones(300, 20), "b": torch.ones(7)},
        {"a": torch.tensor([0.0, -0.0] * 500), "b": torch.tensor([-0.0, 0.0] * 300)},
        {"a": torch.stack(steps), "b": ulps, "c": torch.stack(steps).flip(0)},
        {"a": torch.rand(4000, generator=g) * tiny, "b": torch.full((900,), tiny / 2)},
        {
            "a": (torch.rand(3000, generator=g) * 2 - 1) * 3e38,
            "b": torch.randn(100, generator=g) * 1e-30,
        },
        {
            f"l{i}": (torch.rand(70_000, generator=g) * 4).round()  # above SMALL_INPUT
            for i in range(3)
        },
    ]


@pytest.mark.parametrize("pure_torch", [False, True])
@pytest.mark.parametrize("case", range(6))
def test_selection_prunes_exactly_the_requested_count_on_adversarial_scores(
    case, pure_torch, monkeypatch
):
    if pure_torch:
        monkeypatch.setattr(_band_kernel, "available", lambda tensors: False)
        monkeypatch.setattr(selection, "_syncs_are_free", lambda device: False)
    scores = adversarial_scores()[case]
    flat = torch.cat([s.flatten() for s in scores.values()])
    for sparsity in (0.1, 0.5, 0.9, 0.999):
        k = round(sparsity * flat.numel())
        masks = gp.global_masks(scores, sparsity)
        kept = torch.cat([m.flatten() for m in masks.values()])
        assert int((~kept).sum()) == k
        threshold = flat.kthvalue(k).values
        # Everything below the threshold goes, everything above stays, and among the
        # ties the earliest (dict order, flat index) go first.
        assert not kept[flat < threshold].any() and kept[flat > threshold].all()
        tied = kept[flat == threshold]
        assert torch.equal(tied, tied.sort().values), "ties are pruned from the front"
        layerwise = gp.layerwise_masks(scores, sparsity)
        for name, score in scores.items():
            assert int((~layerwise[name]).sum()) == round(sparsity * score.numel())


def test_float32_damped_inverse_matches_float64_on_real_curvature():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    data = gp.mnist("train", limit=256, verbose=False, download=False)
    batches = [(data.images, data.labels)]
    alive = {n: torch.ones_like(w, dtype=torch.bool) for n, w in gp.prunable_weights(model).items()}
    blocks = gradient_curvature(model, batches, alive, block_size=32)
    for name, block in blocks.items():
        living = padded_blocks(alive[name].reshape(-1).float(), 32)
        for damping in (1e-1, 1e-3):
            single = damped_inverse(block, living, damping)
            double = damped_inverse(block.double(), living.double(), damping)
            assert single.dtype == torch.float32
            error = (single.double() - double).norm(dim=(1, 2)) / double.norm(dim=(1, 2))
            assert float(error.max()) < 1e-3, (name, damping, float(error.max()))


def test_obs_update_at_full_block_width_equals_the_narrow_update(monkeypatch):
    g = torch.Generator().manual_seed(2)
    a = torch.randn(6, 16, 16, generator=g)
    inverse = torch.linalg.inv(a @ a.transpose(1, 2) + 16 * torch.eye(16))
    weight = torch.randn(96, generator=g)
    remove = torch.rand(96, generator=g) < 0.3
    narrow = second_order.obs_update(weight, inverse, remove)
    monkeypatch.setattr(second_order, "_syncs_are_free", lambda device: False)
    wide = second_order.obs_update(weight, inverse, remove)
    assert torch.equal(wide[remove], torch.zeros(int(remove.sum())))
    torch.testing.assert_close(wide, narrow, rtol=1e-5, atol=1e-6)


def test_sampled_labels_by_inverse_cdf_follow_the_softmax(monkeypatch):
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.copy_(torch.tensor([0.0, math.log(2.0), math.log(5.0)]))  # p = 1/8, 2/8, 5/8
    monkeypatch.setattr(fisher_blocks, "_syncs_are_free", lambda device: False)
    batches = [(torch.zeros(4000, 4), torch.zeros(4000, dtype=torch.long))] * 5
    labels = torch.cat([y for _, y in fisher_blocks.sampled_label_batches(model, batches, 0)])
    share = torch.bincount(labels, minlength=3).float() / len(labels)
    # 20,000 draws: each share is within 4 standard deviations (≤ 0.014) of its probability.
    torch.testing.assert_close(share, torch.tensor([1 / 8, 2 / 8, 5 / 8]), atol=0.014, rtol=0)


def test_synflow_falls_back_to_float64_on_the_cpu_when_float32_overflows():
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(32, 32) for _ in range(30)])
    with torch.no_grad():
        for layer in model:
            layer.weight.mul_(40.0)  # each |layer| multiplies R by about 32·40·0.1 ≈ 130
    scores = gp.score(model, "synflow", input_shape=(32,))
    assert all(torch.isfinite(s).all() and s.dtype == torch.float32 for s in scores.values())
    reference = copy.deepcopy(model).double()
    for p in reference.parameters():
        p.detach().abs_()
    weights = [m.weight for m in reference]
    total = reference(torch.ones(1, 32, dtype=torch.float64)).sum()
    assert not torch.isfinite(total.float())  # float32 alone would have overflowed
    grads = torch.autograd.grad(total, weights)
    expected = [(w.detach() * g).abs() for w, g in zip(weights, grads)]
    top = max(float(e.max()) for e in expected)
    for got, want in zip(scores.values(), expected):
        torch.testing.assert_close(got, (want / top).float(), rtol=1e-5, atol=0)


def test_a_failed_prune_restores_from_a_snapshot_kept_on_the_cpu(digits):
    model = deep_mlp(3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for x, y in digits:
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    before = copy.deepcopy(model.state_dict())
    momentum = {p: optimizer.state[p]["momentum_buffer"].clone() for p in model.parameters()}

    def fail(model, round_index):
        raise RuntimeError("training failed")

    with pytest.raises(RuntimeError, match="training failed"):
        gp.prune(model, "taylor", 0.9, digits, rounds=2, between=fail, optimizer=optimizer,
                 snapshot_device="cpu")  # fmt: skip
    assert gp.current_masks(model) == {}
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    for p in model.parameters():
        assert torch.equal(optimizer.state[p]["momentum_buffer"], momentum[p])
    with pytest.raises(ValueError, match="snapshot_device"):
        gp.prune(model, "magnitude", 0.5, snapshot_device="nowhere")
    assert gp.sparsity(model) == 0.0


def test_trained_trains_on_the_cpu_and_returns_the_model_on_the_requested_device(tmp_path):
    data = gp.mnist("train", limit=256, verbose=False, download=False)
    net = gp.trained("lenet_300_100", train=data, epochs=1, cache_dir=tmp_path)
    moved = gp.trained("lenet_300_100", train=data, epochs=1, cache_dir=tmp_path, device="meta")
    assert {p.device.type for p in net.parameters()} == {"cpu"}
    # "meta" stands for any accelerator here: the cached CPU weights are moved, not retrained.
    assert {p.device.type for p in moved.parameters()} == {"meta"} and not moved.training
    assert [tuple(p.shape) for p in moved.parameters()] == [
        tuple(p.shape) for p in net.parameters()
    ]
    with pytest.raises(ValueError, match="device must name"):
        gp.trained("lenet_300_100", train=data, epochs=1, cache_dir=tmp_path, device="gpu0")
