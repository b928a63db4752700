"""gp.structured_prune and the group criteria: physically smaller models, exactly."""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from func_reference import per_sample_reference
from torch import nn

import gradprune_lite as gp
from gradprune_lite.core.structure import GroupContext


@pytest.fixture(scope="module")
def digits():
    data = gp.mnist("train", limit=256, verbose=False)
    return [(data.images[i : i + 64], data.labels[i : i + 64]) for i in range(0, 256, 64)]


def weight_shapes(model):
    return {n: tuple(p.shape) for n, p in model.named_parameters() if n.endswith("weight")}


def same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_layerwise_shapes_lenet_300_100():
    model = gp.models.lenet_300_100(seed=0)
    small = gp.structured_prune(
        model, "magnitude", 0.5, example_inputs=torch.zeros(1, 1, 28, 28), scope="layerwise"
    )
    assert weight_shapes(small) == {
        "fc1.weight": (150, 784),
        "fc2.weight": (50, 150),
        "fc3.weight": (10, 50),
    }
    assert small.fc1.bias.shape == (150,) and small.fc2.bias.shape == (50,)
    assert small(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_conv_channels_reach_the_flattened_linear(digits):
    model = gp.models.lenet5(seed=0)
    small = gp.structured_prune(
        model, "taylor", 0.3, digits, example_inputs=digits[0][0][:1], scope="layerwise"
    )
    conv1, conv2 = small.conv1.out_channels, small.conv2.out_channels
    assert (conv1, conv2) == (20 - 6, 50 - 15)
    assert small.conv2.in_channels == conv1
    assert small.fc1.in_features == conv2 * 4 * 4
    assert small.fc1.out_features == 500 - 150 and small.fc2.out_features == 10


def test_global_amount_removes_exact_count():
    model = gp.models.lenet_300_100(seed=0)
    small = gp.structured_prune(model, "magnitude", 0.25, example_inputs=torch.zeros(1, 784))
    assert small.fc1.out_features + small.fc2.out_features == 400 - 100
    assert small.fc3.out_features == 10


@pytest.mark.parametrize("criterion", ["magnitude", "taylor", "fisher"])
def test_removing_all_zero_neurons_leaves_outputs_unchanged(criterion, digits):
    model = gp.models.lenet_300_100(seed=0)
    dead1, dead2 = torch.arange(0, 300, 10), torch.arange(3, 100, 10)  # 30 + 10 units
    with torch.no_grad():
        model.fc1.weight[dead1] = 0
        model.fc1.bias[dead1] = 0
        model.fc2.weight[dead2] = 0
        model.fc2.bias[dead2] = 0
    small = gp.structured_prune(model, criterion, 40 / 400, digits, example_inputs=digits[0][0][:1])
    assert small.fc1.out_features + small.fc2.out_features == 360
    inputs = torch.cat([x for x, _ in digits])
    torch.testing.assert_close(small(inputs), model(inputs), rtol=0, atol=1e-5)
    if criterion == "magnitude":  # zero norm is strictly lowest: exactly these go
        kept = [i for i in range(300) if i not in set(dead1.tolist())]
        torch.testing.assert_close(small.fc1.weight, model.fc1.weight[kept], rtol=0, atol=0)


def test_taylor_group_equals_activation_taylor_reference(digits):
    """Σ over a unit's weights and bias of g·w telescopes to Σ_samples ∂L/∂z · z."""
    model = gp.models.lenet5(seed=0)
    layers = {"conv1.weight": model.conv1, "conv2.weight": model.conv2, "fc1.weight": model.fc1}
    scores = gp.GROUP_CRITERIA["taylor"](GroupContext(model, layers, digits, {}))
    reference = {name: torch.zeros(m.weight.shape[0]) for name, m in layers.items()}
    outputs = {}
    for inputs, targets in digits:
        outputs.clear()
        handles = [
            m.register_forward_hook(lambda _m, _i, out, name=name: outputs.__setitem__(name, out))
            for name, m in layers.items()
        ]
        loss = F.cross_entropy(model(inputs), targets)
        for handle in handles:
            handle.remove()
        grads = torch.autograd.grad(loss, list(outputs.values()))
        for (name, z), d in zip(outputs.items(), grads):
            dims = [0, 2, 3] if z.dim() == 4 else [0]
            reference[name] += (d * z).sum(dims).detach().square()
    for name in layers:
        torch.testing.assert_close(scores[name], reference[name], rtol=1e-4, atol=1e-12)


@pytest.mark.parametrize(
    "build, names",
    [
        (gp.models.lenet_300_100, ["fc1", "fc2"]),
        (gp.models.lenet5, ["conv1", "conv2", "fc1"]),
    ],
)
def test_fisher_group_is_the_row_sum_of_the_fisher_scores(build, names, digits):
    """Without BatchNorm, fisher reads the weights alone: Σ_{w in W[k]} ½·w²·E[g²]."""
    model = build(seed=0)
    layers = {f"{name}.weight": model.get_submodule(name) for name in names}
    groups = gp.GROUP_CRITERIA["fisher"](GroupContext(model, layers, digits, {}))
    weights = gp.score(model, "fisher", digits)
    for name in layers:
        torch.testing.assert_close(groups[name], weights[name].flatten(1).sum(1))


def test_magnitude_group_is_the_l2_norm_of_row_and_bias():
    model = gp.models.lenet_300_100(seed=0)
    groups = gp.GROUP_CRITERIA["magnitude"](
        GroupContext(model, {"fc1.weight": model.fc1}, None, {})
    )
    expected = torch.cat([model.fc1.weight, model.fc1.bias[:, None]], 1).norm(dim=1)
    torch.testing.assert_close(groups["fc1.weight"], expected.detach())


def test_input_model_is_unchanged_masks_included(digits):
    model = gp.models.lenet_300_100(seed=0)
    gp.apply_masks(model, gp.global_masks(gp.score(model, "magnitude"), 0.5))
    before = copy.deepcopy(model.state_dict())
    masks = {n: m.clone() for n, m in gp.current_masks(model).items()}
    small = gp.structured_prune(model, "taylor", 0.5, digits, example_inputs=digits[0][0][:1])
    assert small is not model
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(masks[n], m) for n, m in gp.current_masks(model).items())
    assert gp.current_masks(small) == {}
    assert all(p.grad is None for p in model.parameters())


