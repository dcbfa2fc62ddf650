"""Building blocks: normalised MLPs, block-diagonal linear layers, 64x64 conv encoder/decoder."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from mbrl_sam import seeded
from mbrl_sam.distributions import softmax
from mbrl_sam.errors import check_choice

NORMS = ("layer", "rms", "none")
ACTIVATIONS = {"silu": nn.SiLU, "relu": nn.ReLU}  # silu: DreamerV3's; relu: STORM's


def make_norm(dim: int, kind: str) -> nn.Module:
    """A normalisation layer over the last axis: LayerNorm, RMSNorm or identity."""
    check_choice("norm", kind, NORMS)
    if kind == "layer":
        return nn.LayerNorm(dim, eps=1e-3)
    if kind == "rms":
        return nn.RMSNorm(dim, eps=1e-4)
    return nn.Identity()


def init_linear(layer: nn.Module, scale: float = 1.0) -> None:
    """Truncated-normal fan-in init scaled by `scale`; scale 0 zeroes the layer's output."""
    weight = layer.weight
    fan_in = weight.shape[1] * math.prod(weight.shape[2:]) if weight.dim() > 1 else 1
    if isinstance(layer, BlockLinear):
        fan_in = weight.shape[1]
    std = scale / math.sqrt(fan_in) / 0.8796
    with torch.no_grad():
        if scale == 0:
            weight.zero_()
        else:
            nn.init.trunc_normal_(weight, 0.0, std, -2 * std, 2 * std)
        if getattr(layer, "bias", None) is not None:
            layer.bias.zero_()


def make_act(kind: str) -> nn.Module:
    """An activation by name: SiLU or ReLU."""
    check_choice("act", kind, ACTIVATIONS)
    return ACTIVATIONS[kind]()


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Run a block with `module` in eval mode (no dropout), restoring each submodule's mode."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


