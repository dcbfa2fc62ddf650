"""Actor-critic learned in imagination: lambda-returns, percentile return scale, slow critic."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from mbrl_sam.behavior.policy import Policy
from mbrl_sam.distributions import TwoHot
from mbrl_sam.errors import ConfigError, check_choice, check_int, check_positive, check_range
from mbrl_sam.imagination import Imagined, LatentModel, State, imagine, map_state
from mbrl_sam.nets import MLP, NORMS, frozen
from mbrl_sam.optim import ClosureOptimizer


@dataclass
class ActorCriticConfig:
    """Behaviour learning: DreamerV3's values (danijar/dreamerv3 e3f0224) except where a comment
    names theirs; units and layers are sizes (configs/preset/*)."""

    units: int = 64
    layers: int = 3
    norm: str = "layer"  # official: rms, as the model's norm
    horizon: int = 15
    discount_horizon: float = 333.0  # discount 1 - 1/333
    lam: float = 0.95
    entropy: float = 3e-4
    # auto: dynamics backpropagation for continuous actions, as the DreamerV3 paper; REINFORCE
    # for discrete. Official code: reinforce for all; not measured side by side.
    actor_grad: str = "auto"  # auto | reinforce | dynamics
    slow_rate: float = 0.02
    slow_reg: float = 1.0
    retnorm_rate: float = 0.01
    retnorm_low: float = 5.0
    retnorm_high: float = 95.0
    min_std: float = 0.1
    max_std: float = 1.0
    unimix: float = 0.0  # the discrete policy's uniform mix (the official categorical policy: none)
    bins: int = 255
    # Adam, global-norm clip. Official: LaProp as the model's (lr 4e-5, eps 1e-20, adaptive clip
    # 0.3); 2023: Adam 3e-5.
    actor_lr: float = 1e-4
    critic_lr: float = 1e-4
    eps: float = 1e-5
    clip: float = 100.0

    def __post_init__(self) -> None:
        check_choice(
            "agent.behavior.actor_grad", self.actor_grad, ("auto", "reinforce", "dynamics")
        )
        check_choice("agent.behavior.norm", self.norm, NORMS)
        for key in ("units", "layers", "horizon", "bins"):
            check_int(f"agent.behavior.{key}", getattr(self, key), 1)
        check_range("agent.behavior.discount_horizon", self.discount_horizon, 1.0, float("inf"))
        for key in ("lam", "slow_rate", "retnorm_rate"):
            check_range(f"agent.behavior.{key}", getattr(self, key), 0.0, 1.0)
        check_range("agent.behavior.unimix", self.unimix, 0.0, 1.0, high_open=True)
        if not 0 <= self.retnorm_low < self.retnorm_high <= 100:
            raise ConfigError(
                "agent.behavior: 0 <= retnorm_low < retnorm_high <= 100 must hold, got "
                f"{self.retnorm_low} and {self.retnorm_high}"
            )
        if not 0 < self.min_std <= self.max_std:
            raise ConfigError(
                f"agent.behavior.min_std={self.min_std} must be in (0, max_std={self.max_std}]"
            )
        for key in ("actor_lr", "critic_lr", "eps", "clip"):
            check_positive(f"agent.behavior.{key}", getattr(self, key))


class LatentModule(LatentModel, Protocol):
    """A latent model whose weights the actor's loss holds fixed (`frozen`)."""

    def parameters(self) -> Any:
        """Its weights."""
        ...


def lambda_returns(
    reward: Tensor, cont: Tensor, value: Tensor, discount: float, lam: float
) -> Tensor:
    """R_t = r_{t+1} + g c_{t+1} ((1 - lam) v_{t+1} + lam R_{t+1}), bootstrapped with v_H.

    reward and cont have shape (H, N) and hold r_{t+1}, c_{t+1}; value has shape (H + 1, N).
    """
    returns = [value[-1]]
    for t in reversed(range(reward.shape[0])):
        nxt = (1 - lam) * value[t + 1] + lam * returns[-1]
        returns.append(reward[t] + discount * cont[t] * nxt)
    return torch.stack(returns[::-1][:-1])


class ActorCritic(nn.Module):
    """Policy and two-hot critic trained on imagined rollouts of a world model."""

    def __init__(self, feat_dim: int, action_dim: int, discrete: bool, cfg: ActorCriticConfig):
        super().__init__()
        self.cfg = cfg
        self.action_dim, self.discrete = action_dim, discrete
        self.discount = 1.0 - 1.0 / cfg.discount_horizon
        self.actor = Policy(
            feat_dim,
            action_dim,
            discrete,
            cfg.units,
            cfg.layers,
            cfg.norm,
            cfg.min_std,
            cfg.max_std,
            cfg.unimix,
        )
        self.critic = MLP(feat_dim, cfg.units, cfg.layers, cfg.bins, cfg.norm, outscale=0.0)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.twohot = TwoHot(cfg.bins)
        self.register_buffer("return_scale", torch.zeros(()))
        self.actor_opt = ClosureOptimizer(self.actor.parameters(), cfg.actor_lr, cfg.eps, cfg.clip)
        self.critic_opt = ClosureOptimizer(
            self.critic.parameters(), cfg.critic_lr, cfg.eps, cfg.clip
        )

    def value(self, feat: Tensor) -> Tensor:
        """The critic's value estimate at `feat`."""
        return self.twohot.mean(self.critic(feat))

    def imagine(self, wm: LatentModule, start: State, backprop: bool = True) -> Imagined:
        """Roll the policy out in the model for `horizon` steps from every start state.

        backprop: actions are reparameterised samples, so the trajectory is differentiable in
        them (dynamics backpropagation, when grad is enabled); otherwise actions are plain
        samples and the trajectory's extras carry the samples as drawn ("raw_action") and their
        log-probabilities (for REINFORCE). `action` holds what the model received: clipped to
        [-1, 1] for continuous actions. Extras: "entropy" of the policy at each step.
        """

        def policy(feat: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
            dist = self.actor(feat.detach())
            if backprop:
                return dist.rsample(), {"entropy": dist.entropy()}
            # REINFORCE scores the sample as drawn; the model gets it clipped to [-1, 1].
            raw = dist.sample().detach()
            extras = {"entropy": dist.entropy(), "raw_action": raw, "log_prob": dist.log_prob(raw)}
            return dist.clip(raw), extras

        return imagine(wm, map_state(start, Tensor.detach), self.cfg.horizon, policy=policy)

    def _targets(self, traj: Imagined, value: Tensor, start_cont: Tensor) -> tuple:
        """Lambda-returns, per-step loss weights, the return scale's EMA updated with these
        returns (for the caller to commit) and the divisor taken from it."""
        returns = lambda_returns(traj.reward, traj.cont, value, self.discount, self.cfg.lam)
        with torch.no_grad():
            # Every step's weight carries the discount, the first too: DreamerV3 weights by
            # its continue head, which learns (1 - terminal) * discount.
            discounts = self.discount * torch.cat([start_cont[None], traj.cont[:-1]])
            weight = discounts.cumprod(0).detach()
            return_scale = self.return_scale_after(returns.detach())
        return returns, weight, return_scale, return_scale.clamp_min(1.0)

    def update(self, wm: LatentModule, start: State, start_cont: Tensor) -> dict[str, float]:
        """One actor step on a fresh imagined batch, then one critic step on the same batch."""
        cfg = self.cfg
        dynamics = cfg.actor_grad == "dynamics" or (cfg.actor_grad == "auto" and not self.discrete)

        def actor_loss() -> tuple[Tensor, dict]:
            if dynamics:
                # Gradients flow from the returns through the model into the actions; the
                # model and critic weights are held fixed (their own optimizers train them).
                with frozen(wm, self.critic):
                    traj = self.imagine(wm, start)
                    value = self.value(traj.feat)
                returns, weight, return_scale, scale = self._targets(traj, value, start_cont)
                objective = returns / scale
            else:
                # The model runs without a graph; the actor's graph from the rollout gives the
                # log-probabilities.
                with frozen(wm):
                    traj = self.imagine(wm, start, backprop=False)
                with torch.no_grad():
                    value = self.value(traj.feat)
                returns, weight, return_scale, scale = self._targets(traj, value, start_cont)
                advantage = (returns - value[:-1]) / scale
                objective = traj.extras["log_prob"] * advantage
            entropy = traj.extras["entropy"]
            loss = -(weight * (objective + cfg.entropy * entropy)).mean()
            aux = {
                "feat": traj.feat.detach(),
                "returns": returns.detach(),
                "weight": weight,
                "imag_reward": traj.reward.mean().detach(),
            }
            metrics = {"actor_loss": loss.detach(), "actor_entropy": entropy.mean().detach()}
            return loss, {"metrics": metrics, "traj": aux, "return_scale": return_scale}

        actor_aux, actor_metrics = self.actor_opt.step(
            actor_loss, commit=lambda aux: self.return_scale.copy_(aux["return_scale"])
        )
        traj = actor_aux["traj"]
        feat, returns, weight = traj["feat"], traj["returns"], traj["weight"]
        with torch.no_grad():
            slow_value = self.twohot.mean(self.slow_critic(feat[:-1]))

        def critic_loss() -> tuple[Tensor, dict]:
            # Cross-entropy to the returns plus, as a regulariser, to the slow critic's mean.
            logits = self.critic(feat[:-1])
            loss = self.twohot.loss(logits, returns, slow_value, cfg.slow_reg)
            loss = (weight * loss).mean()
            return loss, {"critic_loss": loss.detach()}

        critic_aux, critic_metrics = self.critic_opt.step(critic_loss)
        self._update_slow_critic()
        metrics = {**actor_aux["metrics"], **critic_aux}
        metrics = {k: float(v) for k, v in metrics.items()}
        metrics["actor_grad_norm"] = actor_metrics["final_grad_norm"]
        metrics["critic_grad_norm"] = critic_metrics["final_grad_norm"]
        metrics["imag_return"] = float(returns.mean())
        metrics["imag_reward"] = float(traj["imag_reward"])
        metrics["return_scale"] = float(self.return_scale)
        return metrics

    def return_scale_after(self, returns: Tensor) -> Tensor:
        """The EMA of the 5th-95th percentile range of returns (the normaliser's denominator)
        after an update with `returns`, without changing it."""
        flat = returns.flatten().float()
        q = torch.quantile(
            flat,
            torch.tensor([self.cfg.retnorm_low, self.cfg.retnorm_high], device=flat.device) / 100.0,
        )
        rate = self.cfg.retnorm_rate
        return self.return_scale * (1 - rate) + rate * (q[1] - q[0])

    @torch.no_grad()
    def _update_slow_critic(self) -> None:
        """Move the slow critic toward the critic by `slow_rate`."""
        for slow, fast in zip(self.slow_critic.parameters(), self.critic.parameters()):
            slow.lerp_(fast, self.cfg.slow_rate)

    def optimizer_state(self) -> dict:
        """Actor and critic optimizer states for checkpoints."""
        return {"actor": self.actor_opt.state_dict(), "critic": self.critic_opt.state_dict()}

    def load_optimizer_state(self, state: dict) -> None:
        """Restore from `optimizer_state()`."""
        self.actor_opt.load_state_dict(state["actor"])
        self.critic_opt.load_state_dict(state["critic"])