def test_state_dict_round_trip_of_the_small_model(digits):
    model = gp.models.lenet5(seed=0)
    x = digits[0][0][:1]
    small = gp.structured_prune(model, "magnitude", 0.5, example_inputs=x, scope="layerwise")
    buffer = io.BytesIO()
    torch.save(small.state_dict(), buffer)
    buffer.seek(0)
    # Same shapes by a different criterion: layerwise allocation fixes every width.
    twin = gp.structured_prune(model, "random", 0.5, example_inputs=x, scope="layerwise")
    assert not same_state(small, twin)
    twin.load_state_dict(torch.load(buffer, weights_only=True), strict=True)
    assert same_state(small, twin)
    torch.testing.assert_close(twin(digits[0][0]), small(digits[0][0]), rtol=0, atol=0)


def test_exclude_keeps_parameters_whole(digits):
    model = gp.models.lenet5(seed=0)
    small = gp.structured_prune(
        model, "magnitude", 0.5, example_inputs=digits[0][0][:1], exclude=["fc1.*"]
    )
    # fc1 keeps its shape, so neither its own outputs nor conv2's channels (its inputs) go.
    assert small.fc1.weight.shape == model.fc1.weight.shape
    assert small.conv2.out_channels == 50
    assert small.conv1.out_channels == 10 and small.conv2.in_channels == 10


def test_exclude_pattern_matching_nothing_is_an_error():
    model = gp.models.lenet_300_100(seed=0)
    with pytest.raises(ValueError, match="matches no parameter"):
        gp.structured_prune(
            model, "magnitude", 0.5, example_inputs=torch.zeros(1, 784), exclude=["fc9.*"]
        )


def test_excluding_everything_is_an_error():
    model = gp.models.lenet_300_100(seed=0)
    with pytest.raises(ValueError, match="nothing to prune"):
        gp.structured_prune(
            model, "magnitude", 0.5, example_inputs=torch.zeros(1, 784), exclude=["fc2.*"]
        )


@pytest.mark.parametrize("scope, amount", [("global", 0.8), ("layerwise", 0.9)])
def test_min_width_is_respected(scope, amount):
    model = gp.models.lenet_300_100(seed=0)
    small = gp.structured_prune(
        model, "magnitude", amount, example_inputs=torch.zeros(1, 784), scope=scope, min_width=40
    )
    assert small.fc1.out_features >= 40 and small.fc2.out_features >= 40
    if scope == "layerwise":
        assert (small.fc1.out_features, small.fc2.out_features) == (40, 40)
    else:
        assert (small.fc1.out_features, small.fc2.out_features) == (40, 40)  # 400 - 320


def test_min_width_that_forbids_the_amount_is_an_error():
    model = gp.models.lenet_300_100(seed=0)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match="min_width"):
        gp.structured_prune(
            model, "magnitude", 0.9, example_inputs=torch.zeros(1, 784), min_width=90
        )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("amount", [1.0, -0.1, 50, float("nan"), "half", None])
def test_bad_amount_is_an_error(amount):
    model = gp.models.lenet_300_100(seed=0)
    with pytest.raises(ValueError, match="amount"):
        gp.structured_prune(model, "magnitude", amount, example_inputs=torch.zeros(1, 784))


@pytest.mark.parametrize(
    "model",
    [
        nn.Sequential(
            nn.Embedding(10, 8), nn.Flatten(), nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2)
        ),
        nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Flatten(), nn.Linear(4, 2)),
        nn.Sequential(nn.Conv1d(2, 4, 3), nn.Flatten(), nn.Linear(4, 2)),
    ],
    ids=["embedding", "grouped-conv", "conv1d"],
)
def test_unsupported_layers_are_an_error(model):
    with pytest.raises(ValueError, match="cannot slice"):
        gp.structured_prune(model, "magnitude", 0.5, example_inputs=torch.zeros(1, 4, 3, 3))


def test_unknown_criterion_and_missing_data_are_errors():
    model = gp.models.lenet_300_100(seed=0)
    with pytest.raises(ValueError, match="unknown group criterion"):
        gp.structured_prune(model, "snip", 0.5, example_inputs=torch.zeros(1, 784))
    with pytest.raises(ValueError, match="needs data"):
        gp.structured_prune(model, "taylor", 0.5, example_inputs=torch.zeros(1, 784))


def test_batchnorm_follows_its_convolution():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 3)
    ).eval()
    with torch.no_grad():
        model[0].weight[[1, 5]] = 0
        model[0].bias[[1, 5]] = 0
        model[1].weight[[1, 5]] = 0  # a channel whose BN output is exactly 0
        model[1].bias[[1, 5]] = 0
    x = torch.randn(4, 1, 6, 6)
    small = gp.structured_prune(model, "magnitude", 2 / 8, example_inputs=x[:1])
    assert small[0].out_channels == 6 and small[1].num_features == 6
    assert small[1].running_mean.shape == (6,) and small[4].in_features == 6 * 16
    torch.testing.assert_close(small(x), model(x), rtol=0, atol=1e-5)


def test_registered_group_criterion_is_used():
    @gp.register_group_criterion("keep_high_index")
    def keep_high_index(ctx):
        return {
            n: torch.arange(m.weight.shape[0], dtype=torch.float) for n, m in ctx.layers.items()
        }

    try:
        model = gp.models.lenet_300_100(seed=0)
        small = gp.structured_prune(
            model, "keep_high_index", 0.5, example_inputs=torch.zeros(1, 784), scope="layerwise"
        )
        torch.testing.assert_close(small.fc1.weight, model.fc1.weight[150:], rtol=0, atol=0)
    finally:
        del gp.GROUP_CRITERIA["keep_high_index"]


def test_criterion_with_wrong_shape_is_an_error():
    gp.register_group_criterion("scalar", lambda ctx: {n: torch.tensor(1.0) for n in ctx.layers})
    try:
        with pytest.raises(ValueError, match="one score per output"):
            gp.structured_prune(
                gp.models.lenet_300_100(seed=0), "scalar", 0.5, example_inputs=torch.zeros(1, 784)
            )
    finally:
        del gp.GROUP_CRITERIA["scalar"]


def test_rounds_call_between_and_reach_the_amount(digits):
    model = gp.models.lenet_300_100(seed=0)
    widths = []
    small = gp.structured_prune(
        model,
        "taylor",
        0.6,
        digits,
        example_inputs=digits[0][0][:1],
        rounds=3,
        between=lambda m: widths.append(m.fc1.out_features + m.fc2.out_features),
    )
    assert widths == [400 - 80, 400 - 160]
    assert small.fc1.out_features + small.fc2.out_features == 400 - 240


