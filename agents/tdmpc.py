"""TD-MPC2-style agent: a decoder-free latent model trained by a pluggable objective, a policy
prior, and a sampling planner (MPPI by default) that acts by planning in the latent space."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from mbrl_sam.agent import AgentConfig, model_step
from mbrl_sam.behavior.policy_prior import PolicyPriorLearner
from mbrl_sam.environment import EnvSpec
from mbrl_sam.errors import ConfigError, check_positive, check_range
from mbrl_sam.nets import COMPILE_OPTIONS, eval_mode
from mbrl_sam.objectives import ObjectiveConfig
from mbrl_sam.optim import OptimizerConfig, world_model_optimizer
from mbrl_sam.planners import PLANNER_NAMES, PlannerConfig, make_planner
from mbrl_sam.planners.model_value import model_value, policy_proposals
from mbrl_sam.registry import AgentEntry
from mbrl_sam.world_models.tdmpc import TDMPCModelConfig, TDMPCWorldModel


def heuristic_discount(
    episode_length: int, denom: float = 5.0, low: float = 0.95, high: float = 0.995
) -> float:
    """TD-MPC2's discount for episodes of `episode_length` agent steps:
    clamp((L/denom - 1) / (L/denom), low, high)."""
    frac = episode_length / denom
    return min(max((frac - 1) / frac, low), high)


def resolve_discount(discount: float | str, spec: EnvSpec) -> float:
    """A number as given (TDMPCConfig has checked it); `auto` from the env's episode length as
    TD-MPC2 does."""
    if discount != "auto":
        return float(discount)
    if not spec.episode_length:
        raise ConfigError(
            "agent.discount=auto needs a fixed episode length, and this task has none; "
            "set agent.discount to a number in (0, 1], e.g. 0.99"
        )
    return heuristic_discount(spec.episode_length)


@dataclass
class ModelOptimizerConfig(OptimizerConfig):
    """The world model's Adam; the encoder learns at lr x enc_lr_scale (TD-MPC2's)."""

    enc_lr_scale: float = 0.3

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("agent.model_opt.enc_lr_scale", self.enc_lr_scale)


@dataclass
class PolicyOptimizerConfig(OptimizerConfig):
    """The policy prior's Adam."""

    where: ClassVar[str] = "agent.pi_opt"


