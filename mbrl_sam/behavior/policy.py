"""Policy heads: bounded normal for continuous actions, unimix categorical for discrete ones."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mbrl_sam.distributions import (
    categorical_entropy,
    sample_one_hot,
    straight_through,
    unimix_probs,
)
from mbrl_sam.nets import MLP


class ActionDist:
    """A batch of action distributions with sample, mode, log-prob and entropy."""

    def __init__(self, discrete: bool, params: tuple[Tensor, ...]) -> None:
        self.discrete = discrete
        self.params = params

    def sample(self) -> Tensor:
        """A random draw, as drawn: one-hot for discrete; for continuous the unclipped Gaussian
        sample, which `log_prob` scores. Pass it through `clip` before it reaches the world
        model or the environment."""
        if self.discrete:
            return sample_one_hot(self.params[0])
        mean, std = self.params
        return mean + std * torch.randn_like(mean)

    def clip(self, sample: Tensor) -> Tensor:
        """The action a sample stands for: clipped to [-1, 1] for continuous, as is for discrete."""
        return sample if self.discrete else sample.clamp(-1, 1)

    def rsample(self) -> Tensor:
        """A sample differentiable in the distribution's parameters (straight-through for
        discrete actions and for the clip to [-1, 1])."""
        if self.discrete:
            probs = self.params[0]
            return straight_through(sample_one_hot(probs.detach()), probs)
        mean, std = self.params
        raw = mean + std * torch.randn_like(mean)
        return raw + (raw.clamp(-1, 1) - raw).detach()

    def mode(self) -> Tensor:
        """The most likely action."""
        if self.discrete:
            probs = self.params[0]
            return nn.functional.one_hot(probs.argmax(-1), probs.shape[-1]).to(probs.dtype)
        return self.params[0]

    def log_prob(self, action: Tensor) -> Tensor:
        """Log-likelihood of `action`, summed over action dimensions."""
        if self.discrete:
            return (action * self.params[0].clamp_min(1e-12).log()).sum(-1)
        mean, std = self.params
        z = (action - mean) / std
        return (-0.5 * z.pow(2) - std.log() - 0.5 * math.log(2 * math.pi)).sum(-1)

    def entropy(self) -> Tensor:
        """Entropy, summed over action dimensions."""
        if self.discrete:
            return categorical_entropy(self.params[0])
        std = self.params[1]
        return (std.log() + 0.5 * math.log(2 * math.pi * math.e)).sum(-1)


class Policy(nn.Module):
    """An MLP mapping features to an action distribution."""

    def __init__(
        self,
        feat_dim: int,
        action_dim: int,
        discrete: bool,
        units: int,
        layers: int,
        norm: str,
        min_std: float,
        max_std: float,
        unimix: float,
    ) -> None:
        super().__init__()
        self.discrete, self.unimix = discrete, unimix
        self.min_std, self.max_std = min_std, max_std
        out = action_dim if discrete else 2 * action_dim
        self.net = MLP(feat_dim, units, layers, out, norm, outscale=0.01)

    def forward(self, feat: Tensor) -> ActionDist:
        """The action distribution at `feat`."""
        x = self.net(feat)
        if self.discrete:
            return ActionDist(True, (unimix_probs(x, self.unimix),))
        mean, std = x.chunk(2, -1)
        std = (self.max_std - self.min_std) * torch.sigmoid(std + 2.0) + self.min_std
        return ActionDist(False, (torch.tanh(mean), std))