@contextlib.contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Run a block with the modules' weights out of autograd (gradients still flow through
    them to their inputs); the weights that were trainable are trainable again afterwards."""
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class DenseBlock(nn.Sequential):
    """Linear, norm, activation (SiLU unless given): the unit layer of every MLP here."""

    def __init__(self, in_dim: int, out_dim: int, norm: str = "layer", act: str = "silu") -> None:
        super().__init__(
            nn.Linear(in_dim, out_dim, bias=norm == "none"), make_norm(out_dim, norm), make_act(act)
        )
        init_linear(self[0])


class MLP(nn.Sequential):
    """`layers` DenseBlocks of width `units`, then an optional linear output layer."""

    def __init__(
        self,
        in_dim: int,
        units: int,
        layers: int,
        out_dim: int | None = None,
        norm: str = "layer",
        outscale: float = 1.0,
        act: str = "silu",
    ) -> None:
        blocks: list[nn.Module] = []
        for i in range(layers):
            blocks.append(DenseBlock(in_dim if i == 0 else units, units, norm, act))
        if out_dim is not None:
            head = nn.Linear(units if layers else in_dim, out_dim)
            init_linear(head, outscale)
            blocks.append(head)
        super().__init__(*blocks)
        self.out_dim = out_dim if out_dim is not None else units


class BlockLinear(nn.Module):
    """Block-diagonal linear map: `blocks` independent linear maps on equal slices of the input."""

    def __init__(self, in_dim: int, out_dim: int, blocks: int) -> None:
        super().__init__()
        if in_dim % blocks or out_dim % blocks:
            raise ValueError(f"in_dim {in_dim} and out_dim {out_dim} must divide by {blocks}")
        self.blocks = blocks
        self.weight = nn.Parameter(torch.empty(blocks, in_dim // blocks, out_dim // blocks))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        init_linear(self)

    def blockwise(self, x: Tensor, bias_offset: Tensor | None = None) -> Tensor:
        """Outputs kept in block-major layout (blocks, N, out_dim / blocks); x is (N, in_dim).

        `bias_offset` (blocks, 1, out_dim / blocks) is a constant added to the bias.
        """
        x = x.reshape(x.shape[0], self.blocks, -1).transpose(0, 1)
        bias = self.bias.view(self.blocks, 1, -1)
        if bias_offset is not None:
            bias = bias + bias_offset
        return torch.baddbmm(bias, x, self.weight)

    def forward(self, x: Tensor) -> Tensor:
        """Apply each block to its slice; x has shape (..., in_dim)."""
        lead = x.shape[:-1]
        y = self.blockwise(x.reshape(-1, x.shape[-1]))
        return y.transpose(0, 1).reshape(*lead, -1)


class ConvEncoder(nn.Module):
    """Strided convolutions from a (3, 64, 64) uint8 image to a flat embedding."""

    def __init__(
        self, channels: int, depth: int, mults: tuple[int, ...], norm: str, act: str = "silu"
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = channels
        for mult in mults:
            out_ch = depth * mult
            layers += [nn.Conv2d(in_ch, out_ch, 4, 2, 1, bias=False), ChannelNorm(out_ch, norm)]
            layers.append(make_act(act))
            in_ch = out_ch
        self.net = nn.Sequential(*layers)
        self.out_dim = in_ch * (64 // 2 ** len(mults)) ** 2

    def forward(self, obs: Tensor) -> Tensor:
        """Embed images of shape (..., C, 64, 64) with values 0..255."""
        lead = obs.shape[:-3]
        x = obs.reshape(-1, *obs.shape[-3:]).float() / 255.0 - 0.5
        # Channels-last: the norms over channels then read contiguous memory (no copies), and
        # oneDNN's convolutions take that layout natively (~10% faster per update on CPU).
        x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x).reshape(*lead, -1)


class ConvDecoder(nn.Module):
    """Transposed convolutions from a feature vector back to a (C, 64, 64) image.

    layout "dreamer": a plain projection and a sigmoid output in [0, 1] (DreamerV3); "storm": the
    projection normed and activated like the conv layers, and a linear output (STORM)."""

    def __init__(
        self,
        in_dim: int,
        channels: int,
        depth: int,
        mults: tuple[int, ...],
        norm: str,
        act: str = "silu",
        layout: str = "dreamer",
    ) -> None:
        super().__init__()
        check_choice("decoder layout", layout, ("dreamer", "storm"))
        self.start = 64 // 2 ** len(mults)
        self.start_ch = depth * mults[-1]
        self.sigmoid = layout == "dreamer"
        self.project = nn.Linear(in_dim, self.start_ch * self.start**2)
        init_linear(self.project)
        layers: list[nn.Module] = []
        if layout == "storm":
            layers += [ChannelNorm(self.start_ch, norm), make_act(act)]
        chans = [depth * m for m in reversed(mults)]
        for in_ch, out_ch in zip(chans[:-1], chans[1:]):
            layers += [nn.ConvTranspose2d(in_ch, out_ch, 4, 2, 1, bias=False)]
            layers += [ChannelNorm(out_ch, norm), make_act(act)]
        layers.append(nn.ConvTranspose2d(chans[-1], channels, 4, 2, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, feat: Tensor) -> Tensor:
        """Decode features of shape (..., in_dim) to images (..., C, 64, 64)."""
        lead = feat.shape[:-1]
        x = self.project(feat.reshape(-1, feat.shape[-1]))
        x = x.reshape(-1, self.start_ch, self.start, self.start)
        x = self.net(x.contiguous(memory_format=torch.channels_last))  # as in ConvEncoder
        x = torch.sigmoid(x) if self.sigmoid else x
        return x.reshape(*lead, *x.shape[1:])


class ChannelNorm(nn.Module):
    """Normalise conv features over channels at each pixel (the conv analogue of LayerNorm)."""

    def __init__(self, channels: int, kind: str) -> None:
        super().__init__()
        self.norm = make_norm(channels, kind)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the norm with channels moved last and back."""
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SimNorm(nn.Module):
    """Simplicial normalisation: softmax over consecutive groups of `group` features."""

    def __init__(self, group: int = 8) -> None:
        super().__init__()
        self.group = group

    def forward(self, x: Tensor) -> Tensor:
        """Project each group of features onto the probability simplex."""
        shape = x.shape
        return softmax(x.unflatten(-1, (-1, self.group))).reshape(shape)


# torch.compile's inductor options for the models' loss and planning graphs: its pattern matcher
# fails on them in torch 2.13 ("Not all inputs to pattern found"), and its own random kernels
# would draw other numbers than eager's from the same seed.
COMPILE_OPTIONS = {"pattern_matcher": False, "fallback_random": True}