def test_removing_the_weakest_taylor_channel_of_conv1_by_hand(digits):
    """The exercise's hand removal: conv1 rows and bias, conv2 input channels."""
    model = gp.models.lenet5(seed=0)
    importance = torch.zeros(20)
    for inputs, targets in digits:
        loss = F.cross_entropy(model(inputs), targets)
        grad_w, grad_b = torch.autograd.grad(loss, [model.conv1.weight, model.conv1.bias])
        first_order = (grad_w * model.conv1.weight).sum((1, 2, 3)) + grad_b * model.conv1.bias
        importance += first_order.detach().square()
    weakest = int(importance.argmin())
    keep = [c for c in range(20) if c != weakest]
    by_hand = copy.deepcopy(model)
    with torch.no_grad():
        by_hand.conv1 = nn.Conv2d(1, 19, 5)
        by_hand.conv1.weight.copy_(model.conv1.weight[keep])
        by_hand.conv1.bias.copy_(model.conv1.bias[keep])
        by_hand.conv2 = nn.Conv2d(19, 50, 5)
        by_hand.conv2.weight.copy_(model.conv2.weight[:, keep])
        by_hand.conv2.bias.copy_(model.conv2.bias)
    # exclude fc1 so only conv1 can lose outputs; one of its 20 channels goes.
    small = gp.structured_prune(
        model, "taylor", 1 / 20, digits, example_inputs=digits[0][0][:1], exclude=["fc1.*"]
    )
    assert same_state(small, by_hand)
    torch.testing.assert_close(small(digits[0][0]), by_hand(digits[0][0]), rtol=0, atol=0)


class InplaceBatchNormReused(nn.Module):
    """In-place ReLUs, BatchNorm, and one Linear called twice: what users bring."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 5, stride=2)
        self.norm = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6 * 12 * 12, 32)
        self.shared = nn.Linear(32, 32)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        x = F.relu(self.norm(self.conv(x)), inplace=True).flatten(1)
        x = F.relu(self.fc(x), inplace=True)
        x = F.relu(self.shared(x), inplace=True)
        return self.head(self.shared(x))


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_taylor_group_matches_torch_func_on_inplace_batchnorm_and_reused_layers(digits, mode):
    """The group sum of g·w uses the full gradient of a layer used twice, checked against
    torch.func.grad (an independent reference), with BatchNorm in either mode."""
    torch.manual_seed(0)
    model = InplaceBatchNormReused().train(mode == "train")
    layers = {"conv.weight": model.conv, "fc.weight": model.fc, "shared.weight": model.shared}
    context_model = copy.deepcopy(model)
    context_layers = {name: context_model.get_submodule(name[: -len(".weight")]) for name in layers}
    scores = gp.GROUP_CRITERIA["taylor"](GroupContext(context_model, context_layers, digits, {}))

    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    reference = {name: torch.zeros(m.weight.shape[0]) for name, m in layers.items()}
    for inputs, targets in digits:

        def loss(p, b, inputs=inputs, targets=targets):  # b: BatchNorm may update it
            out = torch.func.functional_call(model, (p, b), (inputs,))
            return F.cross_entropy(out, targets)

        grads = torch.func.grad(loss)(params, buffers)
        for name in layers:
            prefix = name[: -len(".weight")]
            weight, bias = params[f"{prefix}.weight"], params[f"{prefix}.bias"]
            term = (grads[name] * weight).reshape(len(weight), -1).sum(1)
            reference[name] += (term + grads[f"{prefix}.bias"] * bias).square()
    for name in layers:
        torch.testing.assert_close(scores[name], reference[name], rtol=1e-4, atol=1e-10)


def test_structured_taylor_on_inplace_relu_and_batchnorm_keeps_the_model_working(digits):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 5),
        nn.BatchNorm2d(8),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(4),
        nn.Flatten(),
        nn.Linear(8 * 6 * 6, 24),
        nn.ReLU(inplace=True),
        nn.Linear(24, 10),
    ).eval()
    before = copy.deepcopy(model.state_dict())
    small = gp.structured_prune(
        model, "taylor", 0.5, digits, example_inputs=digits[0][0][:1], scope="layerwise"
    )
    assert small[0].out_channels == 4 and small[1].num_features == 4
    assert small[5].in_features == 4 * 36 and small[5].out_features == 12
    assert small[7].out_features == 10
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.isfinite(small(digits[0][0])).all()


# --- Coupled groups: residual streams, ResNet, depthwise convolutions ---------------------


class ResidualMLP(nn.Module):
    """A 16-wide residual stream written by ``embed`` and ``back``: their outputs are coupled."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(784, 16)
        self.hidden = nn.Linear(16, 16)
        self.back = nn.Linear(16, 16)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        stream = self.embed(x.flatten(1))
        stream = stream + self.back(F.relu(self.hidden(stream)))
        return self.head(F.relu(stream))


def residual_mlp_with_dead_channels(dead):
    """Channels ``dead`` of the stream are exactly 0: both writers' rows and biases are 0."""
    torch.manual_seed(0)
    model = ResidualMLP()
    with torch.no_grad():
        for layer in (model.embed, model.back):
            layer.weight[dead] = 0
            layer.bias[dead] = 0
    return model


@pytest.mark.parametrize("criterion", ["magnitude", "taylor", "fisher"])
def test_residual_stream_loses_exactly_its_dead_channels(criterion, digits):
    """32 coupled units (16 in the stream, 16 hidden); 3/32 removes the 3 dead channels once."""
    dead = [2, 7, 11]
    model = residual_mlp_with_dead_channels(dead)
    small = gp.structured_prune(model, criterion, 3 / 32, digits, example_inputs=digits[0][0][:1])
    kept = [c for c in range(16) if c not in dead]
    assert small.embed.out_features == small.back.out_features == 13
    assert small.hidden.in_features == small.head.in_features == 13
    assert small.hidden.out_features == 16
    for layer in ("embed", "back"):
        torch.testing.assert_close(
            getattr(small, layer).weight, getattr(model, layer).weight[kept], rtol=0, atol=0
        )
    torch.testing.assert_close(small.hidden.weight, model.hidden.weight[:, kept], rtol=0, atol=0)
    inputs = torch.cat([x for x, _ in digits])
    torch.testing.assert_close(small(inputs), model(inputs), rtol=0, atol=1e-6)


