"""TD-MPC2-style decoder-free latent model: encode / next / reward / Q / pi, and its loss."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mbrl_sam import seeded
from mbrl_sam.behavior.policy_prior import PolicyPrior
from mbrl_sam.distributions import SymlogTwoHot
from mbrl_sam.errors import ConfigError, check_int, check_range
from mbrl_sam.nets import EnsembleMLP, SimNorm, normed_mlp


@dataclass
class TDMPCModelConfig:
    """Sizes (TD-MPC2's default, 5M; others in configs/preset/tdmpc_*) and loss weights:
    TD-MPC2's (nicklashansen/tdmpc2 e9f5932)."""

    latent_dim: int = 512
    enc_dim: int = 256
    mlp_dim: int = 512
    enc_layers: int = 2
    num_q: int = 5
    simnorm_dim: int = 8
    dropout: float = 0.01
    bins: int = 101
    vmin: float = -10.0
    vmax: float = 10.0
    log_std_min: float = -10.0
    log_std_max: float = 2.0
    episodic: bool = False  # learn a termination head (tasks whose episodes can end early)
    consistency_coef: float = 20.0
    reward_coef: float = 0.1
    value_coef: float = 0.1
    termination_coef: float = 1.0
    horizon_decay: float = 0.5  # loss weight decay per step of the horizon (TD-MPC2's rho)

    def __post_init__(self) -> None:
        for key in ("latent_dim", "enc_dim", "mlp_dim", "enc_layers", "num_q", "simnorm_dim"):
            check_int(f"agent.model.{key}", getattr(self, key), 1)
        check_int("agent.model.num_q", self.num_q, 2)  # TD targets take the min of two Qs
        check_int("agent.model.bins", self.bins, 2)
        check_range("agent.model.dropout", self.dropout, 0.0, 1.0, high_open=True)
        check_range("agent.model.horizon_decay", self.horizon_decay, 0.0, 1.0)
        if self.latent_dim % self.simnorm_dim:
            raise ConfigError(
                f"agent.model.latent_dim={self.latent_dim} is not valid; it must be a multiple "
                f"of agent.model.simnorm_dim={self.simnorm_dim}"
            )
        if not self.vmin < self.vmax or not self.log_std_min < self.log_std_max:
            raise ConfigError("agent.model: vmin < vmax and log_std_min < log_std_max must hold")


class TDMPCWorldModel(nn.Module):
    """Encoder, latent dynamics, reward, Q-ensemble (+ EMA target), termination and policy."""

    def __init__(self, obs_dim: int, action_dim: int, cfg: TDMPCModelConfig) -> None:
        super().__init__()
        self.cfg, self.action_dim = cfg, action_dim
        simnorm = SimNorm(cfg.simnorm_dim)
        self.encoder = normed_mlp(
            obs_dim, cfg.enc_dim, max(cfg.enc_layers - 1, 1), cfg.latent_dim, simnorm
        )
        za = cfg.latent_dim + action_dim
        self.dynamics = normed_mlp(za, cfg.mlp_dim, 2, cfg.latent_dim, simnorm)
        self.reward_head = normed_mlp(za, cfg.mlp_dim, 2, cfg.bins)
        self.qs = EnsembleMLP(cfg.num_q, za, cfg.mlp_dim, 2, cfg.bins, cfg.dropout)
        # Targets never use dropout, from the first update on (train() keeps them so).
        self.target_qs = copy.deepcopy(self.qs).requires_grad_(False).train(False)
        self.termination_head = (
            normed_mlp(cfg.latent_dim, cfg.mlp_dim, 2, 1) if cfg.episodic else None
        )
        # The policy prior lives with the model, as in TD-MPC2 (its weights in the same
        # checkpoint); its loss and optimizer are the agent's (mbrl_sam/behavior/policy_prior.py).
        self.pi = PolicyPrior(
            cfg.latent_dim, cfg.mlp_dim, action_dim, cfg.log_std_min, cfg.log_std_max
        )
        self.twohot = SymlogTwoHot(cfg.bins, cfg.vmin, cfg.vmax)
        # Reward and Q heads start out predicting zero for every input.
        with torch.no_grad():
            self.reward_head[-1].weight.zero_()
            self.qs.weights[-1].zero_()
            self.target_qs.weights[-1].zero_()

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """World-model parameters by name (the policy prior is not part of the world model)."""
        groups = {
            "encoder": list(self.encoder.parameters()),
            "dynamics": list(self.dynamics.parameters()),
            "reward": list(self.reward_head.parameters()),
            "value": list(self.qs.parameters()),
        }
        if self.termination_head is not None:
            groups["termination"] = list(self.termination_head.parameters())
        return groups

    def train(self, mode: bool = True) -> TDMPCWorldModel:
        """Set training mode; the target Qs stay in eval mode (no dropout in TD targets)."""
        super().train(mode)
        self.target_qs.train(False)
        return self

    def encode(self, obs: Tensor) -> Tensor:
        """Latent state of vector observations (fed raw, as TD-MPC2 does)."""
        return self.encoder(obs)

    def next(self, z: Tensor, action: Tensor) -> Tensor:
        """The next latent state."""
        return self.dynamics(torch.cat([z, action], -1))

    # The latent-model interface (mbrl_sam/imagination.py): z is both state and features.

    def features(self, state: Tensor) -> Tensor:
        """The latent state itself."""
        return state

    def imagine_step(self, state: Tensor, action: Tensor) -> Tensor:
        """The next latent state (`next`)."""
        return self.next(state, action)

    def outcomes(self, feat: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """Reward of taking each action in its state, and whether the state reached goes on."""
        return self.reward(feat[:-1], action), self.continues(feat[1:])

    def observe_episode(self, episode: dict[str, Tensor]) -> Tensor:
        """The encoding of each step of a real episode."""
        return self.encode(episode["obs"].float())

    def start_states(self, posterior: Tensor, episode: dict[str, Tensor], starts: Tensor) -> Tensor:
        """Imagination starts at steps `starts`: their encodings."""
        return posterior[starts]

    def observation_error(self, feat: Tensor, obs: Tensor) -> None:
        """None: the model has no decoder."""
        return None

    def reward_logits(self, z: Tensor, action: Tensor) -> Tensor:
        """Two-hot logits of the reward for taking `action` in `z`."""
        return self.reward_head(torch.cat([z, action], -1))

    def reward(self, z: Tensor, action: Tensor) -> Tensor:
        """Predicted reward."""
        return self.twohot.mean(self.reward_logits(z, action))

    def continues(self, z: Tensor) -> Tensor:
        """Probability that the episode goes on from `z` (1 when not episodic)."""
        if self.termination_head is None:
            return torch.ones(z.shape[:-1], device=z.device)
        return 1 - torch.sigmoid(self.termination_head(z).squeeze(-1))

    def q_logits(
        self, z: Tensor, action: Tensor, target: bool = False, members: Tensor | None = None
    ) -> Tensor:
        """Two-hot logits of the Qs (all, or those in `members`), shape (members, ..., bins)."""
        net = self.target_qs if target else self.qs
        return net(torch.cat([z, action], -1), members)

    def q(self, z: Tensor, action: Tensor, reduce: str = "avg", target: bool = False) -> Tensor:
        """Two randomly drawn Qs of the ensemble, averaged ("avg") or the smaller ("min")."""
        # Indexing by a tensor (not Python random) keeps the draw on torch's seeded RNG.
        pick = seeded.randperm(self.cfg.num_q, z.device)[:2]
        values = self.twohot.mean(self.q_logits(z, action, target, pick))
        return values.min(0).values if reduce == "min" else values.mean(0)

    @torch.no_grad()
    def update_targets(self, tau: float) -> None:
        """Move the target Qs toward the Qs by `tau`."""
        for target, source in zip(self.target_qs.parameters(), self.qs.parameters()):
            target.lerp_(source, tau)

    @torch.no_grad()
    def td_targets(
        self, next_obs: Tensor, reward: Tensor, terminal: Tensor, discount: float
    ) -> tuple[Tensor, Tensor]:
        """Encoded next observations and r + discount * (1 - terminal) * min of target Qs."""
        next_z = self.encode(next_obs)
        action, _ = self.pi(next_z)
        value = self.q(next_z, action, "min", target=True)
        return next_z, reward + discount * (1 - terminal.float()) * value

    def loss(
        self,
        obs: Tensor,
        action: Tensor,
        reward: Tensor,
        terminal: Tensor,
        next_z: Tensor,
        td_target: Tensor,
        valid: Tensor,
    ) -> tuple[Tensor, dict]:
        """World-model loss on H-step windows; returns (loss, {"metrics", "zs"}).

        obs (B, obs_dim) is the first observation; action, reward, terminal, td_target and
        valid are (H, B) time-major (action with a trailing action axis); next_z (H, B, L).
        `valid` masks steps after an episode boundary inside a window.
        """
        cfg, horizon = self.cfg, action.shape[0]
        weights = cfg.horizon_decay ** torch.arange(horizon, device=obs.device, dtype=torch.float32)
        valid = valid.float()
        z = self.encode(obs)
        zs = [z]
        consistency = []
        for t in range(horizon):
            z = self.next(z, action[t])
            consistency.append((z - next_z[t]).pow(2).mean(-1))
            zs.append(z)
        latents = torch.stack(zs[:-1])
        rew = self.twohot.loss(self.reward_logits(latents, action), reward)
        q_logits = self.q_logits(latents, action)
        value = self.twohot.loss(q_logits, td_target.expand(cfg.num_q, -1, -1))
        terms = {
            "consistency": torch.stack(consistency),
            "reward": rew,
            "value": value.mean(0),
        }
        # Each term: rho^t-weighted over the horizon, masked, averaged over steps and batch.
        per_term = {
            k: (weights[:, None] * v * valid).sum(0).mean() / horizon for k, v in terms.items()
        }
        coefs = {
            "consistency": cfg.consistency_coef,
            "reward": cfg.reward_coef,
            "value": cfg.value_coef,
            "termination": cfg.termination_coef,
        }
        if self.termination_head is not None:
            logits = self.termination_head(torch.stack(zs[1:])).squeeze(-1)
            bce = F.binary_cross_entropy_with_logits(logits, terminal.float(), reduction="none")
            # TD-MPC2 averages the termination loss over the window without rho weights.
            per_term["termination"] = (bce * valid).mean()
        loss = sum(coefs[k] * v for k, v in per_term.items())
        metrics = {f"{k}_loss": v.detach() for k, v in per_term.items()}
        metrics["loss"] = loss.detach()
        return loss, {"metrics": metrics, "zs": torch.stack(zs)}
