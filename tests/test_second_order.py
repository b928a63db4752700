"""OBS ("obs"): curvature blocks against torch.func, the update against known optima,
the diagonal case against the fisher formula, masks, counts and option checks."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradprune_lite as gp
from gradprune_lite.core.fisher_blocks import (
    damped_inverse,
    gradient_curvature,
    padded_blocks,
    reconstruction_curvature,
)
from gradprune_lite.core.second_order import obs_update


def count_pruned(masks):
    return sum(int((~m).sum()) for m in masks.values())


def per_sample_reference(model, batches):
    """dict name → (N, P) per-sample gradients of each sample's own loss, via torch.func."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    names = list(gp.prunable_weights(model))

    def loss(p, x, y):
        out = torch.func.functional_call(model, p, (x.unsqueeze(0),))
        return F.cross_entropy(out, y.unsqueeze(0))

    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    grads = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0))(params, x, y)
    return {name: grads[name].reshape(len(x), -1).double() for name in names}


def test_curvature_blocks_match_torch_func_outer_products(mlp, mlp_batches):
    reference = per_sample_reference(mlp, mlp_batches)
    alive = {n: torch.ones_like(w, dtype=torch.bool) for n, w in gp.prunable_weights(mlp).items()}
    blocks = gradient_curvature(mlp, mlp_batches, alive, block_size=48)
    for name, g in reference.items():
        full = g.t() @ g / len(g)  # the exact empirical Fisher of this weight
        pad = -g.shape[1] % 48
        full = F.pad(full, (0, pad, 0, pad))
        for b in range(blocks[name].shape[0]):
            part = full[b * 48 : (b + 1) * 48, b * 48 : (b + 1) * 48]
            torch.testing.assert_close(blocks[name][b].double(), part, rtol=1e-4, atol=1e-7)


def assert_exact_obs_saliency(model, scores, reference, damping):
    """Each layer's obs scores equal w²/(2·[F⁻¹]ᵢᵢ), F the damped empirical Fisher of the
    layer's per-sample gradients ``reference`` (torch.func), one block per layer."""
    for name, w in gp.prunable_weights(model).items():
        g = reference[name]
        fisher = g.t() @ g / len(g)
        fisher += damping * fisher.diagonal().mean() * torch.eye(len(fisher), dtype=fisher.dtype)
        expected = w.detach().reshape(-1).double() ** 2 / (2 * torch.linalg.inv(fisher).diagonal())
        torch.testing.assert_close(
            scores[name].reshape(-1).double(), expected, rtol=1e-3, atol=1e-9
        )


def test_saliency_is_exact_obs_when_one_block_holds_the_layer(mlp_batches):
    torch.manual_seed(5)
    tiny = nn.Sequential(nn.Flatten(), nn.Linear(64, 3), nn.ReLU(), nn.Linear(3, 10))
    damping = 1e-2
    scores = gp.score(tiny, "obs", mlp_batches, block_size=192, damping=damping)
    assert_exact_obs_saliency(tiny, scores, per_sample_reference(tiny, mlp_batches), damping)


def test_block_size_one_is_the_damped_diagonal_fisher_formula(mlp, mlp_batches):
    damping = 0.05
    scores = gp.score(mlp, "obs", mlp_batches, block_size=1, damping=damping)
    stats = gp.gradient_stats(mlp, mlp_batches)
    for name, w in gp.prunable_weights(mlp).items():
        diag = stats[name].sq_mean
        expected = 0.5 * w.detach().square() * (diag + damping * diag.mean())
        torch.testing.assert_close(scores[name], expected, rtol=1e-4, atol=1e-10)


def test_block_size_one_update_moves_no_surviving_weight(mlp, mlp_batches):
    before = {n: w.detach().clone() for n, w in gp.prunable_weights(mlp).items()}
    masks = gp.prune(mlp, "obs", 0.5, mlp_batches, block_size=1, steps=1)
    for name, w in gp.prunable_weights(mlp).items():
        assert torch.equal(w.detach()[masks[name]], before[name][masks[name]])


def quadratic_inverse(hessian: torch.Tensor) -> torch.Tensor:
    return torch.linalg.inv(hessian).unsqueeze(0)  # one block holding every weight