def test_residual_stream_is_counted_once_per_unit():
    """Layerwise 0.5 halves each coupled group once: the stream to 8, the hidden layer to 8."""
    model = residual_mlp_with_dead_channels([])
    small = gp.structured_prune(
        model, "magnitude", 0.5, example_inputs=torch.zeros(1, 784), scope="layerwise"
    )
    assert small.embed.out_features == small.back.out_features == 8
    assert small.hidden.out_features == 8 and small.head.in_features == 8
    assert small(torch.zeros(2, 784)).shape == (2, 10)


def stage_widths(net):
    """dict stage → the one width every layer writing into its residual stream must share."""
    widths = {}
    stem = {net.conv1.out_channels, net.bn1.num_features}
    for index in range(1, 5):
        stage = getattr(net, f"layer{index}")
        stream = {stage[0].conv1.in_channels} | (stem if index == 1 else set())
        if index > 1:
            stream = {stage[0].downsample[0].in_channels, stage[0].conv1.in_channels}
            assert stream == {widths[index - 1]}, f"layer{index} reads another width"
        writes = set()
        for block in stage:
            writes |= {block.conv2.out_channels, block.bn2.num_features}
            if block.downsample is not None:
                writes |= {block.downsample[0].out_channels, block.downsample[1].num_features}
            assert block.conv1.out_channels == block.bn1.num_features == block.conv2.in_channels
        for later in stage[1:]:
            writes.add(later.conv1.in_channels)
        assert len(writes) == 1, f"layer{index}'s residual stream has widths {sorted(writes)}"
        widths[index] = writes.pop()
        if index == 1:
            assert stem == {widths[1]}, "the stem writes layer1's stream"
    assert net.fc.in_features == widths[4]
    return widths


@pytest.fixture(scope="module")
def resnet18():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=10).eval()


def test_resnet18_at_amount_zero_is_the_same_function(resnet18):
    x = torch.randn(2, 3, 32, 32)
    small = gp.structured_prune(resnet18, "magnitude", 0.0, example_inputs=x[:1])
    assert same_state(small, resnet18)
    torch.testing.assert_close(small(x), resnet18(x), rtol=0, atol=0)


def test_resnet18_coupled_widths_agree_and_each_unit_counts_once(resnet18):
    x = torch.randn(2, 3, 32, 32)
    small = gp.structured_prune(resnet18, "magnitude", 0.25, example_inputs=x[:1])
    before, after = stage_widths(resnet18), stage_widths(small)

    def inner_widths(net):
        return [
            block.conv1.out_channels for s in range(1, 5) for block in getattr(net, f"layer{s}")
        ]

    # Units: 4 streams (64+128+256+512) and 8 block-internal widths (2 per stage): 2,880.
    total = sum(before.values()) + sum(inner_widths(resnet18))
    removed = total - sum(after.values()) - sum(inner_widths(small))
    assert total == 2880 and removed == round(0.25 * total)
    assert small(x).shape == (2, 10) and bool(torch.isfinite(small(x)).all())


class DepthwiseNet(nn.Module):
    """conv → BN → depthwise conv → BN → pointwise conv: the depthwise couples its channels."""

    def __init__(self, depthwise_first=False):
        super().__init__()
        self.front = nn.Conv2d(3, 3, 3, padding=1, groups=3) if depthwise_first else None
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.BatchNorm2d(8)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.depthwise_norm = nn.BatchNorm2d(8)
        self.pointwise = nn.Conv2d(8, 16, 1)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        if self.front is not None:
            x = self.front(x)
        x = F.relu(self.norm(self.conv(x)))
        x = F.relu(self.depthwise_norm(self.depthwise(x)))
        x = F.relu(self.pointwise(x))
        return self.head(x.mean((2, 3)))


def test_depthwise_channels_go_with_their_producer():
    torch.manual_seed(0)
    model = DepthwiseNet().eval()
    dead = [1, 5]
    with torch.no_grad():
        for layer in (model.conv, model.norm, model.depthwise, model.depthwise_norm):
            layer.weight[dead] = 0
            layer.bias[dead] = 0
    x = torch.randn(4, 3, 8, 8)
    # 8 coupled units (conv, depthwise) and 16 pointwise outputs: 2/24 are the dead ones.
    small = gp.structured_prune(model, "magnitude", 2 / 24, example_inputs=x[:1])
    assert small.conv.out_channels == small.norm.num_features == 6
    assert small.depthwise.in_channels == small.depthwise.out_channels == 6
    assert small.depthwise.groups == 6 and small.depthwise_norm.num_features == 6
    assert small.pointwise.in_channels == 6 and small.pointwise.out_channels == 16
    torch.testing.assert_close(small(x), model(x), rtol=0, atol=1e-6)


def test_depthwise_layer_on_the_input_keeps_the_input_channels():
    torch.manual_seed(0)
    model = DepthwiseNet(depthwise_first=True).eval()
    x = torch.randn(2, 3, 8, 8)
    small = gp.structured_prune(model, "magnitude", 0.5, example_inputs=x[:1], scope="layerwise")
    assert small.front.in_channels == small.front.out_channels == 3
    assert small.conv.out_channels == 4 and small.pointwise.out_channels == 8
    assert small(x).shape == (2, 10)


def test_channel_multiplier_conv_is_refused_clearly():
    model = nn.Sequential(nn.Conv2d(4, 8, 3, groups=4), nn.Flatten(), nn.Linear(8, 2))
    with pytest.raises(ValueError, match="depthwise"):
        gp.structured_prune(model, "magnitude", 0.5, example_inputs=torch.zeros(1, 4, 3, 3))


def test_train_mode_and_batchnorm_statistics_are_kept():
    torch.manual_seed(0)
    model = DepthwiseNet().train()
    model.depthwise_norm.eval()  # a mixed model: each module keeps its own mode
    x = torch.randn(2, 3, 8, 8)
    small = gp.structured_prune(model, "magnitude", 0.0, example_inputs=x[:1])
    assert small.training and not small.depthwise_norm.training and small.norm.training
    assert same_state(small, model)  # tracing ran no BatchNorm update
    smaller = gp.structured_prune(model, "magnitude", 0.25, example_inputs=x[:1])
    assert [m.training for m in smaller.modules()] == [m.training for m in model.modules()]


