"""gradient_stats against an independent per-sample reference built with torch.func
(``per_sample_reference`` in tests/func_reference.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from func_reference import per_sample_reference
from torch import nn

import gradprune_lite as gp


@pytest.mark.parametrize("model_name", ["mlp", "cnn"])
def test_stats_equal_torch_func_reference(model_name, request):
    model = request.getfixturevalue(model_name)
    batches = request.getfixturevalue(f"{model_name}_batches")
    stats = gp.gradient_stats(model, batches)
    ref = per_sample_reference(model, batches)
    n = sum(len(x) for x, _ in batches)
    assert list(stats) == list(gp.prunable_weights(model))
    for name, s in stats.items():
        g = ref[name]
        assert s.count == n
        torch.testing.assert_close(s.mean, g.mean(0), rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(s.sq_mean, g.square().mean(0), rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(s.var, g.var(0, unbiased=False), rtol=1e-3, atol=1e-6)


def test_mean_is_the_ordinary_batch_gradient(mlp, mlp_batches):
    x = torch.cat([b[0] for b in mlp_batches])
    y = torch.cat([b[1] for b in mlp_batches])
    F.cross_entropy(mlp(x), y).backward()
    stats = gp.gradient_stats(mlp, mlp_batches)
    for name, param in mlp.named_parameters():
        if name in stats:
            torch.testing.assert_close(stats[name].mean, param.grad, rtol=1e-4, atol=1e-6)


def test_biases_are_excluded_and_model_untouched(mlp, mlp_batches):
    before = {k: v.clone() for k, v in mlp.state_dict().items()}
    flags = [p.requires_grad for p in mlp.parameters()]
    stats = gp.gradient_stats(mlp, mlp_batches)
    assert all(name.endswith("weight") for name in stats)
    assert all(p.grad is None for p in mlp.parameters())
    assert [p.requires_grad for p in mlp.parameters()] == flags
    for k, v in mlp.state_dict().items():
        assert torch.equal(v, before[k])


def test_custom_loss_and_sequence_inputs():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    x = torch.randn(6, 5, 3)  # extra position dimension: per-sample sums over positions
    y = torch.randn(6, 5, 2)

    def loss_fn(out, target):
        return ((out - target) ** 2).mean(dim=(1, 2)).mean()

    stats = gp.gradient_stats(model, [(x, y)], loss_fn=loss_fn)
    ref = per_sample_reference(model, [(x, y)], loss_fn)
    for name, s in stats.items():
        torch.testing.assert_close(s.sq_mean, ref[name].square().mean(0), rtol=1e-4, atol=1e-7)


def test_snr_is_mean_squared_over_variance(mlp, mlp_batches):
    s = gp.gradient_stats(mlp, mlp_batches)["1.weight"]
    expected = s.mean.square() / s.var.clamp(min=torch.finfo(torch.float32).tiny)
    torch.testing.assert_close(s.snr, expected)


def test_conv_chunking_gives_the_same_result(cnn, cnn_batches, monkeypatch):
    whole = gp.gradient_stats(cnn, cnn_batches)
    import gradprune_lite.core.stats as stats_module

    monkeypatch.setattr(stats_module, "CHUNK_ELEMENTS", 1)  # one sample per chunk
    chunked = gp.gradient_stats(cnn, cnn_batches)
    for name in whole:
        torch.testing.assert_close(whole[name].sq_mean, chunked[name].sq_mean)


def test_empty_batches_raise(mlp):
    with pytest.raises(ValueError, match="no samples"):
        gp.gradient_stats(mlp, [])


def test_model_without_prunable_layers_raises():
    with pytest.raises(ValueError, match="no prunable layers"):
        gp.gradient_stats(nn.Sequential(nn.ReLU()), [(torch.randn(2, 3), torch.tensor([0, 1]))])


@pytest.mark.parametrize("model_name", ["mlp", "cnn"])
def test_per_sample_gradients_equal_torch_func_in_small_chunks(model_name, request):
    model = request.getfixturevalue(model_name)
    batches = request.getfixturevalue(f"{model_name}_batches")
    ref = per_sample_reference(model, batches)
    collected: dict[str, list[torch.Tensor]] = {}
    # A bound of 3 weights' worth of floats forces several chunks per batch.
    biggest = max(w.numel() for w in gp.prunable_weights(model).values())
    sizes = []
    for name, chunk in gp.per_sample_gradients(model, batches, max_elements=3 * biggest):
        assert chunk.numel() <= 3 * biggest
        sizes.append(chunk.shape[0])
        collected.setdefault(name, []).append(chunk)
    assert set(collected) == set(gp.prunable_weights(model))
    assert min(sizes) < max(len(x) for x, _ in batches)  # some batch really was split
    for name, chunks in collected.items():
        torch.testing.assert_close(torch.cat(chunks), ref[name], rtol=1e-4, atol=1e-6)


def test_per_sample_gradients_reject_unknown_names(mlp, mlp_batches):
    with pytest.raises(ValueError, match="no prunable weight named"):
        list(gp.per_sample_gradients(mlp, mlp_batches, names=["nope.weight"]))


def _collect(model, batches, **kwargs):
    collected: dict[str, list[torch.Tensor]] = {}
    for name, chunk in gp.per_sample_gradients(model, batches, **kwargs):
        collected.setdefault(name, []).append(chunk)
    return {name: torch.cat(chunks) for name, chunks in collected.items()}


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("case", ["used_twice", "tied", "transformer", "reshaped"])
def test_per_sample_gradients_are_exact_beyond_plain_stacks(case):
    from test_real_models import (
        FlattenTokens,
        TiedAutoencoder,
        TransformerClassifier,
        UsedTwice,
        mse,
        token_loss,
    )

    g = torch.Generator().manual_seed(20)
    loss_fn = F.cross_entropy
    if case == "used_twice":
        model, x, y = UsedTwice(), torch.randn(7, 5, generator=g), torch.randint(0, 3, (7,))
    elif case == "tied":
        model, x = TiedAutoencoder(transposed=False), torch.randn(7, 8, generator=g)
        y, loss_fn = x.clone(), mse
    elif case == "transformer":
        model = TransformerClassifier()
        x, y = torch.randn(7, 4, 16, generator=g), torch.randint(0, 3, (7,), generator=g)
    else:
        model, loss_fn = FlattenTokens(), token_loss
        x, y = torch.randn(7, 5, 3, generator=g), torch.randint(0, 4, (7, 5), generator=g)
    batches = [(x[:4], y[:4]), (x[4:], y[4:])]
    biggest = max(w.numel() for w in gp.prunable_weights(model).values())
    got = _collect(model, batches, loss_fn=loss_fn, max_elements=2 * biggest)
    reference = per_sample_reference(model, batches, loss_fn)
    assert set(got) == set(gp.prunable_weights(model))
    for name, grads in got.items():
        torch.testing.assert_close(grads, reference[name], rtol=1e-4, atol=1e-6)


def test_per_sample_gradients_respect_the_bound_on_the_fallback(mlp, mlp_batches):
    """Fallback chunks hold at most max_elements floats, over several chunks per batch."""
    torch.manual_seed(21)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Unflatten(1, (1, 8)))
    model.append(nn.ConvTranspose1d(1, 2, 3))  # fallback only
    model.append(nn.Flatten())

    def loss_fn(out, target):
        return F.cross_entropy(out[:, :10], target)

    reference = per_sample_reference(model, mlp_batches, loss_fn)
    bound = 4 * model[4].weight.numel()  # four samples of the fallback weight
    sizes = []
    for name, chunk in gp.per_sample_gradients(model, mlp_batches, loss_fn, max_elements=bound):
        # A chunk is one sample where one sample alone exceeds the bound (1.weight here).
        assert chunk.numel() <= max(bound, chunk[0].numel())
        if name == "4.weight":
            sizes.append(chunk.shape[0])
    assert max(sizes) == 4 and sum(sizes) == 24
    got = _collect(model, mlp_batches, loss_fn=loss_fn, max_elements=bound)
    for name, grads in got.items():
        torch.testing.assert_close(grads, reference[name], rtol=1e-4, atol=1e-6)