class _MishFunction(torch.autograd.Function):
    """Mish written with one exp: tanh(softplus(x)) = 1 - 2 / (n (n + 2) + 2), n = e^x."""

    @staticmethod
    def forward(x: Tensor) -> Tensor:
        n = torch.exp(x.clamp(max=20.0))  # beyond 20, mish(x) = x in float32
        return x - 2 * x / (n * (n + 2) + 2)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor], output: Tensor) -> None:
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def vmap(info: Any, in_dims: tuple[int | None], x: Tensor) -> tuple[Tensor, int | None]:
        """Under vmap (stacked seeds), mish of the whole batch: it is elementwise, so the
        batch axis passes through, and the backward keeps ATen's kernel (which has no batching
        rule: a derived rule would run it once per seed)."""
        return _MishFunction.apply(x), in_dims[0]

    @staticmethod
    def backward(ctx: object, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        if not torch.is_grad_enabled():
            # A plain backward: ATen's fused kernel, one pass instead of ten elementwise ops.
            return torch.ops.aten.mish_backward(grad, x)
        # A backward that builds a graph (Hessian-vector products in the sharpness tools): ATen's
        # kernel has no derivative, so the same formula with differentiable ops.
        n = torch.exp(x.clamp(max=20.0))
        r = 2 / (n * (n + 2) + 2)  # 1 - tanh(softplus(x))
        # d/dx x tanh(sp(x)) = tanh(sp(x)) + x (1 - tanh^2(sp(x))) sigmoid(x)
        return grad * ((1 - r) + x * r * (2 - r) * n / (n + 1))


def mish(x: Tensor) -> Tensor:
    """x * tanh(softplus(x)); its forward 1.3-2.6x faster on CPU than ATen's kernel."""
    if torch._C._functorch.is_batchedtensor(x):
        # Under vmap (stacked seeds) an autograd.Function goes through functorch's Python
        # dispatch, about 0.5 ms a call; ATen's op has a batching rule and costs none.
        return torch.nn.functional.mish(x)
    return _MishFunction.apply(x)


class Mish(nn.Module):
    """Module form of `mish` (no parameters, so checkpoints match nn.Mish's)."""

    def forward(self, x: Tensor) -> Tensor:
        """Apply mish elementwise."""
        return mish(x)


class NormedLinear(nn.Sequential):
    """Linear, optional dropout, LayerNorm, activation (Mish unless given): TD-MPC2's layer."""

    def __init__(
        self, in_dim: int, out_dim: int, dropout: float = 0.0, act: nn.Module | None = None
    ) -> None:
        layers: list[nn.Module] = [nn.Linear(in_dim, out_dim)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [nn.LayerNorm(out_dim), act if act is not None else Mish()]
        super().__init__(*layers)
        nn.init.trunc_normal_(self[0].weight, std=0.02)
        nn.init.zeros_(self[0].bias)


def normed_mlp(
    in_dim: int,
    hidden: int,
    layers: int,
    out_dim: int,
    out_act: nn.Module | None = None,
    dropout: float = 0.0,
) -> nn.Sequential:
    """`layers` NormedLinear layers (dropout on the first), then a plain or normed output."""
    blocks: list[nn.Module] = []
    for i in range(layers):
        blocks.append(NormedLinear(in_dim if i == 0 else hidden, hidden, dropout if i == 0 else 0))
    last = hidden if layers else in_dim
    if out_act is not None:
        blocks.append(NormedLinear(last, out_dim, act=out_act))
    else:
        head = nn.Linear(last, out_dim)
        nn.init.trunc_normal_(head.weight, std=0.02)
        nn.init.zeros_(head.bias)
        blocks.append(head)
    return nn.Sequential(*blocks)


class EnsembleMLP(nn.Module):
    """`members` independent normed MLPs evaluated together by batched matrix products."""

    def __init__(
        self, members: int, in_dim: int, hidden: int, layers: int, out_dim: int, dropout: float
    ) -> None:
        super().__init__()
        dims = [in_dim] + [hidden] * layers + [out_dim]
        self.members, self.dropout, self.layers = members, dropout, layers
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.ln_weights = nn.ParameterList()
        self.ln_biases = nn.ParameterList()
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
            weight = torch.empty(members, d_in, d_out)
            nn.init.trunc_normal_(weight, std=0.02)
            self.weights.append(nn.Parameter(weight))
            self.biases.append(nn.Parameter(torch.zeros(members, 1, d_out)))
            if i < layers:
                self.ln_weights.append(nn.Parameter(torch.ones(members, 1, d_out)))
                self.ln_biases.append(nn.Parameter(torch.zeros(members, 1, d_out)))

    def forward(self, x: Tensor, members: Tensor | None = None) -> Tensor:
        """Inputs (..., in_dim) shared by the members (all, or the indices in `members`);
        outputs (members, ..., out_dim)."""
        lead = x.shape[:-1]
        pick = (lambda t: t) if members is None else (lambda t: t[members])
        count = self.members if members is None else len(members)
        h = x.reshape(1, -1, x.shape[-1]).expand(count, -1, -1)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(pick(b), h, pick(w))
            if i < self.layers:
                if i == 0 and self.dropout > 0:
                    h = seeded.dropout(h, self.dropout, self.training)
                h = nn.functional.layer_norm(h, h.shape[-1:])
                h = mish(h * pick(self.ln_weights[i]) + pick(self.ln_biases[i]))
        return h.reshape(count, *lead, -1)