def test_string_amount_is_refused_like_prunes_sparsity():
    model = gp.models.lenet_300_100(seed=0)
    with pytest.raises(ValueError, match="amount must be a number.*not a string"):
        gp.structured_prune(model, "magnitude", "0.5", example_inputs=torch.zeros(1, 784))


def test_example_inputs_of_the_wrong_shape_are_a_clear_error():
    model = gp.models.lenet_300_100(seed=0)
    with pytest.raises(ValueError, match=r"does not accept example_inputs of shape\(s\) \[\(1, 3"):
        gp.structured_prune(model, "magnitude", 0.5, example_inputs=torch.zeros(1, 3, 32, 32))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_example_inputs_move_to_the_models_device():
    model = residual_mlp_with_dead_channels([1]).cuda()
    small = gp.structured_prune(model, "magnitude", 1 / 32, example_inputs=torch.zeros(1, 784))
    assert small.embed.weight.is_cuda and small.embed.out_features == 15


class InputResidual(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(8, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(x + self.inner(x))


def test_a_group_coupled_to_the_raw_input_is_a_clear_error():
    model = InputResidual()
    with pytest.raises(ValueError, match="coupled to the model's input"):
        gp.structured_prune(model, "magnitude", 0.5, example_inputs=torch.zeros(1, 8))


# --- The course's residual CNN (gp.models.resnet_mnist, notebook 06) ---------------------

#: Layers (convolution, its BatchNorm) that write each coupled channel group of resnet_mnist.
RESNET_MNIST_WRITERS = {
    "stream16": [("conv1", "bn1"), ("block1.conv2", "block1.bn2")],
    "block1": [("block1.conv1", "block1.bn1")],
    "block2": [("block2.conv1", "block2.bn1")],
    "stream32": [
        ("block2.conv2", "block2.bn2"),
        ("block2.shortcut.conv", "block2.shortcut.bn"),
        ("block3.conv2", "block3.bn2"),
    ],
    "block3": [("block3.conv1", "block3.bn1")],
}

#: The group each convolution reads (None: the image).
RESNET_MNIST_READS = {
    "conv1": None,
    "block1.conv1": "stream16",
    "block1.conv2": "block1",
    "block2.conv1": "stream16",
    "block2.conv2": "block2",
    "block2.shortcut.conv": "stream16",
    "block3.conv1": "stream32",
    "block3.conv2": "block3",
}


def resnet_widths(net):
    """dict group → its one width, after checking every layer of the group agrees."""
    modules = dict(net.named_modules())
    widths = {}
    for group, writers in RESNET_MNIST_WRITERS.items():
        found = {modules[conv].out_channels for conv, _ in writers}
        found |= {modules[norm].num_features for _, norm in writers}
        assert len(found) == 1, f"{group} has widths {sorted(found)}"
        widths[group] = found.pop()
    # Every reader sees its producer's width.
    assert net.block1.conv1.in_channels == widths["stream16"]
    assert net.block1.conv2.in_channels == widths["block1"]
    assert net.block2.conv1.in_channels == net.block2.shortcut.conv.in_channels
    assert net.block2.conv1.in_channels == widths["stream16"]
    assert net.block2.conv2.in_channels == widths["block2"]
    assert net.block3.conv1.in_channels == widths["stream32"]
    assert net.block3.conv2.in_channels == widths["block3"]
    assert net.fc.in_features == widths["stream32"] and net.fc.out_features == 10
    return widths


def test_resnet_mnist_loses_exactly_its_dead_channels_and_computes_the_same(digits):
    """A channel whose convolution rows and BatchNorm scale and shift are all zero is 0
    everywhere (in eval mode), so removing it leaves the outputs unchanged: 2 channels of
    each of the five coupled groups, 10 of 128 units, are exactly the ones removed."""
    torch.manual_seed(0)
    model = gp.models.resnet_mnist(seed=0)
    model.train()
    with torch.no_grad():  # running statistics that are not the initial 0 and 1
        model(torch.cat([x for x, _ in digits]))
    model.eval()
    modules = dict(model.named_modules())
    dead = {group: [3, 9] for group in RESNET_MNIST_WRITERS}
    with torch.no_grad():
        for group, writers in RESNET_MNIST_WRITERS.items():
            for conv, norm in writers:
                modules[conv].weight[dead[group]] = 0
                modules[norm].weight[dead[group]] = 0
                modules[norm].bias[dead[group]] = 0
    for criterion in ("magnitude", "taylor", "fisher"):
        small = gp.structured_prune(
            model, criterion, 10 / 128, digits, example_inputs=digits[0][0][:1]
        )
        assert resnet_widths(small) == {g: w - 2 for g, w in resnet_widths(model).items()}
        small_modules, widths = dict(small.named_modules()), resnet_widths(model)
        kept = {g: [c for c in range(widths[g]) if c not in dead[g]] for g in widths}
        kept[None] = [0]
        for group, writers in RESNET_MNIST_WRITERS.items():
            for conv, norm in writers:  # the right rows and columns, BatchNorm's entries too
                rows, columns = kept[group], kept[RESNET_MNIST_READS[conv]]
                torch.testing.assert_close(
                    small_modules[conv].weight,
                    modules[conv].weight[rows][:, columns],
                    rtol=0,
                    atol=0,
                )
                for entry in ("weight", "bias", "running_mean", "running_var"):
                    torch.testing.assert_close(
                        getattr(small_modules[norm], entry),
                        getattr(modules[norm], entry)[kept[group]],
                        rtol=0,
                        atol=0,
                    )
        inputs = torch.cat([x for x, _ in digits])
        with torch.no_grad():
            torch.testing.assert_close(small(inputs), model(inputs), rtol=0, atol=1e-5)


def test_resnet_mnist_layerwise_30_percent_keeps_every_coupling():
    model = gp.models.resnet_mnist(seed=0).eval()
    x = torch.zeros(1, 1, 28, 28)
    small = gp.structured_prune(model, "magnitude", 0.3, example_inputs=x, scope="layerwise")
    # round(0.3 × 16) = 5 and round(0.3 × 32) = 10 units leave each group, once.
    assert resnet_widths(small) == {
        "stream16": 11,
        "block1": 11,
        "block2": 22,
        "stream32": 22,
        "block3": 22,
    }
    assert small(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


# --- BatchNorm after a layer: a unit is what comes out of the BatchNorm ------------------


def _resnet_with_statistics(digits):
    """resnet_mnist in eval mode with running statistics that are not the initial 0 and 1."""
    torch.manual_seed(0)
    model = gp.models.resnet_mnist(seed=0).train()
    with torch.no_grad():
        model(torch.cat([x for x, _ in digits]))
    return model.eval()


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("criterion", ["magnitude", "taylor", "fisher"])
def test_zero_filter_before_batchnorm_is_not_free_to_remove(criterion, mode, digits):
    """Zero block1.conv1's filter 5 but keep bn1's scale, shift and statistics: the channel
    still outputs the constant β − γ·μ/√(σ²+ε) (after ReLU, what block1.conv2 reads), so
    removing it changes the network. Its score must not be 0, and if it is the lowest, the
    network must still change by removing it (the score says so, it does not hide it)."""
    model = _resnet_with_statistics(digits)
    norm = model.block1.bn1
    with torch.no_grad():
        model.block1.conv1.weight[5] = 0
        norm.bias[5] = 0.5  # a shift training could give it (the trained net's reach 2.3)
        shift = norm.bias - norm.weight * norm.running_mean / (norm.running_var + norm.eps).sqrt()
    assert abs(float(shift[5])) > 0.1  # the channel is alive after BatchNorm
    model.train(mode == "train")  # train mode: the channel outputs β exactly
    inputs = torch.cat([x for x, _ in digits])
    # Removing the channel by hand (zeroing its BatchNorm output) changes the outputs.
    without = copy.deepcopy(model)
    with torch.no_grad():
        without.block1.bn1.weight[5] = 0
        without.block1.bn1.bias[5] = 0
        assert (without(inputs) - copy.deepcopy(model)(inputs)).abs().max() > 1e-3
    layers = {"block1.conv1.weight": model.block1.conv1}
    context = GroupContext(model, layers, digits, {}, norms={"block1.conv1.weight": norm})
    scores = gp.GROUP_CRITERIA[criterion](context)["block1.conv1.weight"]
    assert float(scores[5]) > 0
    # The rule that reads the filter alone scores it 0: "free to remove", wrongly.
    alone = gp.GROUP_CRITERIA[criterion](GroupContext(model, layers, digits, {}))
    assert float(alone["block1.conv1.weight"][5]) == 0


def test_structured_prune_removes_the_lowest_folded_channel(digits):
    """Through structured_prune on resnet_mnist (eval), magnitude removes from block1's
    inner group the channel whose BatchNorm-folded filter (torch's own
    fuse_conv_bn_eval, an independent reference) has the smallest norm, not the zero
    filter whose BatchNorm still shifts it."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = _resnet_with_statistics(digits)
    with torch.no_grad():
        model.block1.conv1.weight[5] = 0
        model.block1.bn1.bias[5] = 2.0
    fused = fuse_conv_bn_eval(model.block1.conv1, model.block1.bn1)
    norms = torch.cat([fused.weight.flatten(1), fused.bias[:, None]], 1).norm(dim=1)
    weakest = int(norms.argmin())
    assert weakest != 5
    small = gp.structured_prune(
        model, "magnitude", 1 / 16, example_inputs=digits[0][0][:1], scope="layerwise"
    )
    kept = [c for c in range(16) if c != weakest]
    torch.testing.assert_close(
        small.block1.bn1.bias, model.block1.bn1.bias[kept].detach(), rtol=0, atol=0
    )
    torch.testing.assert_close(
        small.block1.bn1.running_mean, model.block1.bn1.running_mean[kept], rtol=0, atol=0
    )


def test_magnitude_with_batchnorm_is_the_norm_of_the_fused_layer(digits):
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = _resnet_with_statistics(digits)
    layers = {"block2.conv1.weight": model.block2.conv1}
    norms = {"block2.conv1.weight": model.block2.bn1}
    scores = gp.GROUP_CRITERIA["magnitude"](GroupContext(model, layers, None, {}, norms=norms))
    fused = fuse_conv_bn_eval(model.block2.conv1, model.block2.bn1)
    expected = torch.cat([fused.weight.flatten(1), fused.bias[:, None]], 1).norm(dim=1)
    torch.testing.assert_close(scores["block2.conv1.weight"], expected.detach())


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_taylor_with_batchnorm_is_the_taylor_term_of_the_batchnorm_output(digits, mode):
    """Σ ∂L/∂y · y over samples and positions, y the BatchNorm's output (hooked: an
    independent reference), squared per batch; in either BatchNorm mode."""
    model = _resnet_with_statistics(digits).train(mode == "train")
    pairs = {"block1.conv1.weight": "block1.bn1", "block2.conv1.weight": "block2.bn1"}
    modules = dict(model.named_modules())
    layers = {n: modules[n.removesuffix(".weight")] for n in pairs}
    norms = {n: modules[b] for n, b in pairs.items()}
    state = copy.deepcopy(model.state_dict())
    scores = gp.GROUP_CRITERIA["taylor"](GroupContext(model, layers, digits, {}, norms=norms))
    model.load_state_dict(state)  # train mode updated the running statistics: undo it
    reference = {n: torch.zeros(m.weight.shape[0]) for n, m in layers.items()}
    outputs = {}
    for inputs, targets in digits:
        outputs.clear()
        handles = [
            norms[n].register_forward_hook(lambda _m, _i, y, n=n: outputs.__setitem__(n, y))
            for n in pairs
        ]
        loss = F.cross_entropy(model(inputs), targets)
        for handle in handles:
            handle.remove()
        grads = torch.autograd.grad(loss, list(outputs.values()))
        for (n, y), d in zip(outputs.items(), grads):
            reference[n] += (d * y).sum([0, 2, 3]).detach().square()
    for n in pairs:
        torch.testing.assert_close(scores[n], reference[n], rtol=1e-4, atol=1e-12)


def _fisher_reference(model, norm_names, batches):
    """dict BatchNorm name → ½·(γ²·mean_n g_γ² + β²·mean_n g_β²), per-sample gradients from
    torch.func (functional_call + vmap(grad), each sample alone, eval mode:
    tests/func_reference.py), the convention gp.gradient_stats follows for every weight."""
    grads = per_sample_reference(model, batches)
    modules = dict(model.named_modules())
    reference = {}
    for name in norm_names:
        gamma, beta = modules[name].weight.detach(), modules[name].bias.detach()
        reference[name] = 0.5 * (
            gamma.square() * grads[f"{name}.weight"].square().mean(0)
            + beta.square() * grads[f"{name}.bias"].square().mean(0)
        )
    return reference


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_fisher_with_batchnorm_matches_torch_func_per_sample_gradients(digits, mode):
    """With an affine BatchNorm after the layer, fisher is the OBD sum over (γ[k], β[k]).

    In train mode BatchNorm's batch statistics couple the samples of a batch, so a
    per-sample gradient is not defined there; fisher takes them as gp.gradient_stats takes
    every per-sample gradient, in eval mode (running statistics), whatever the model's
    mode, and leaves the mode and the running statistics as they were."""
    model = _resnet_with_statistics(digits)
    with torch.no_grad():  # the zero-filter case: this channel's score comes from β alone
        model.block1.conv1.weight[5] = 0
        model.block1.bn1.bias[5] = 0.5
    reference = _fisher_reference(model, ["bn1", "block1.bn1", "block2.shortcut.bn"], digits)
    model.train(mode == "train")
    pairs = {
        "conv1": "bn1",
        "block1.conv1": "block1.bn1",
        "block2.shortcut.conv": "block2.shortcut.bn",
    }
    modules = dict(model.named_modules())
    layers = {f"{c}.weight": modules[c] for c in pairs}
    norms = {f"{c}.weight": modules[b] for c, b in pairs.items()}
    state = copy.deepcopy(model.state_dict())
    scores = gp.GROUP_CRITERIA["fisher"](GroupContext(model, layers, digits, {}, norms=norms))
    assert model.training == (mode == "train")
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    for conv, norm in pairs.items():
        torch.testing.assert_close(scores[f"{conv}.weight"], reference[norm], rtol=1e-4, atol=0)
    assert float(scores["block1.conv1.weight"][5]) > 0


class NormCalledTwice(nn.Module):
    """BatchNorm1d on (N, C, L), called twice, each call followed by an in-place ReLU."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(28, 8, 3, padding=1)
        self.norm = nn.BatchNorm1d(8)
        self.head = nn.Linear(8 * 28, 10)

    def forward(self, x):
        h = F.relu(self.norm(self.conv(x.flatten(1, 2))), inplace=True)
        return self.head(F.relu_(self.norm(h)).flatten(1))


class LinearNorm(nn.Module):
    """BatchNorm1d on (N, C) after a Linear, an in-place ReLU after it."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 16)
        self.norm = nn.BatchNorm1d(16)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(torch.relu_(self.norm(self.fc(x.flatten(1)))))


class ChannelsLastConvNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 5, stride=3)
        self.norm = nn.BatchNorm2d(4)
        self.head = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        return self.head(F.relu(self.norm(self.conv(x)), inplace=True).flatten(1))


@pytest.mark.parametrize(
    ("build", "layer", "channels_last"),
    [
        (NormCalledTwice, "conv", False),
        (LinearNorm, "fc", False),
        (ChannelsLastConvNorm, "conv", True),
    ],
)
def test_fisher_batchnorm_terms_match_torch_func_beyond_batchnorm2d(
    digits, build, layer, channels_last
):
    """The probes' gradients are each sample's (g_γ, g_β) also where the BatchNorm is
    called twice (g summed over its calls before squaring, as torch.func's gradient of γ
    is), on BatchNorm1d's (N, C) and (N, C, L) inputs, with in-place ReLUs after it and in
    channels_last memory: compared with torch.func's per-sample gradients."""
    torch.manual_seed(0)
    model = build()
    with torch.no_grad():  # running statistics and an affine map that are not the defaults
        model.norm.running_mean.normal_(0, 0.5)
        model.norm.running_var.uniform_(0.5, 2.0)
        model.norm.weight.normal_(1, 0.5)
        model.norm.bias.normal_(0, 0.5)
    batches = [(x[:16], y[:16]) for x, y in digits[:2]]
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        batches = [(x.to(memory_format=torch.channels_last), y) for x, y in batches]
    reference = _fisher_reference(model.eval(), ["norm"], batches)["norm"]
    module = dict(model.named_modules())[layer]
    context = GroupContext(
        model, {f"{layer}.weight": module}, batches, {}, norms={f"{layer}.weight": model.norm}
    )
    scores = gp.GROUP_CRITERIA["fisher"](context)
    torch.testing.assert_close(scores[f"{layer}.weight"], reference, rtol=1e-4, atol=0)
    assert float((reference > 0).float().mean()) >= 0.5  # not a comparison of zeros


def test_fisher_leaves_the_model_as_it_was_when_scoring_fails(digits):
    """An error mid-scoring (here the second batch's images do not fit the model) leaves
    modes, requires_grad, buffers and .grad as they were and no probe hook behind."""
    model = LinearNorm().train()
    model.fc.weight.requires_grad_(False)
    state = copy.deepcopy(model.state_dict())
    x, y = digits[0]
    batches = [(x[:8], y[:8]), (x[:8, :, :20], y[:8])]
    context = GroupContext(
        model, {"fc.weight": model.fc}, batches, {}, norms={"fc.weight": model.norm}
    )
    with pytest.raises(RuntimeError):
        gp.GROUP_CRITERIA["fisher"](context)
    assert model.training and model.norm.training
    assert [p.requires_grad for p in model.parameters()] == [False, True, True, True, True, True]
    assert all(p.grad is None for p in model.parameters())
    assert not model.norm._forward_hooks
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_fisher_does_not_remove_a_zero_filter_first_when_its_shift_matters(digits):
    """Through structured_prune (eval): block1's inner group loses the channel the torch.func
    reference ranks lowest, not the zero filter 5 that the weights-only rule scores 0 and
    whose BatchNorm shift 2.0 reaches the outputs."""
    model = _resnet_with_statistics(digits)
    with torch.no_grad():
        model.block1.conv1.weight[5] = 0
        model.block1.bn1.bias[5] = 2.0
    inputs = torch.cat([x for x, _ in digits])
    without = copy.deepcopy(model)
    with torch.no_grad():
        without.block1.bn1.weight[5] = 0
        without.block1.bn1.bias[5] = 0
        assert (without(inputs) - model(inputs)).abs().max() > 1e-2
    layers = {"block1.conv1.weight": model.block1.conv1}
    weights_only = gp.GROUP_CRITERIA["fisher"](GroupContext(model, layers, digits, {}))
    assert int(weights_only["block1.conv1.weight"].argmin()) == 5  # what fisher did before
    weakest = int(_fisher_reference(model, ["block1.bn1"], digits)["block1.bn1"].argmin())
    assert weakest != 5
    small = gp.structured_prune(
        model, "fisher", 1 / 16, digits, example_inputs=digits[0][0][:1], scope="layerwise"
    )
    kept = [c for c in range(16) if c != weakest]
    for entry in ("weight", "bias", "running_mean"):
        torch.testing.assert_close(
            getattr(small.block1.bn1, entry),
            getattr(model.block1.bn1, entry)[kept].detach(),
            rtol=0,
            atol=0,
        )


def test_fisher_prunes_resnet_mnist_like_its_masked_twin(digits):
    """Layerwise 25% with fisher: each coupled group of resnet_mnist loses the units whose
    summed reference scores (over its writers' BatchNorms) are lowest, and the small model
    computes what the full one computes with those channels' γ and β zeroed (eval mode:
    a channel whose every writer's BatchNorm outputs 0 adds nothing downstream)."""
    model = _resnet_with_statistics(digits)
    writers = {g: [norm for _, norm in pairs] for g, pairs in RESNET_MNIST_WRITERS.items()}
    reference = _fisher_reference(model, [n for norms in writers.values() for n in norms], digits)
    small = gp.structured_prune(
        model, "fisher", 0.25, digits, example_inputs=digits[0][0][:1], scope="layerwise"
    )
    modules, small_modules = dict(model.named_modules()), dict(small.named_modules())
    masked = copy.deepcopy(model)
    masked_modules = dict(masked.named_modules())
    for group, norms in writers.items():
        total = sum(reference[norm] for norm in norms)
        width, count = len(total), round(0.25 * len(total))
        ranked = torch.sort(total).values
        assert ranked[count] > ranked[count - 1] * (1 + 1e-3), f"{group}: a near tie"
        removed = torch.argsort(total)[:count].tolist()
        kept = [c for c in range(width) if c not in removed]
        for norm in norms:
            torch.testing.assert_close(
                small_modules[norm].running_mean, modules[norm].running_mean[kept], rtol=0, atol=0
            )
            with torch.no_grad():
                masked_modules[norm].weight[removed] = 0
                masked_modules[norm].bias[removed] = 0
    inputs = torch.cat([x for x, _ in digits])
    with torch.no_grad():
        torch.testing.assert_close(small(inputs), masked(inputs), rtol=0, atol=1e-5)


class ConvNormThenPlain(nn.Module):
    """conv → BatchNorm (affine or not) → ReLU → pool → fc1 (no BatchNorm) → head."""

    def __init__(self, affine):
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 5, stride=2)
        self.norm = nn.BatchNorm2d(6, affine=affine)
        self.fc1 = nn.Linear(6 * 6 * 6, 24)
        self.head = nn.Linear(24, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.norm(self.conv(x))), 2).flatten(1)
        return self.head(F.relu(self.fc1(x)))


