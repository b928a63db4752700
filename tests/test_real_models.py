"""gradient_stats on the models users bring, each against the torch.func reference.

Where the fast hook path is exact (in-place activations, a layer used twice, tied weights,
torchvision CNNs) the tests also check that it was used; where it cannot be (attention's
out_proj, a weight used outside its module, non batch-first layers) they check that the
torch.func fallback was used.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from func_reference import assert_stats_match, per_sample_reference
from torch import nn

import gradprune_lite as gp
import gradprune_lite.core.stats as stats_module


@pytest.fixture
def fallback_names(monkeypatch):
    """The weight names sent to the torch.func fallback during the test."""
    names: list[str] = []
    original = stats_module.func_per_sample_chunks

    def spy(model, weights, *args, **kwargs):
        names.extend(weights)
        return original(model, weights, *args, **kwargs)

    monkeypatch.setattr(stats_module, "func_per_sample_chunks", spy)
    return names


def labelled(n, features, classes, seed=0, shape=None):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *(shape or (features,)), generator=g)
    return x, torch.randint(0, classes, (n,), generator=g)


def vgg_style():
    """ReLU(inplace=True) right after every prunable layer, the first one included."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(6, 8, 3),
        nn.ReLU(inplace=True),
        nn.Flatten(),
        nn.Linear(8 * 6 * 6, 16),
        nn.ReLU(inplace=True),
        nn.Linear(16, 5),
    )


def test_in_place_activations_are_exact_on_the_fast_path(fallback_names):
    model = vgg_style()
    batches = [labelled(7, 0, 5, shape=(3, 8, 8)), labelled(4, 0, 5, seed=1, shape=(3, 8, 8))]
    stats = gp.gradient_stats(model, batches)
    assert_stats_match(stats, per_sample_reference(model, batches))
    assert fallback_names == []