@pytest.mark.parametrize("removed", [[3], [0, 5, 6]])
def test_obs_update_reaches_the_constrained_optimum_of_a_quadratic(removed):
    # L(w) = ½ (w − w*)ᵀ H (w − w*); with w_Q forced to 0 the optimum of the rest solves
    # H_RR (w_R − w*_R) = H_RQ w*_Q, computed here directly and independently.
    g = torch.Generator().manual_seed(0)
    a = torch.randn(8, 8, generator=g, dtype=torch.float64)
    hessian = a @ a.t() + 0.5 * torch.eye(8, dtype=torch.float64)
    optimum = torch.randn(8, generator=g, dtype=torch.float64)
    remove = torch.zeros(8, dtype=torch.bool)
    remove[removed] = True
    rest = ~remove
    expected = torch.zeros(8, dtype=torch.float64)
    expected[rest] = optimum[rest] + torch.linalg.solve(
        hessian[rest][:, rest], hessian[rest][:, remove] @ optimum[remove]
    )
    moved = obs_update(optimum, quadratic_inverse(hessian), remove)
    torch.testing.assert_close(moved, expected)
    assert torch.all(moved[remove] == 0)


def test_prune_with_reconstruction_curvature_lands_on_least_squares_without_the_weight():
    # A bias-free linear layer fit by least squares sits at the optimum of ½‖XWᵀ − Y‖², whose
    # Hessian per output row is XᵀX: removing one weight with OBS must give the least-
    # squares fit of that row on the remaining inputs.
    g = torch.Generator().manual_seed(1)
    x = torch.randn(200, 6, generator=g, dtype=torch.float64)
    x[:, 1] += 0.8 * x[:, 0]  # correlated inputs, so the survivors must move
    y = x @ torch.randn(6, 3, generator=g, dtype=torch.float64) + 0.1 * torch.randn(
        200, 3, generator=g, dtype=torch.float64
    )
    layer = nn.Linear(6, 3, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(torch.linalg.lstsq(x, y).solution.t())
    batches = [(x[:100], y[:100]), (x[100:], y[100:])]
    masks = gp.prune(
        layer,
        "obs",
        1 / 18,
        batches,
        curvature="reconstruction",
        damping=1e-10,
        steps=1,
        block_size=6,
    )
    row, column = (~masks["weight"]).nonzero()[0].tolist()
    others = [c for c in range(6) if c != column]
    expected = torch.linalg.lstsq(x[:, others], y[:, row]).solution
    torch.testing.assert_close(layer.weight.detach()[row, others], expected, rtol=1e-6, atol=1e-8)
    assert layer.weight[row, column] == 0


@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_exact_counts_and_masks_hold_under_an_optimizer(scope, mlp, mlp_batches):
    total = sum(w.numel() for w in gp.prunable_weights(mlp).values())
    optimizer = torch.optim.SGD(mlp.parameters(), lr=0.5, momentum=0.9)
    masks = gp.prune(mlp, "obs", 0.8, mlp_batches, scope=scope, optimizer=optimizer, steps=3)
    if scope == "global":
        assert count_pruned(masks) == round(0.8 * total)
    else:
        for m in masks.values():
            assert int((~m).sum()) == round(0.8 * m.numel())
    for _ in range(3):
        for x, y in mlp_batches:
            optimizer.zero_grad()
            F.cross_entropy(mlp(x), y).backward()
            optimizer.step()
    for name, w in gp.prunable_weights(mlp).items():
        assert torch.all(w[~masks[name]] == 0)
    assert gp.sparsity(mlp) == pytest.approx(round(0.8 * total) / total)


def test_iterative_rounds_never_revive_and_reach_the_target(mlp, mlp_batches):
    history = []
    masks = gp.prune(
        mlp,
        "obs",
        0.9,
        mlp_batches,
        rounds=3,
        steps=2,
        between=lambda model, i: history.append(copy.deepcopy(gp.current_masks(model))),
    )
    for earlier, later in zip(history, history[1:]):
        for name in earlier:
            assert not (later[name] & ~earlier[name]).any()
    total = sum(m.numel() for m in masks.values())
    assert count_pruned(masks) == round(0.9 * total)


@pytest.mark.parametrize(
    "options",
    [
        {"block_size": 0},
        {"block_size": 2.5},
        {"damping": 0.0},
        {"damping": float("nan")},
        {"samples": 0},
        {"steps": 0},
        {"curvature": "hessian"},
        {"blocksize": 64},
    ],
)
def test_bad_options_raise_and_change_nothing(options, mlp, mlp_batches):
    optimizer = torch.optim.SGD(mlp.parameters(), lr=0.1, momentum=0.9)
    for x, y in mlp_batches:
        optimizer.zero_grad()
        F.cross_entropy(mlp(x), y).backward()
        optimizer.step()
    weights = copy.deepcopy(mlp.state_dict())
    state = copy.deepcopy(optimizer.state_dict())
    with pytest.raises(ValueError, match="obs"):
        gp.prune(mlp, "obs", 0.5, mlp_batches, optimizer=optimizer, **options)
    with pytest.raises(ValueError, match="obs"):
        gp.score(mlp, "obs", mlp_batches, **options)
    for key, value in mlp.state_dict().items():
        assert torch.equal(value, weights[key])
    for key, value in optimizer.state_dict()["state"].items():
        assert torch.equal(value["momentum_buffer"], state["state"][key]["momentum_buffer"])
    assert gp.current_masks(mlp) == {}


def test_obs_without_data_says_so(mlp):
    with pytest.raises(ValueError, match="data"):
        gp.prune(mlp, "obs", 0.5)
    with pytest.raises(ValueError, match="data"):
        gp.score(mlp, "obs")


def test_pruned_entries_are_decoupled_from_the_survivors():
    # Zero gradient on dead entries leaves only damping there: the inverse of the living
    # part must equal the inverse of the living sub-matrix alone.
    g = torch.Generator().manual_seed(2)
    a = torch.randn(1, 5, 5, generator=g, dtype=torch.float64)
    curvature = a @ a.transpose(1, 2)
    alive = torch.tensor([[1.0, 0.0, 1.0, 1.0, 0.0]], dtype=torch.float64)
    masked = curvature * alive.unsqueeze(2) * alive.unsqueeze(1)
    inverse = damped_inverse(masked, alive, damping=1e-3)
    keep = alive[0].bool()
    sub = curvature[0][keep][:, keep]
    scale = sub.diagonal().mean()
    expected = torch.linalg.inv(sub + 1e-3 * scale * torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(inverse[0][keep][:, keep], expected)
    assert torch.all(inverse[0][keep][:, ~keep] == 0)


def test_padded_blocks_pads_with_zeros_at_the_end():
    blocks = padded_blocks(torch.arange(1.0, 8.0), 3)
    assert blocks.tolist() == [[1, 2, 3], [4, 5, 6], [7, 0, 0]]


@pytest.mark.slow
def test_obs_beats_magnitude_one_shot_at_95_percent_on_real_mnist():
    # One thread: on a shared 2-core machine two OpenMP threads measured slower (RESULTS.md).
    torch.set_num_threads(1)
    train, validation, _ = gp.splits()
    dense = gp.trained("lenet_300_100", seed=0)
    batches = list(train.take(1000).batches(250))
    magnitude = copy.deepcopy(dense)
    gp.prune(magnitude, "magnitude", 0.95)
    obs = copy.deepcopy(dense)
    gp.prune(obs, "obs", 0.95, batches)
    obs_error = gp.evaluate(obs, validation).error
    magnitude_error = gp.evaluate(magnitude, validation).error
    assert gp.sparsity(obs) == pytest.approx(0.95, abs=1e-5)
    assert obs_error < magnitude_error, (obs_error, magnitude_error)


class _InplaceBatchNormReused(nn.Module):
    """In-place ReLUs, BatchNorm, and one Linear called twice in the forward."""

    def __init__(self):
        super().__init__()
        self.lin1 = nn.Linear(64, 6)
        self.bn = nn.BatchNorm1d(6)
        self.shared = nn.Linear(6, 6)
        self.head = nn.Linear(6, 10)

    def forward(self, x):
        h = torch.relu_(self.bn(self.lin1(x.flatten(1))))
        h = torch.relu_(self.shared(h))
        return self.head(self.shared(h))


def test_saliency_is_exact_obs_on_inplace_batchnorm_and_a_reused_layer(mlp_batches):
    torch.manual_seed(6)
    model = _InplaceBatchNormReused()
    with torch.no_grad():  # non-trivial running statistics, then score as gp.score does: eval
        for x, _ in mlp_batches:
            model(x)
    model.eval()
    damping = 1e-2
    biggest = max(w.numel() for w in gp.prunable_weights(model).values())
    scores = gp.score(model, "obs", mlp_batches, block_size=biggest, damping=damping)
    assert set(scores) == {"lin1.weight", "shared.weight", "head.weight"}
    assert_exact_obs_saliency(model, scores, per_sample_reference(model, mlp_batches), damping)


# --- No side effects in any curvature; reconstruction right for every layer it accepts ---


class _ConvBatchNormNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.norm = nn.BatchNorm2d(4)
        self.head = nn.Linear(4 * 6 * 6, 10)

    def forward(self, x):
        return self.head(torch.relu(self.norm(self.conv(x))).flatten(1))


@pytest.mark.parametrize("curvature", ["empirical", "sampled", "reconstruction"])
def test_every_curvature_leaves_a_train_mode_model_and_its_batchnorm_as_they_were(
    curvature, mlp_batches
):
    torch.manual_seed(0)
    model = _ConvBatchNormNet().train()
    before = copy.deepcopy(model.state_dict())
    gp.score(model, "obs", mlp_batches, curvature=curvature, block_size=8)
    assert model.training and model.norm.training
    after = model.state_dict()
    for key in ("norm.running_mean", "norm.running_var", "norm.num_batches_tracked"):
        assert torch.equal(after[key], before[key]), key
    assert all(torch.equal(after[k], v) for k, v in before.items())


def reconstruction_reference(layer: nn.Module, x: torch.Tensor, block_size: int):
    """(blocks, B, B) diagonal blocks of JᵀJ / rows, J = ∂ layer(x) / ∂ weight by autograd.

    The Hessian of ½‖(W − W₀)·columns‖² / rows, from the layer's own forward (no unfold):
    rows = samples × output positions, so that it is (1/rows) XᵀX ⊗ I_out.
    """
    weight = layer.weight.detach()

    def forward(w):
        return torch.func.functional_call(layer, {"weight": w}, (x,), strict=False)

    out = forward(weight)
    jacobian = torch.func.jacrev(forward)(weight).reshape(out.numel(), -1).double()
    rows = out.numel() // weight.shape[0]  # one row per sample and output position
    hessian = jacobian.t() @ jacobian / rows
    size = weight.numel()
    pad = -size % block_size
    hessian = F.pad(hessian, (0, pad, 0, pad))
    count = hessian.shape[0] // block_size
    return torch.stack(
        [
            hessian[b * block_size : (b + 1) * block_size, b * block_size : (b + 1) * block_size]
            for b in range(count)
        ]
    )


@pytest.mark.parametrize(
    "layer, shape",
    [
        (nn.Linear(5, 3), (7, 5)),
        (nn.Linear(5, 3), (4, 2, 5)),  # a sequence: every position is a row
        (nn.Conv1d(2, 3, 3, stride=2, padding=1, dilation=2), (4, 2, 11)),
        (nn.Conv1d(2, 3, 4, padding="same", padding_mode="reflect"), (3, 2, 9)),
        (nn.Conv2d(2, 3, 3, stride=2, padding=1), (3, 2, 7, 6)),
        (nn.Conv2d(2, 3, (2, 3), padding="same", dilation=(2, 1)), (3, 2, 5, 5)),
        (nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular"), (2, 2, 5, 5)),
    ],
    ids=[
        "linear",
        "linear-seq",
        "conv1d",
        "conv1d-same-reflect",
        "conv2d",
        "conv2d-same",
        "conv2d-circular",
    ],
)
def test_reconstruction_curvature_matches_the_layers_own_jacobian(layer, shape):
    torch.manual_seed(0)
    x = torch.randn(shape)
    block_size = 6
    model = nn.Sequential(layer)
    alive = {"0.weight": torch.ones_like(layer.weight, dtype=torch.bool)}
    blocks = reconstruction_curvature(model, [(x, torch.zeros(len(x)))], alive, block_size)
    expected = reconstruction_reference(layer, x, block_size)
    torch.testing.assert_close(blocks["0.weight"].double(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "layer, shape, kind",
    [
        (nn.ConvTranspose1d(2, 3, 3), (2, 2, 5), "ConvTranspose1d"),
        (nn.ConvTranspose2d(2, 3, 3), (2, 2, 5, 5), "ConvTranspose2d"),
        (nn.Conv3d(2, 3, 2), (2, 2, 3, 3, 3), "Conv3d"),
        (nn.Conv2d(2, 4, 3, groups=2), (2, 2, 5, 5), "grouped Conv2d"),
    ],
)
def test_reconstruction_refuses_layers_it_cannot_model(layer, shape, kind):
    model = nn.Sequential(layer, nn.Flatten(), nn.LazyLinear(3))
    x = torch.randn(shape)
    model(x)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=f"0.weight is a {kind}.*curvature='empirical'"):
        gp.score(
            model, "obs", [(x, torch.zeros(len(x), dtype=torch.long))], curvature="reconstruction"
        )
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_reconstruction_refuses_an_embedding():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 3))
    tokens = torch.randint(0, 10, (5, 3))
    with pytest.raises(ValueError, match="0.weight is a Embedding.*curvature='empirical'"):
        gp.score(
            model, "obs", [(tokens, torch.zeros(5, dtype=torch.long))], curvature="reconstruction"
        )
