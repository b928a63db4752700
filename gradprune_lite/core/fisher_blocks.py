"""Block-diagonal curvature of one weight tensor and its damped inverse, for OBS.

A weight of P entries is flattened (row-major, so a Linear weight's rows stay together)
and cut into ``P_pad / B`` blocks of B consecutive entries; the last block is padded with
zeros. Curvature is kept only inside blocks: a (blocks, B, B) tensor, B·P_pad floats,
instead of the P² of the full matrix (LeNet-300-100's fc1 at B = 128: 30 M floats,
not 55 G).

Three curvatures, all positive semi-definite:

* ``empirical``       F = (1/N) Σ_n g_n g_nᵀ, g_n the gradient of sample n's own loss
  (from ``gp.per_sample_gradients``: the gradient decomposition, not reduced);
* ``sampled``         the same with each label drawn from the model's own prediction,
  an unbiased estimate of the true Fisher (the Hessian of the loss at a minimum, for
  the Gauss-Newton part);
* ``reconstruction``  H = (1/N) XᵀX ⊗ I_out, the Hessian of the layer's squared output
  error ‖(W − W₀)X‖² (L-OBS, OBC): it ignores the loss, so it cannot compare layers.
  X holds one row per sample and output position (a convolution's input unfolded), so
  only nn.Linear and nn.Conv1d/2d with groups=1 are accepted; other layers are refused.

Every curvature is computed in the scoring state of ``_scoring.py``: eval mode, and the
model's BatchNorm statistics, modes and flags are as before afterwards.

The inverse is taken by a batched Cholesky factorisation of every damped block at once,
F + λ·mean(diag F)·I, not by WoodFisher's N rank-1 Woodbury updates: both cost about
N·B² per block for the curvature, but Woodbury needs N sequential steps while the
factorisation adds only B³/3 per block in one call, which is less when B ≤ N.

Pruned entries (mask False) and the padding get zero gradient, so their rows and
columns hold only the damping: the inverse then decouples them, and the inverse of the
living entries is exactly that of their own sub-matrix, as OBS with zeros fixed needs.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ._scoring import scoring_state
from .distributed import all_reduce_sums
from .layers import prunable_modules
from .selection import _syncs_are_free
from .stats import per_sample_gradients


def padded_blocks(flat: torch.Tensor, block_size: int) -> torch.Tensor:
    """(..., P) → (..., P_pad / B, B), zero-padded at the end of the last dimension."""
    pad = -flat.shape[-1] % block_size
    if pad:
        flat = F.pad(flat, (0, pad))
    return flat.reshape(*flat.shape[:-1], -1, block_size)


def unblock(blocks: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """(P_pad / B, B) → ``shape``: drop the padding, restore the weight's shape."""
    return blocks.reshape(-1)[: shape.numel()].reshape(shape)