@pytest.mark.parametrize("affine", [True, False])
def test_fisher_reads_the_weights_where_no_affine_batchnorm_follows(digits, affine):
    """fc1 (no BatchNorm) and conv before a BatchNorm without γ and β (the fallback taylor
    also takes) score Σ_{w in W[k]} ½·w²·E[g²], the row sums of gp.score's fisher; conv
    before an affine BatchNorm scores its (γ, β). One-shot batches serve both passes."""
    torch.manual_seed(0)
    model = ConvNormThenPlain(affine).eval()
    layers = {"conv.weight": model.conv, "fc1.weight": model.fc1}
    context = GroupContext(model, layers, iter(list(digits)), {}, norms={"conv.weight": model.norm})
    scores = gp.GROUP_CRITERIA["fisher"](context)
    weights = gp.score(model, "fisher", digits)
    torch.testing.assert_close(scores["fc1.weight"], weights["fc1.weight"].sum(1))
    if affine:
        reference = _fisher_reference(model, ["norm"], digits)["norm"]
        torch.testing.assert_close(scores["conv.weight"], reference, rtol=1e-4, atol=0)
    else:
        expected = weights["conv.weight"].flatten(1).sum(1)
        torch.testing.assert_close(scores["conv.weight"], expected)


def test_fisher_refuses_a_batchnorm_without_running_statistics(digits):
    model = nn.Sequential(
        nn.Conv2d(1, 4, 5),
        nn.BatchNorm2d(4, track_running_stats=False),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 24 * 24, 10),
    )
    with pytest.raises(ValueError, match="no running statistics"):
        gp.structured_prune(model, "fisher", 0.25, digits, example_inputs=digits[0][0][:1])


