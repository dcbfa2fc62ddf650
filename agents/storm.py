"""STORM: a transformer world model trained by a pluggable objective, actor-critic in
imagination (the same behaviour learning as Dreamer, started from the transformer's states)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from agents.imagination import ImaginationAgent
from mbrl_sam.agent import AgentConfig
from mbrl_sam.behavior.actor_critic import ActorCritic, ActorCriticConfig
from mbrl_sam.environment import EnvSpec
from mbrl_sam.errors import ConfigError, check_int
from mbrl_sam.nets import eval_mode
from mbrl_sam.objectives import ObjectiveConfig
from mbrl_sam.optim import OptimizerConfig, world_model_optimizer
from mbrl_sam.planners import PlannerConfig
from mbrl_sam.registry import AgentEntry
from mbrl_sam.world_models.storm import StormModelConfig, StormWorldModel

# The last act_context latents and actions taken at them, and the features acted on.
ActState = tuple[Tensor, Tensor, Tensor]


@dataclass
class StormConfig(AgentConfig):
    """`agent=storm`: STORM's values (weipu-zhang/STORM 1c50658) except where a comment names
    theirs; sizes in configs/preset/storm_<size>.yaml (the defaults are its published size, M)."""

    name: str = "storm"
    batch_size: int = 16
    batch_length: int = 64  # 63 tokens per sequence: the transformer's positions (STORM: 64)
    prefill: Any = 4096  # env steps of random actions (STORM: 1,024 agent steps at repeat 4)
    catch_up: bool = False
    train_ratio: float = 1024  # one 16 x 64 update per agent step, as STORM
    act_context: int = 16  # past steps the acting agent's transformer sees, as STORM
    compile: bool = False  # torch.compile the loss and the networks' forward passes
    model: StormModelConfig = field(default_factory=StormModelConfig)
    model_opt: OptimizerConfig = field(
        default_factory=lambda: OptimizerConfig(lr=1e-4, eps=1e-8, clip=1000.0)
    )
    # STORM: one Adam for actor and critic, lr 3e-5, eps 1e-5, clip 100; horizon 16; discount
    # 0.985; it regularises toward the slow critic's lambda-return (ours: its value).
    behavior: ActorCriticConfig = field(
        default_factory=lambda: ActorCriticConfig(
            units=512,
            layers=2,
            horizon=16,
            discount_horizon=66.6667,
            actor_lr=3e-5,
            critic_lr=3e-5,
        )
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        tokens = self.batch_length - 1  # a replayed sequence's tokens: the learned positions
        check_int("agent.act_context", self.act_context, 1)
        if self.act_context > tokens:
            raise ConfigError(
                f"agent.act_context={self.act_context} is not valid; it must be at most "
                f"agent.batch_length - 1 = {tokens}, the positions the transformer learns"
            )
        if self.model.cpc_steps > tokens:
            raise ConfigError(
                f"agent.model.cpc_steps={self.model.cpc_steps} is not valid; it must be at most "
                f"agent.batch_length - 1 = {tokens}"
            )
        if self.behavior.horizon > tokens:
            raise ConfigError(
                f"agent.behavior.horizon={self.behavior.horizon} is not valid for agent=storm; "
                f"it must be at most agent.batch_length - 1 = {tokens}"
            )


def build_world_model(
    obs_shape: tuple[int, ...], action_dim: int, cfg: StormConfig
) -> StormWorldModel:
    """The agent's world model (also built on the meta device to read its group names)."""
    return StormWorldModel(
        obs_shape, action_dim, cfg.model, max_len=cfg.batch_length - 1, context=cfg.act_context
    )


class StormAgent(ImaginationAgent):
    """Acts on the current frame's latent and the transformer's summary of the steps before;
    learns model, then behaviour, per update."""

    def __init__(
        self,
        spec: EnvSpec,
        cfg: StormConfig,
        objective: ObjectiveConfig,
        planner: PlannerConfig,
        device: torch.device,
    ) -> None:
        self.spec, self.device, self.cfg = spec, device, cfg
        self.world_model = build_world_model(spec.obs_shape, spec.action_dim, cfg)
        feat_dim = self.world_model.stoch_dim + cfg.model.dim
        self.ac = ActorCritic(feat_dim, spec.action_dim, spec.discrete, cfg.behavior)
        self.world_model.to(device)
        self.ac.to(device)
        self.model_optimizer = world_model_optimizer(self.world_model, cfg.model_opt, objective)
        if cfg.compile:
            # Compiled in place, so checkpoints keep their keys; cached steps change shape each
            # step, so only the whole-sequence loss and the networks' forward passes compile.
            wm = self.world_model
            for module in (wm.encoder, wm.decoder, wm.reward_head, wm.termination_head):
                module.compile()
            self.loss_fn = torch.compile(wm.loss)

    @torch.no_grad()
    def act(
        self, obs: np.ndarray, state: ActState | None, is_first: bool, explore: bool
    ) -> tuple[np.ndarray, ActState]:
        """Pick an action for one observation; `state` carries the recent latents and actions."""
        wm = self.world_model
        with eval_mode(wm):
            stoch = wm.sample(wm.posterior_logits(self._obs_tensor(obs)[None]))
            if state is None or is_first:
                window = stoch.new_zeros(1, 0, *stoch.shape[1:])
                actions = stoch.new_zeros(1, 0, self.spec.action_dim)
                hidden = stoch.new_zeros(1, self.cfg.model.dim)  # nothing before the first step
            else:
                window, actions, _ = state
                hidden = wm.window_hidden(window, actions)
            feat = wm.features({"stoch": stoch, "hidden": hidden})
            dist = self.ac.actor(feat)
            action = dist.clip(dist.sample()) if explore else dist.mode()
        keep = self.cfg.act_context
        window = torch.cat([window, stoch[:, None]], 1)[:, -keep:]
        actions = torch.cat([actions, action[:, None]], 1)[:, -keep:]
        return action[0].cpu().numpy(), (window, actions, feat)

    def update(self, batch: dict[str, Tensor], step: int) -> dict[str, float]:
        """One world-model step (through the objective), then one actor and critic step on
        rollouts imagined from the batch's steps."""
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        aux, metrics = self.model_step(batch, step)
        with eval_mode(self.world_model):  # imagination without dropout
            start, start_cont = self.world_model.starts(
                aux["post"]["stoch"], batch, self.cfg.behavior.horizon
            )
            behavior = self.ac.update(self.world_model, start, start_cont)
        metrics.update({f"behavior/{k}": v for k, v in behavior.items()})
        return metrics

    @torch.no_grad()
    def state_value(self, obs: np.ndarray, act_state: ActState) -> float:
        """The critic's value of the features `act` just acted on (act_state from that act)."""
        return float(self.ac.value(act_state[2])[0])


ENTRY = AgentEntry(
    name="storm",
    build=StormAgent,
    config=StormConfig,
    world_model=build_world_model,
    # SAM on the whole world model, not actor or critic, at radius 0.05, as the paper's
    # transformer agent (TWISTER-SAM, stablegradients/TWISTER; 0.1 in its Atari launcher).
    perturb="all",
    rho=0.05,
)