class UsedTwice(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.inp, self.fc, self.head = nn.Linear(5, 6), nn.Linear(6, 6), nn.Linear(6, 3)

    def forward(self, x):
        return self.head(self.fc(torch.tanh(self.fc(torch.relu(self.inp(x))))))


def test_layer_used_twice_squares_the_per_sample_sum(fallback_names):
    model = UsedTwice()
    batches = [labelled(9, 5, 3)]
    stats = gp.gradient_stats(model, batches)
    assert_stats_match(stats, per_sample_reference(model, batches))
    assert fallback_names == []


class TiedAutoencoder(nn.Module):
    """dec.weight = enc.weight (same orientation), or the transpose used by hand."""

    def __init__(self, transposed: bool):
        super().__init__()
        torch.manual_seed(2)
        self.transposed = transposed
        self.enc = nn.Linear(8, 4 if transposed else 8)
        if transposed:
            self.dec_bias = nn.Parameter(torch.zeros(8))
        else:
            self.dec = nn.Linear(8, 8)
            self.dec.weight = self.enc.weight

    def forward(self, x):
        h = torch.tanh(self.enc(x))
        if self.transposed:
            return F.linear(h, self.enc.weight.t(), self.dec_bias)
        return self.dec(h)


def mse(out, target):
    return F.mse_loss(out, target)


@pytest.mark.parametrize("transposed", [False, True])
def test_tied_weight_is_one_entry_with_its_total_gradient(transposed, fallback_names):
    model = TiedAutoencoder(transposed)
    x = torch.randn(6, 8, generator=torch.Generator().manual_seed(3))
    batches = [(x, x.clone())]
    stats = gp.gradient_stats(model, batches, mse)
    assert list(stats) == ["enc.weight"]
    assert list(gp.prunable_weights(model)) == ["enc.weight"]
    assert_stats_match(stats, per_sample_reference(model, batches, mse))
    # The transpose is a use outside any module call: only the fallback sees it.
    assert fallback_names == (["enc.weight"] if transposed else [])


def test_tied_weight_scores_and_grasp_have_one_entry():
    model = TiedAutoencoder(False)
    x = torch.randn(6, 8, generator=torch.Generator().manual_seed(3))
    for criterion in ("taylor", "fisher", "grasp", "snip", "random", "magnitude", "synflow"):
        options = {"loss_fn": mse} if criterion in ("taylor", "fisher", "grasp", "snip") else {}
        scores = gp.score(model, criterion, [(x, x.clone())], **options)
        assert list(scores) == ["enc.weight"], criterion


class TransformerClassifier(nn.Module):
    def __init__(self, batch_first=True):
        super().__init__()
        torch.manual_seed(4)
        self.encoder = nn.TransformerEncoderLayer(
            16, 2, dim_feedforward=24, dropout=0.1, batch_first=batch_first
        )
        self.head = nn.Linear(16, 3)
        self.batch_first = batch_first

    def forward(self, x):
        return self.head(self.encoder(x).mean(1 if self.batch_first else 0))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_transformer_encoder_layer_with_linear_head(fallback_names):
    model = TransformerClassifier()
    batches = [labelled(5, 0, 3, shape=(4, 16))]
    stats = gp.gradient_stats(model, batches)
    assert set(stats) == {
        "encoder.self_attn.out_proj.weight",
        "encoder.linear1.weight",
        "encoder.linear2.weight",
        "head.weight",
    }
    assert_stats_match(stats, per_sample_reference(model, batches))
    # out_proj is never called as a module; the plain Linear layers stay on the fast path.
    assert fallback_names == ["encoder.self_attn.out_proj.weight"]


def test_attention_in_projection_is_reported_as_not_prunable():
    with pytest.warns(UserWarning, match=r"encoder.self_attn \(MultiheadAttention\)"):
        gp.prunable_weights(TransformerClassifier())


@pytest.mark.parametrize(
    "build", [torchvision.models.resnet18, torchvision.models.mobilenet_v3_small]
)
def test_torchvision_models_in_eval_mode(build, fallback_names):
    # Hundreds of tiny ops: on a shared 2-core machine a second thread only adds waiting.
    torch.set_num_threads(1)
    torch.manual_seed(5)
    model = build(weights=None, num_classes=4)
    batches = [labelled(3, 0, 4, shape=(3, 16, 16))]
    stats = gp.gradient_stats(model, batches)
    assert list(stats) == list(gp.prunable_weights(model))
    assert_stats_match(stats, per_sample_reference(model, batches), rtol=1e-3, atol=1e-6)
    assert fallback_names == []


class FlattenTokens(nn.Module):
    """(N, T, C) → (N·T, C) before a Linear: the Linear sees N·T rows, not N samples."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(6)
        self.embed, self.head = nn.Linear(3, 5), nn.Linear(5, 4)

    def forward(self, x):
        n, t, c = x.shape
        return self.head(torch.tanh(self.embed(x)).reshape(n * t, 5)).reshape(n, t, 4)


def token_loss(out, target):
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), target.reshape(-1))


def test_tokens_flattened_into_the_batch_dimension(fallback_names):
    model = FlattenTokens()
    g = torch.Generator().manual_seed(7)
    batches = [(torch.randn(6, 5, 3, generator=g), torch.randint(0, 4, (6, 5), generator=g))]
    stats = gp.gradient_stats(model, batches, token_loss)
    assert_stats_match(stats, per_sample_reference(model, batches, token_loss))
    assert fallback_names == ["head.weight"]  # embed sees (N, T, C): still batch-first


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_sequence_first_model_needs_sample_dim():
    model = TransformerClassifier(batch_first=False)
    x, y = labelled(5, 0, 3, shape=(4, 16))
    batches = [(x.transpose(0, 1).contiguous(), y)]  # inputs (T=4, N=5, C), targets (N,)
    with pytest.raises(ValueError, match="sample_dim=1"):
        gp.gradient_stats(model, batches)
    stats = gp.gradient_stats(model, batches, sample_dim=(1, 0))
    assert all(s.count == 5 for s in stats.values())
    assert_stats_match(stats, per_sample_reference(model, batches, sample_dim=(1, 0)))


def test_sequence_first_targets_with_sample_dim_one():
    torch.manual_seed(8)
    model = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 4))
    g = torch.Generator().manual_seed(9)
    x, y = torch.randn(5, 7, 3, generator=g), torch.randint(0, 4, (5, 7), generator=g)
    batches = [(x, y)]  # T=5 steps of N=7 sequences, targets (T, N)
    stats = gp.gradient_stats(model, batches, token_loss, sample_dim=1)
    assert all(s.count == 7 for s in stats.values())
    assert_stats_match(stats, per_sample_reference(model, batches, token_loss, sample_dim=(1, 1)))


def summed(out, target):
    return F.cross_entropy(out, target, reduction="sum")


def unreduced(out, target):
    return F.cross_entropy(out, target, reduction="none")


@pytest.mark.parametrize(
    "loss_fn",
    [
        F.cross_entropy,
        summed,
        unreduced,
        nn.CrossEntropyLoss(reduction="sum"),
        nn.CrossEntropyLoss(reduction="none"),
    ],
)
def test_mean_sum_and_none_reductions_give_the_same_statistics(loss_fn, mlp, mlp_batches):
    stats = gp.gradient_stats(mlp, mlp_batches, loss_fn)
    assert_stats_match(stats, per_sample_reference(mlp, mlp_batches))


def test_reduction_option_and_undecomposable_losses(mlp, mlp_batches):
    stats = gp.gradient_stats(mlp, mlp_batches, summed, reduction="sum")
    assert_stats_match(stats, per_sample_reference(mlp, mlp_batches))
    with pytest.raises(ValueError, match="reduction"):
        gp.gradient_stats(mlp, mlp_batches, reduction="avg")
    with pytest.raises(ValueError, match="neither their mean nor their sum"):
        gp.gradient_stats(mlp, mlp_batches, lambda o, t: F.cross_entropy(o, t) ** 2)
    with pytest.raises(ValueError, match=r"shape \(10, 10\)"):
        gp.gradient_stats(mlp, mlp_batches, lambda o, t: o)


class TokenClassifier(nn.Module):
    """Embedding → Conv1d → mean → Linear: token ids in, one class per sequence out."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(12)
        self.embed = nn.Embedding(11, 4, padding_idx=0)
        self.conv = nn.Conv1d(4, 5, 3, padding=1)
        self.head = nn.Linear(5, 3)

    def forward(self, tokens):
        h = torch.relu(self.conv(self.embed(tokens).transpose(1, 2)))
        return self.head(h.mean(-1))


def other_layer_models():
    torch.manual_seed(13)
    up1 = nn.Sequential(nn.ConvTranspose1d(2, 3, 3, stride=2), nn.Tanh(), nn.Flatten())
    up1.append(nn.Linear(3 * 9, 3))
    vol = nn.Sequential(nn.Conv3d(2, 3, 2), nn.ReLU(), nn.ConvTranspose3d(3, 2, 2, stride=2))
    vol.extend([nn.Flatten(), nn.Linear(2 * 6 * 6 * 6, 3)])
    up2 = nn.Sequential(nn.ConvTranspose2d(2, 3, 3, stride=2, groups=1, output_padding=1))
    up2.extend([nn.ReLU(), nn.Conv2d(3, 2, 3, padding_mode="reflect", padding=1)])
    up2.extend([nn.Flatten(), nn.Linear(2 * 10 * 10, 3)])
    g = torch.Generator().manual_seed(14)
    tokens = torch.randint(0, 11, (6, 7), generator=g)
    return {
        "embedding+conv1d": (TokenClassifier(), tokens),
        "convtranspose1d": (up1, torch.randn(6, 2, 4, generator=g)),
        "conv3d+convtranspose3d": (vol, torch.randn(6, 2, 4, 4, 4, generator=g)),
        "convtranspose2d+reflect": (up2, torch.randn(6, 2, 4, 4, generator=g)),
    }


@pytest.mark.parametrize("kind", list(other_layer_models()))
def test_other_layer_types_are_scored_exactly(kind):
    model, x = other_layer_models()[kind]
    y = torch.randint(0, 3, (x.shape[0],), generator=torch.Generator().manual_seed(15))
    batches = [(x[:4], y[:4]), (x[4:], y[4:])]
    stats = gp.gradient_stats(model, batches)
    expected = [n for n, m in model.named_modules() if isinstance(m, gp.PRUNABLE_TYPES)]
    assert list(stats) == [f"{n}.weight" for n in expected]
    assert_stats_match(stats, per_sample_reference(model, batches))


def test_a_layer_that_gets_no_gradient_is_named_with_the_cause():
    torch.manual_seed(16)
    model = nn.ModuleDict({"body": nn.Linear(4, 3), "unused": nn.Linear(4, 3)})
    model.forward = lambda x: model["body"](x)
    with pytest.raises(ValueError, match=r"no gradient reached \['unused.weight'\].*never used"):
        gp.gradient_stats(model, [labelled(5, 4, 3)])


class PerPositionTagger(TransformerClassifier):
    """Sequence-first encoder, one class per position: (T, N, C) → (T, N, classes)."""

    def __init__(self):
        super().__init__(batch_first=False)

    def forward(self, x):
        return self.head(self.encoder(x))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_time_steps_taken_for_samples_raise():
    """A sequence-first transformer with (T, N) targets and the default sample_dim=0."""
    model = PerPositionTagger()
    g = torch.Generator().manual_seed(17)
    x, y = torch.randn(4, 5, 16, generator=g), torch.randint(0, 3, (4, 5), generator=g)
    with pytest.raises(ValueError, match="neither their mean nor their sum.*sample_dim"):
        gp.gradient_stats(model, [(x, y)], token_loss)
    with pytest.raises(ValueError, match="sample 0 computed alone differs.*sample_dim=1"):
        gp.gradient_stats(model, [(x, y)], token_loss, reduction="mean")
    stats = gp.gradient_stats(model, [(x, y)], token_loss, sample_dim=1)
    assert_stats_match(stats, per_sample_reference(model, [(x, y)], token_loss, sample_dim=(1, 1)))


def test_a_loss_that_compares_samples_raises(mlp, mlp_batches):
    def contrastive(out, target):
        return F.cross_entropy(out @ out.t(), torch.arange(len(out)))

    with pytest.raises(ValueError, match="no loss that compares samples"):
        gp.gradient_stats(mlp, mlp_batches, contrastive, reduction="mean")


def test_layers_under_torch_nn_utils_prune_are_scored_on_their_effective_weight():
    from torch.nn.utils import prune as torch_prune

    torch.manual_seed(18)
    model = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 3))
    permanent = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 3))
    torch_prune.l1_unstructured(model[0], "weight", 0.5)
    permanent.load_state_dict(
        {k: v for k, v in model.state_dict().items() if "_" not in k}
        | {"0.weight": model[0].weight.detach()}
    )
    batches = [labelled(8, 5, 3)]
    stats = gp.gradient_stats(model, batches)
    assert list(stats) == ["0.weight", "2.weight"]
    assert_stats_match(stats, per_sample_reference(permanent, batches))
    assert model[0].weight_orig.requires_grad
    with pytest.raises(ValueError, match="prune.remove"):
        gp.score(model, "grasp", batches)
