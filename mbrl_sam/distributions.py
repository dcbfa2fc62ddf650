"""Squashing transforms and output distributions shared by world models and critics."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def symlog(x: Tensor) -> Tensor:
    """Compress magnitudes: sign(x) * log(1 + |x|)."""
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: Tensor) -> Tensor:
    """Inverse of symlog: sign(x) * (exp(|x|) - 1)."""
    return torch.sign(x) * torch.expm1(x.abs())


class TwoHot(nn.Module):
    """Categorical over symexp-spaced bins; targets are two-hot in raw space, means are exact.

    DreamerV3's layout. `SymlogTwoHot` below is TD-MPC2's.
    """

    bins: Tensor

    def __init__(self, num_bins: int = 255, low: float = -20.0, high: float = 20.0) -> None:
        super().__init__()
        self.num_bins = num_bins
        # A buffer, so the bins follow the owning module across devices (not saved: derived).
        self.register_buffer("bins", symexp(torch.linspace(low, high, num_bins)), persistent=False)

    def _neighbours(self, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Indices of the bins below and above y, and the weight of the upper one."""
        bins = self.bins
        y = y.clamp(bins[0], bins[-1])
        above = torch.searchsorted(bins, y.contiguous(), right=True).clamp(1, self.num_bins - 1)
        below = above - 1
        lo, hi = bins[below], bins[above]
        return below, above, ((y - lo) / (hi - lo)).clamp(0, 1)

    def encode(self, y: Tensor) -> Tensor:
        """Two-hot weights on the two bins around y (clamped to the bin range)."""
        below, above, w_hi = self._neighbours(y)
        out = torch.zeros(*y.shape, self.num_bins, device=y.device, dtype=y.dtype)
        out.scatter_(-1, below.unsqueeze(-1), (1 - w_hi).unsqueeze(-1))
        out.scatter_add_(-1, above.unsqueeze(-1), w_hi.unsqueeze(-1))
        return out

    def mean(self, logits: Tensor) -> Tensor:
        """Expected value under softmax(logits), in raw space."""
        probs = logits.softmax(-1)
        if self.num_bins % 2 == 0:
            return probs @ self.bins
        # The bins reach +-symexp(high) (5e8 for 20): summed naively in float32, a flat
        # distribution's mean comes out as rounding noise of order 1. Pairing each positive
        # bin with its mirror image cancels the large terms before they are added.
        m = self.num_bins // 2
        upper, lower = probs[..., m + 1 :], probs[..., :m].flip(-1)
        return (upper - lower) @ self.bins[m + 1 :] + probs[..., m] * self.bins[m]

    def decode(self, weights: Tensor) -> Tensor:
        """Value represented by bin weights (inverse of encode within range)."""
        return weights @ self.bins

    def loss(
        self, logits: Tensor, target: Tensor, target2: Tensor | None = None, weight2: float = 0.0
    ) -> Tensor:
        """Cross-entropy to the two-hot target (plus weight2 times that to a second target)."""
        # Gathering the target bins avoids materialising dense two-hot tensors, and one
        # log-sum-exp serves both targets.
        loss = (1.0 + (weight2 if target2 is not None else 0.0)) * torch.logsumexp(logits, -1)
        for y, w in ((target, 1.0), (target2, weight2)):
            if y is None:
                continue
            below, _, w_hi = self._neighbours(y)
            # A NaN target (a diverging run) has no bin: clamped indices keep the gather valid
            # and its NaN weight makes the loss NaN, so the optimizer skips the step.
            below = below.clamp(0, self.num_bins - 2)
            picked = torch.gather(logits, -1, torch.stack([below, below + 1], -1))
            loss = loss - w * (picked[..., 0] * (1 - w_hi) + picked[..., 1] * w_hi)
        return loss


class SymlogTwoHot(TwoHot):
    """TD-MPC2's discrete regression: bins evenly spaced in symlog space on [low, high];
    targets are two-hot in symlog space, means are symexp of the expected bin."""

    def __init__(self, num_bins: int = 101, low: float = -10.0, high: float = 10.0) -> None:
        nn.Module.__init__(self)
        self.num_bins, self.low = num_bins, low
        self.bin_size = (high - low) / (num_bins - 1)
        self.register_buffer("bins", torch.linspace(low, high, num_bins), persistent=False)

    def _neighbours(self, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Indices of the bins below and above symlog(y), and the weight of the upper one."""
        x = symlog(y).clamp(self.bins[0], self.bins[-1])
        # Position on the bin grid, computed as TD-MPC2 does so both agree to the last bit.
        pos = (x - self.low) / self.bin_size
        below = pos.floor().clamp(max=self.num_bins - 2)
        return below.long(), below.long() + 1, pos - below

    def mean(self, logits: Tensor) -> Tensor:
        """symexp of the expected bin under softmax(logits)."""
        return symexp(logits.softmax(-1) @ self.bins)

    def decode(self, weights: Tensor) -> Tensor:
        """Value represented by bin weights (inverse of encode within range)."""
        return symexp(weights @ self.bins)


def softmax(logits: Tensor) -> Tensor:
    """Softmax over the last axis, fast also when that axis is short."""
    if logits.dim() > 1 and logits.shape[-1] <= 8:
        # ATen's CPU softmax over a short contiguous axis is ~4x slower than over a strided
        # one (it cannot vectorise across 4 classes); the result keeps the transposed layout.
        return logits.transpose(-1, -2).softmax(-2).transpose(-1, -2)
    return logits.softmax(-1)


def unimix_probs(logits: Tensor, unimix: float) -> Tensor:
    """Softmax mixed with a uniform distribution, so no class has zero probability."""
    probs = softmax(logits)
    if unimix > 0:
        probs = (1 - unimix) * probs + unimix / probs.shape[-1]
    return probs


def sample_one_hot(probs: Tensor) -> Tensor:
    """One-hot sample from the last axis by inverse CDF (one uniform draw per distribution)."""
    cdf = probs.cumsum(-1)
    u = torch.rand(*probs.shape[:-1], 1, device=probs.device, dtype=probs.dtype)
    index = (cdf < u * cdf[..., -1:]).sum(-1, keepdim=True).clamp(max=probs.shape[-1] - 1)
    return torch.zeros_like(probs).scatter_(-1, index, 1.0)


def straight_through(sample: Tensor, probs: Tensor) -> Tensor:
    """Sample in the forward pass, gradient of the probabilities in the backward pass."""
    if not (torch.is_grad_enabled() and probs.requires_grad):
        return sample  # no gradient wanted: skip the two extra ops (and their rounding)
    return sample + probs - probs.detach()


def categorical_kl(p: Tensor, q: Tensor) -> Tensor:
    """KL(p || q) of categoricals on the last axis, given probabilities."""
    return (p * (p.clamp_min(1e-12).log() - q.clamp_min(1e-12).log())).sum(-1)


def categorical_entropy(p: Tensor) -> Tensor:
    """Entropy of a categorical on the last axis, given probabilities."""
    return -(p * p.clamp_min(1e-12).log()).sum(-1)