class CentresTheBatch(nn.Module):
    def forward(self, x):
        return x - x.mean(0, keepdim=True)


def test_fisher_refuses_samples_that_interact(digits):
    """A parameter-free module that subtracts the batch mean after the BatchNorm couples
    the samples: per-sample gradients are not defined, and fisher says so."""
    model = nn.Sequential(
        nn.Conv2d(1, 4, 5),
        nn.BatchNorm2d(4),
        CentresTheBatch(),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 24 * 24, 10),
    ).eval()
    context = GroupContext(model, {"0.weight": model[0]}, digits, {}, norms={"0.weight": model[1]})
    with pytest.raises(ValueError, match="samples interact"):
        gp.GROUP_CRITERIA["fisher"](context)


def test_the_batchnorm_after_each_layer_is_found():
    from gradprune_lite.core.layers import prunable_modules
    from gradprune_lite.core.structure import _norms_after

    model = gp.models.resnet_mnist(seed=0).eval()
    found = _norms_after(model, (torch.zeros(1, 1, 28, 28),), prunable_modules(model))
    modules = dict(model.named_modules())
    expected = {
        f"{conv}.weight": modules[norm]
        for writers in RESNET_MNIST_WRITERS.values()
        for conv, norm in writers
    }
    assert found.keys() == expected.keys()  # fc has none
    assert all(found[n] is expected[n] for n in expected)
    # An in-place ReLU between a layer and the BatchNorm: the BatchNorm does not read the
    # layer's output as it was, so the layer has none.
    inplace = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(inplace=True), nn.BatchNorm2d(4))
    assert _norms_after(inplace, (torch.zeros(1, 1, 8, 8),), prunable_modules(inplace)) == {}