def sampled_label_batches(
    model: nn.Module, batches: Iterable, seed: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The same inputs with labels drawn from the model's softmax (a seeded draw).

    The predictions are those of the scoring state (eval mode; no BatchNorm update).
    """
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    drawn = []
    with scoring_state(model), torch.no_grad():
        for inputs, _ in batches:
            probs = torch.softmax(model(inputs.to(device)).float(), dim=-1)
            if _syncs_are_free(probs.device):
                draws = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            else:
                # Off the CPU, copying probs to the host would wait for the forward pass
                # every batch: draw by inverse CDF on the device, from host-made uniforms.
                uniform = torch.rand(probs.shape[0], 1, generator=generator).to(device)
                below = probs.cumsum(-1) < uniform * probs.sum(-1, keepdim=True)
                draws = below.sum(-1).clamp_(max=probs.shape[-1] - 1)
            drawn.append((inputs, draws.to(device)))
    return drawn


def gradient_curvature(
    model: nn.Module,
    batches: list,
    alive: dict[str, torch.Tensor],
    block_size: int,
    loss_fn=None,
) -> dict[str, torch.Tensor]:
    """Σ_n g_n g_nᵀ / N per block, from streamed per-sample gradients.

    Args:
        alive: dict name → bool mask shaped like the weight; False entries get zero
            gradient (decoupled, see the module docstring).

    Returns:
        dict name → (blocks, B, B) float32 tensor on the weight's device.
    """
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    flat_alive = {
        name: padded_blocks(m.reshape(1, -1).float(), block_size)[0] for name, m in alive.items()
    }
    for name, chunk in per_sample_gradients(model, batches, loss_fn, names=list(alive)):
        g = padded_blocks(chunk.reshape(chunk.shape[0], -1), block_size) * flat_alive[name]
        if block_size == 1:  # the diagonal: a sum of squares, not P matmuls of 1×1
            outer = g.square().sum(0).unsqueeze(2)
        else:  # (blocks, B, n) @ (blocks, n, B): one batched matmul per chunk, on the device
            outer = torch.bmm(g.permute(1, 2, 0), g.permute(1, 0, 2))
        if name in sums:
            sums[name] += outer
        else:
            sums[name] = outer
        counts[name] = counts.get(name, 0) + chunk.shape[0]
    # Under DDP: F over all ranks' samples (a no-op in one process).
    totals = all_reduce_sums([sums[name] for name in alive], [counts[name] for name in alive])
    return {name: sums[name] / total for name, total in zip(alive, totals)}


class _InputRecorder:
    """Forward hooks that keep each named layer's input for one pass."""

    def __init__(self, modules: dict[str, nn.Module]):
        self.inputs: dict[str, list[torch.Tensor]] = {name: [] for name in modules}
        self.handles = [m.register_forward_hook(self._hook(n)) for n, m in modules.items()]

    def _hook(self, name):
        def hook(module, inputs, output):
            self.inputs[name].append(inputs[0].detach())

        return hook

    def remove(self):
        for handle in self.handles:
            handle.remove()


def check_reconstruction_layers(modules: dict[str, nn.Module]) -> None:
    """Raise unless every layer's output is W times a column of its (unfolded) input.

    The reconstruction Hessian XᵀX ⊗ I needs each output row o to be ``W[o] · column``
    with the columns formed from the input alone: true for nn.Linear and for nn.Conv1d /
    nn.Conv2d with groups=1 (unfolded patches). A transposed convolution's weight is laid
    out (in, out, …), an embedding looks rows up, a grouped convolution reads a slice of
    the channels, and nn.Conv3d has no unfold here: for these the formula would be wrong.
    """
    for name, module in modules.items():
        if type(module) in (nn.Linear, nn.Conv1d, nn.Conv2d) and getattr(module, "groups", 1) == 1:
            continue
        kind = type(module).__name__
        if isinstance(module, (nn.Conv1d, nn.Conv2d)):
            kind = f"grouped {kind} (groups={module.groups})"
        raise ValueError(
            f"curvature='reconstruction' supports nn.Linear and nn.Conv1d/nn.Conv2d with "
            f"groups=1, but {name} is a {kind}, whose output is not its weight times a column "
            "of its input. Use curvature='empirical' or 'sampled', which take the curvature "
            "from per-sample gradients and work for every prunable layer."
        )


def _columns(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer's input as rows of what one output row multiplies: (rows, fan_in).

    A convolution's padding (including ``padding='same'`` and non-zero padding modes) is
    applied first as its own forward does, then every output position becomes a row.
    """
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        spatial = x.dim() - 2
        padding = module.padding
        if module.padding_mode != "zeros" or isinstance(padding, str):
            mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
            x = F.pad(x, module._reversed_padding_repeated_twice, mode=mode)
            padding = (0,) * spatial
        if spatial == 1:  # a Conv1d is a Conv2d over a height of 1
            x = x.unsqueeze(2)
            kernel, dilation = (1, *module.kernel_size), (1, *module.dilation)
            padding, stride = (0, *padding), (1, *module.stride)
        else:
            kernel, dilation, stride = module.kernel_size, module.dilation, module.stride
        x = F.unfold(x, kernel, dilation, padding, stride).transpose(1, 2)
    return x.reshape(-1, x.shape[-1])


def _layer_gram(module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Σ over rows of XᵀX for the layer's input, and the row count. Convolutions unfolded."""
    x = _columns(module, x)
    return x.t() @ x, x.shape[0]


def reconstruction_curvature(
    model: nn.Module, batches: list, alive: dict[str, torch.Tensor], block_size: int
) -> dict[str, torch.Tensor]:
    """(1/N) XᵀX ⊗ I_out restricted to blocks, with dead entries zeroed as above.

    Entry (i, j) of a block couples flat weights i = (o_i, c_i) and j = (o_j, c_j):
    it is XᵀX[c_i, c_j] when both sit in the same output row o, else 0.
    """
    modules = {name: prunable_modules(model)[name] for name in alive}
    check_reconstruction_layers(modules)
    device = next(model.parameters()).device
    recorder = _InputRecorder(modules)
    grams: dict[str, torch.Tensor] = {}
    rows: dict[str, int] = {}
    try:
        with scoring_state(model), torch.no_grad():
            for inputs, _ in batches:
                for name in modules:
                    recorder.inputs[name].clear()
                model(inputs.to(device))
                for name, module in modules.items():
                    for x in recorder.inputs[name]:
                        gram, n = _layer_gram(module, x)
                        grams[name] = grams[name] + gram if name in grams else gram
                        rows[name] = rows.get(name, 0) + n
    finally:
        recorder.remove()
    # Under DDP: XᵀX and the row count over all ranks' samples (a no-op in one process).
    totals = all_reduce_sums([grams[name] for name in alive], [rows[name] for name in alive])
    rows = dict(zip(alive, totals))
    blocks = {}
    for name, mask in alive.items():
        fan_in = mask[0].numel()
        index = torch.arange(mask.numel(), device=device)
        out_index = padded_blocks(index // fan_in, block_size)
        in_index = padded_blocks(index % fan_in, block_size)
        keep = padded_blocks(mask.reshape(-1).float(), block_size)
        gram = grams[name] / rows[name]
        same_row = out_index.unsqueeze(2) == out_index.unsqueeze(1)
        block = gram[in_index.unsqueeze(2), in_index.unsqueeze(1)] * same_row
        blocks[name] = block * keep.unsqueeze(2) * keep.unsqueeze(1)
    return blocks


def damped_inverse(
    curvature: torch.Tensor, alive_blocks: torch.Tensor, damping: float
) -> torch.Tensor:
    """(F + λ·mean(diag F over living entries)·I)⁻¹ for every block at once.

    Args:
        curvature: (blocks, B, B) positive semi-definite blocks.
        alive_blocks: (blocks, B) float 0/1, the living (unpruned, unpadded) entries.
        damping: λ > 0, relative to the mean curvature of the living entries.

    Returns:
        (blocks, B, B) inverses, computed in the dtype of ``curvature`` (float32 from the
        library: no float64, which MPS lacks and consumer GPUs run at 1/32 to 1/64 speed).
        The damping bounds each block's condition number by about
        1 + trace(block) / (λ·mean diag), so float32 keeps about 7 − log10(that) digits;
        a factorisation that fails in float32 at a tiny λ raises, asking for more damping.
    """
    inverse, failed = _damped_inverse(curvature, alive_blocks, damping)
    if bool(failed):
        raise _not_positive_definite(damping)
    return inverse


def damped_inverses(
    curvatures: dict[str, torch.Tensor],
    alive: dict[str, torch.Tensor],
    damping: float,
    block_size: int,
) -> dict[str, torch.Tensor]:
    """``damped_inverse`` of every layer (alive: name → bool mask shaped like the weight),
    with one host sync for all the layers' factorisation checks, not one per layer."""
    results = {
        name: _damped_inverse(
            curvatures[name],
            padded_blocks(mask.reshape(-1).to(curvatures[name].dtype), block_size),
            damping,
        )
        for name, mask in alive.items()
    }
    if results and bool(torch.stack([failed for _, failed in results.values()]).any()):
        raise _not_positive_definite(damping)
    return {name: inverse for name, (inverse, _) in results.items()}


def _not_positive_definite(damping: float) -> ValueError:
    return ValueError(
        f"the damped curvature is not positive definite at damping={damping}; "
        "raise damping (e.g. 1e-2)."
    )


def _damped_inverse(curvature, alive_blocks, damping) -> tuple[torch.Tensor, torch.Tensor]:
    """(inverses, 0-dim bool tensor: did any factorisation fail), without a host sync."""
    diag = curvature.diagonal(dim1=1, dim2=2)
    living = alive_blocks.sum().clamp(min=1)
    scale = (diag * alive_blocks).sum() / living
    # A layer whose gradient vanishes everywhere still needs a positive damping.
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    if curvature.shape[-1] == 1:
        return 1.0 / (curvature + damping * scale), scale.new_zeros((), dtype=torch.bool)
    eye = torch.eye(curvature.shape[-1], dtype=curvature.dtype, device=curvature.device)
    factor, info = torch.linalg.cholesky_ex(curvature + (damping * scale) * eye)
    return torch.cholesky_inverse(factor), (info > 0).any()
