"""TD-MPC2's policy prior: a tanh-squashed Gaussian over latents, trained to maximise the
scaled Q of its actions plus an entropy bonus on the world model's latents. It proposes
trajectories to the planner and acts alone with `planner=none`."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mbrl_sam import seeded
from mbrl_sam.nets import COMPILE_OPTIONS, frozen, normed_mlp
from mbrl_sam.objectives import LossClosure
from mbrl_sam.optim import ClosureOptimizer, OptimizerConfig


class PolicyPrior(nn.Module):
    """Tanh-squashed Gaussian policy over latents."""

    def __init__(
        self,
        latent_dim: int,
        units: int,
        action_dim: int,
        log_std_min: float,
        log_std_max: float,
    ) -> None:
        super().__init__()
        self.net = normed_mlp(latent_dim, units, 2, 2 * action_dim)
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, z: Tensor, explore: bool = True) -> tuple[Tensor, Tensor]:
        """An action in [-1, 1] (tanh of a Gaussian sample, or of the mean) and the Gaussian
        log-density of the sample before the tanh.

        TD-MPC2's entropy bonus is this density times the action dimension: it leaves out the
        tanh's change of variables (`squashed_log_prob` has it).
        """
        mean, log_std = self.net(z).chunk(2, -1)
        span = self.log_std_max - self.log_std_min
        log_std = self.log_std_min + 0.5 * span * (torch.tanh(log_std) + 1)
        noise = seeded.randn_like(mean) if explore else torch.zeros_like(mean)
        raw = mean + noise * log_std.exp()
        log_prob = (-0.5 * noise.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        return torch.tanh(raw), log_prob


def squashed_log_prob(action: Tensor, log_prob: Tensor) -> Tensor:
    """Log-density of a tanh-squashed action, given the Gaussian log-density before the tanh."""
    # log|d tanh(u)/du| = log(1 - tanh(u)^2), floored as TD-MPC2 logs it.
    return log_prob - torch.log(F.relu(1 - action.pow(2)) + 1e-6).sum(-1)


def linear_quantiles(x: Tensor, levels: tuple[float, ...]) -> Tensor:
    """torch.quantile's default (linear) quantiles of a vector, from a sort: the form that
    runs under vmap (stacked seeds) without a per-seed fallback."""
    ordered = x.sort().values
    out = []
    for level in levels:
        pos = level * (x.shape[0] - 1)
        low = math.floor(pos)
        high = min(low + 1, x.shape[0] - 1)
        out.append(torch.lerp(ordered[low], ordered[high], pos - low))
    return torch.stack(out)


class RunningScale:
    """EMA of the 5th-95th percentile range of Q values, so the policy loss is scale-free."""

    def __init__(self, rate: float, device: torch.device) -> None:
        self.rate = rate
        self.value = torch.ones((), device=device)

    def after(self, x: Tensor, value: Tensor | None = None) -> Tensor:
        """The scale after an update with `x`, without changing it (for pure loss closures);
        from `value` instead of the scale's own (a stacked seed's)."""
        flat = x.detach().flatten().float()
        if torch._C._functorch.is_batchedtensor(flat):
            q = linear_quantiles(flat, (0.05, 0.95))  # quantile has no batching rule
        else:
            q = torch.quantile(flat, x.new_tensor([0.05, 0.95]))
        now = self.value if value is None else value
        return torch.lerp(now, (q[1] - q[0]).clamp_min(1.0), self.rate)


class PolicyPriorLearner:
    """Steps a policy prior on latents (T, B, L) with TD-MPC2's loss; the Q function only
    passes gradients on to the actions."""

    def __init__(
        self,
        pi: PolicyPrior,
        q: Callable[[Tensor, Tensor], Tensor],
        critic: nn.Module,
        horizon_decay: float,
        entropy_coef: float,
        scale_rate: float,
        opt: OptimizerConfig,
        device: torch.device,
        compile: bool = False,
    ) -> None:
        """`q(z, action)` is the value the policy maximises; `critic` holds its weights;
        `compile` runs the loss as one torch.compile graph (forward and backward)."""
        self.pi, self.q, self.critic = pi, q, critic
        self.horizon_decay, self.entropy_coef = horizon_decay, entropy_coef
        self.scale = RunningScale(scale_rate, device)
        self.optimizer = ClosureOptimizer(pi.parameters(), opt.lr, opt.eps, opt.clip)
        self._loss = self.loss_on
        if compile:
            self._loss = torch.compile(self.loss_on, options=COMPILE_OPTIONS)

    def loss_on(self, zs: Tensor, scale: Tensor | None = None) -> tuple[Tensor, dict]:
        """The loss on latents (T, B, L): the scaled Q of the policy's actions plus an entropy
        bonus, rho^t-weighted over the window (TD-MPC2's); the critic must be frozen. `scale`:
        the Q scale to start from, when not the learner's own (a stacked seed's)."""
        weights = self.horizon_decay ** torch.arange(zs.shape[0], device=zs.device).float()
        action, log_prob = self.pi(zs)
        q = self.q(zs, action)
        # As TD-MPC2, Q is divided by the scale updated with this batch's first-step Qs; the
        # update itself is committed once, after the step (`update`).
        q_scale = self.scale.after(q[0], scale)
        # TD-MPC2's bonus: the pre-tanh Gaussian's entropy estimate times the action dim.
        entropy = -log_prob * action.shape[-1]
        objective = q / q_scale + self.entropy_coef * entropy
        loss = -(weights[:, None] * objective).mean()
        pi_entropy = -squashed_log_prob(action, log_prob).mean()
        aux = {"pi_loss": loss.detach(), "pi_entropy": pi_entropy.detach()}
        return loss, {**aux, "q_scale": q_scale}

    def loss(self, zs: Tensor) -> LossClosure:
        """`loss_on(zs)` as a pure closure, with the critic frozen around it (the Q function
        only passes gradients on to the actions)."""

        def policy_loss() -> tuple[Tensor, dict]:
            with frozen(self.critic):
                return self._loss(zs)

        return policy_loss

    def update(self, zs: Tensor) -> dict[str, float]:
        """One step on the world model's latents; `policy/` metrics."""
        aux, metrics = self.optimizer.step(
            self.loss(zs), commit=lambda aux: self.scale.value.copy_(aux["q_scale"])
        )
        out = {f"policy/{k}": float(v) for k, v in aux.items()}
        out["policy/grad_norm"] = metrics["final_grad_norm"]
        return out
