"""The planner interface: optimise action sequences against a score, warm-started per step.

Planners hold no state: the warm start comes in with each call and the fitted mean goes back
out in the `Plan`, for the agent to carry to the next step (in its act state).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from mbrl_sam.errors import ConfigError, check_choice

# Maps candidate action sequences (N, H, A) in [-1, 1] to their estimated returns (N,).
Score = Callable[[Tensor], Tensor]


# auto: the agent's own way (tdmpc plans with MPPI, dreamer acts with its actor); none: act with
# the learned policy; mppi and cem: plan (for dreamer: latent MPC, the critic closing the horizon).
PLANNER_NAMES = ("auto", "none", "mppi", "cem")


@dataclass
class PlannerConfig:
    """Sampling-planner settings (TD-MPC2's MPPI defaults); `planner=<name>` picks the name."""

    name: str = "auto"
    horizon: int = 3
    iterations: int = 6
    iterations_high_dim: int = 8  # used instead when action_dim >= high_dim
    high_dim: int = 20
    samples: int = 512  # candidates per iteration, the prior trajectories included
    elites: int = 64
    prior_trajectories: int = 24  # how many policy trajectories the caller proposes
    temperature: float = 0.5  # MPPI only
    min_std: float = 0.05
    max_std: float = 2.0

    def __post_init__(self) -> None:
        """Raise ConfigError naming the first setting that cannot work."""
        check_choice("planner", self.name, PLANNER_NAMES)
        checks = [
            ("horizon", self.horizon >= 1, ">= 1"),
            ("iterations", self.iterations >= 1, ">= 1"),
            ("iterations_high_dim", self.iterations_high_dim >= 1, ">= 1"),
            ("samples", self.samples >= 2, ">= 2"),
            ("elites", 1 <= self.elites <= self.samples, f"in [1, samples={self.samples}]"),
            ("prior_trajectories", 0 <= self.prior_trajectories < self.samples, "< samples"),
            ("min_std", 0 < self.min_std <= self.max_std, f"in (0, max_std={self.max_std}]"),
            ("temperature", self.temperature > 0, "> 0"),
        ]
        for name, ok, need in checks:
            if not ok:
                raise ConfigError(f"planner.{name}={getattr(self, name)!r} must be {need}")


class Plan(NamedTuple):
    """A planner's answer for one step."""

    action: Tensor  # (A,) the first action to execute, in [-1, 1]
    mean: Tensor  # (H, A) the fitted mean: the next step's warm start


class Planner(ABC):
    """Iteratively refits a Gaussian over H-step action sequences to the best candidates."""

    def __init__(self, action_dim: int, cfg: PlannerConfig, device: torch.device) -> None:
        if action_dim < 1:
            raise ConfigError(f"action_dim={action_dim!r} must be >= 1")
        self.action_dim, self.cfg, self.device = action_dim, cfg, torch.device(device)
        high = action_dim >= cfg.high_dim
        self.iterations = cfg.iterations_high_dim if high else cfg.iterations

    def initial_mean(self, warm: Tensor | None) -> Tensor:
        """The previous step's mean shifted one step earlier (zero at the end), or zeros."""
        mean = torch.zeros(self.cfg.horizon, self.action_dim, device=self.device)
        if warm is not None:
            mean[:-1] = warm[1:].to(self.device)
        return mean

    @torch.no_grad()
    def plan(
        self,
        score: Score,
        warm: Tensor | None = None,
        prior: Tensor | None = None,
        explore: bool = False,
    ) -> Plan:
        """Optimise an H-step action sequence with `score`, warm-started from the previous
        step's `Plan.mean` (None at an episode's start); return its first action and mean."""
        cfg = self.cfg
        mean = self.initial_mean(warm)
        std = torch.full_like(mean, cfg.max_std)
        if prior is not None:
            if prior.dim() != 3 or prior.shape[1:] != mean.shape:
                raise ValueError(
                    f"prior has shape {tuple(prior.shape)}; expected (P, {cfg.horizon}, "
                    f"{self.action_dim})"
                )
            if prior.shape[0] >= cfg.samples:
                raise ValueError(f"{prior.shape[0]} prior trajectories fill all {cfg.samples}")
            prior = prior.to(self.device, mean.dtype)
        n_sampled = cfg.samples - (0 if prior is None else prior.shape[0])
        for _ in range(self.iterations):
            noise = torch.randn(n_sampled, *mean.shape, device=self.device)
            sampled = (mean + std * noise).clamp(-1, 1)
            candidates = sampled if prior is None else torch.cat([prior, sampled])
            values = score(candidates)
            if values.shape != (cfg.samples,):
                raise ValueError(f"score returned shape {tuple(values.shape)}; expected (N,)")
            # A diverging model can score NaN; treating it as 0 keeps topk well defined.
            values = torch.nan_to_num(values.to(mean.dtype), nan=0.0)
            top = torch.topk(values, cfg.elites).indices
            elites = candidates[top]
            weights = self._elite_weights(values[top])
            w = weights[:, None, None]
            mean = (w * elites).sum(0)
            std = (w * (elites - mean).pow(2)).sum(0).sqrt().clamp(cfg.min_std, cfg.max_std)
        action = self._choose(elites, weights, mean)
        if explore:
            action = action + std[0] * torch.randn_like(action)
        return Plan(action.clamp(-1, 1), mean)

    @abstractmethod
    def _elite_weights(self, values: Tensor) -> Tensor:
        """Weights (summing to 1) of the elites, from their values."""

    @abstractmethod
    def _choose(self, elites: Tensor, weights: Tensor, mean: Tensor) -> Tensor:
        """The first action to execute, from the final elites and fitted mean."""