@dataclass
class TDMPCConfig(AgentConfig):
    """`agent=tdmpc`: TD-MPC2's values (nicklashansen/tdmpc2 e9f5932 `config.yaml`); sizes in
    configs/preset/tdmpc_<size>.yaml (the defaults are its 5M model). Its batch_length is the
    model's horizon + 1."""

    name: str = "tdmpc"
    batch_size: int = 256
    batch_length: int = 4  # horizon + 1: the model is unrolled for 3 steps per window
    train_ratio: float = 1024  # 256 x 4 replayed steps per agent step: one update per step
    prefill: Any = "auto"  # TD-MPC2's seed phase: max(1000, 5 x episode length) agent steps
    catch_up: bool = True  # then as many updates as seed steps in one burst, as TD-MPC2
    # auto: TD-MPC2's clamp((L/5 - 1) / (L/5), 0.95, 0.995) for episodes of L agent steps (0.99
    # for DMC's 500, 0.995 for 1000); or a number in (0, 1]
    discount: Any = "auto"
    tau: float = 0.01  # target-Q EMA rate
    entropy_coef: float = 1e-4
    scale_rate: float = 0.01  # EMA rate of the Q scale in the policy loss
    # torch.compile the training losses, the TD targets and the planner's value and proposals
    # (a slow start, faster steps)
    compile: bool = False
    model: TDMPCModelConfig = field(default_factory=TDMPCModelConfig)
    model_opt: ModelOptimizerConfig = field(
        default_factory=lambda: ModelOptimizerConfig(lr=3e-4, eps=1e-8, clip=20.0)
    )
    pi_opt: PolicyOptimizerConfig = field(
        default_factory=lambda: PolicyOptimizerConfig(lr=3e-4, eps=1e-5, clip=20.0)
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.discount != "auto":
            valid = isinstance(self.discount, (int, float)) and not isinstance(self.discount, bool)
            if not valid or not 0 < self.discount <= 1:
                raise ConfigError(
                    f"agent.discount={self.discount!r} must be auto or a number in (0, 1]"
                )
        for key in ("tau", "scale_rate"):
            check_range(f"agent.{key}", getattr(self, key), 0.0, 1.0)
        check_range("agent.entropy_coef", self.entropy_coef, 0.0, float("inf"))


def build_world_model(
    obs_shape: tuple[int, ...], action_dim: int, cfg: TDMPCConfig
) -> TDMPCWorldModel:
    """The agent's world model (also built on the meta device to read its group names)."""
    return TDMPCWorldModel(obs_shape[0], action_dim, cfg.model)


class TDMPCAgent:
    """Plans with the world model to act; updates model (objective), then policy, per batch."""

    def __init__(
        self,
        spec: EnvSpec,
        cfg: TDMPCConfig,
        objective: ObjectiveConfig,
        planner: PlannerConfig,
        device: torch.device,
    ) -> None:
        self.spec, self.device, self.cfg = spec, device, cfg
        self.discount = resolve_discount(cfg.discount, spec)
        self.tau = cfg.tau
        self.world_model = build_world_model(spec.obs_shape, spec.action_dim, cfg)
        self.world_model.to(device)
        wm = self.world_model
        self._loss, self._td_targets = wm.loss, wm.td_targets
        self._plan_value, self._proposals = self.estimate_value, self.proposals
        if cfg.compile:
            # Each as one graph (the loss's forward and backward, the TD targets, the policy's
            # loss, the planner's value estimate and proposals): inductor fuses their elementwise
            # work into a few loops, and the modules stay eager for everything else (e.g. the
            # Hessian measurements). `benchmarks/update_speed.py --against agent.compile=true`.
            self._loss = torch.compile(wm.loss, options=COMPILE_OPTIONS)
            self._td_targets = torch.compile(wm.td_targets, options=COMPILE_OPTIONS)
            self._plan_value = torch.compile(self.estimate_value, options=COMPILE_OPTIONS)
            self._proposals = torch.compile(self.proposals, options=COMPILE_OPTIONS)
        # The encoder learns slower (TD-MPC2's enc_lr_scale), the other model parts at lr.
        scales = {"encoder": cfg.model_opt.enc_lr_scale}
        self.model_optimizer = world_model_optimizer(
            self.world_model, cfg.model_opt, objective, scales
        )
        self.policy = PolicyPriorLearner(
            wm.pi,
            lambda z, action: wm.q(z, action, "avg"),
            wm.qs,
            cfg.model.horizon_decay,
            cfg.entropy_coef,
            cfg.scale_rate,
            cfg.pi_opt,
            device,
            compile=cfg.compile,
        )
        # planner=auto is TD-MPC's own way, MPPI; none acts with the policy prior alone.
        self.mpc = planner.name != "none"
        name = "mppi" if planner.name in ("auto", "none") else planner.name
        self.planner = make_planner(name, spec.action_dim, planner, device)

    # -- acting ------------------------------------------------------------------------------

    @torch.no_grad()
    def act(
        self, obs: np.ndarray, state: Any, is_first: bool, explore: bool
    ) -> tuple[np.ndarray, Any]:
        """Plan from the encoded observation; `state` carries the planner's warm start (the
        previous step's plan mean; None at an episode's start)."""
        with eval_mode(self.world_model):  # no dropout while planning
            z = self.world_model.encode(torch.as_tensor(obs, device=self.device).float()[None])
            if not self.mpc:
                action, _ = self.world_model.pi(z, explore)
                return action[0].cpu().numpy(), None
            warm = None if is_first else state
            proposals = self._proposals(z)
            plan = self.planner.plan(lambda a: self._plan_value(z, a), warm, proposals, explore)
        return plan.action.cpu().numpy(), plan.mean

    def proposals(self, z: Tensor) -> Tensor | None:
        """The planner's candidates from the policy prior: sequences (N, H, A) imagined from z."""

        def prior(feat: Tensor) -> tuple[Tensor, dict]:
            return self.world_model.pi(feat)[0], {}

        count, horizon = self.planner.cfg.prior_trajectories, self.planner.cfg.horizon
        return policy_proposals(self.world_model, z, count, horizon, prior)

    def estimate_value(self, z: Tensor, actions: Tensor) -> Tensor:
        """Discounted model return of action sequences (N, H, A) from z, plus the terminal Q;
        as TD-MPC2, a step predicted terminal (p > 0.5) ends the return for good."""
        wm = self.world_model

        def terminal_q(z_end: Tensor) -> Tensor:
            return wm.q(z_end, wm.pi(z_end)[0], "avg")

        return model_value(wm, z, actions, self.discount, terminal_q, hard_continue=True)

    # -- learning ----------------------------------------------------------------------------

    def update(self, batch: dict[str, Tensor], step: int) -> dict[str, float]:
        """One world-model step (through the objective), one policy step, target-Q EMA."""
        aux, metrics = self.model_step(batch, step)
        metrics.update(self.policy.update(aux["zs"].detach()))
        self.world_model.update_targets(self.tau)
        return metrics

    def model_loss(self, batch: dict[str, Tensor]) -> Callable[[], tuple[Tensor, dict]]:
        """The world-model loss on a (B, H+1) batch as a closure (TD targets fixed up front)."""
        inputs = self.model_inputs(batch)
        return lambda: self._loss(*inputs)

    def model_inputs(self, batch: dict[str, Tensor]) -> tuple[Tensor, ...]:
        """The world-model loss's arguments from a (B, H+1) batch: the first observation, the
        time-major actions, rewards, terminations, TD targets and validity mask."""
        b = {k: v.to(self.device, non_blocking=True).transpose(0, 1) for k, v in batch.items()}
        obs = b["obs"].float()
        # Window step t+1 holds the action taken in step t, the reward and termination after it.
        action, reward, terminal = b["action"][1:], b["reward"][1:], b["is_terminal"][1:]
        valid = (~b["is_first"][1:]).long().cumprod(0)
        next_z, td_target = self._td_targets(obs[1:], reward, terminal, self.discount)
        return obs[0], action, reward, terminal, next_z, td_target, valid

    def model_step(self, batch: dict[str, Tensor], step: int) -> tuple[dict, dict[str, float]]:
        """One world-model step through the objective; returns the loss aux and metrics."""
        return model_step(self, batch, step)

    # -- measurements ------------------------------------------------------------------------

    @torch.no_grad()
    def state_value(self, obs: np.ndarray, act_state: Any) -> float:
        """Q of the policy prior's mean action at `obs`, averaged over the whole ensemble."""
        wm = self.world_model
        with eval_mode(wm):
            z = wm.encode(torch.as_tensor(obs, device=self.device).float()[None])
            action, _ = wm.pi(z, explore=False)
            value = wm.twohot.mean(wm.q_logits(z, action)).mean(0)
        return float(value[0])

    # -- checkpoints -------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Weights (incl. target Qs), optimizer states and the Q scale."""
        return {
            "wm": self.world_model.state_dict(),
            "wm_opt": self.model_optimizer.state_dict(),
            "pi_opt": self.policy.optimizer.state_dict(),
            "q_scale": self.policy.scale.value.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from `state_dict()`."""
        self.world_model.load_state_dict(state["wm"])
        self.model_optimizer.load_state_dict(state["wm_opt"])
        self.policy.optimizer.load_state_dict(state["pi_opt"])
        self.policy.scale.value.copy_(state["q_scale"])


def stacked_update(agents: list[TDMPCAgent]) -> Any:
    """K agents' updates as one (`seeds=K`): agents/tdmpc_seeds.py."""
    from agents.tdmpc_seeds import StackedTDMPC  # it imports this module

    return StackedTDMPC(agents)


ENTRY = AgentEntry(
    name="tdmpc",
    build=TDMPCAgent,
    config=TDMPCConfig,
    world_model=build_world_model,
    # As the paper's TD-MPC2-SAM (stablegradients/TDMPC2-SAM a5e93b1, "sam fix",
    # tdmpc2/tdmpc2.py): SAM on the encoder and the dynamics; the reward, Q and termination
    # heads step with the plain gradient. Radius 0.001: its launcher (dmc_ablation_simple.sh)
    # keeps 0.001 of the 0.001-0.05 it swept; its config.yaml default is 0.05. On the default
    # run, 0.05 on these groups ended far below ERM (docs/learning-runs.md).
    perturb="encoder+dynamics",
    rho=0.001,
    observations=("state",),
    actions=("continuous",),
    planners=PLANNER_NAMES,
    stacked=stacked_update,
)
