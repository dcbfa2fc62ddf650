"""Adding an agent is new code plus one registry entry: an agent defined here, in the test,
registers itself and trains through train.py's path, touching no library file."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import Tensor, nn

import train
from agents import AGENTS, make_agent
from agents.imagination import ImaginationAgent
from agents.run import load_config, validate_config
from mbrl_sam.agent import AgentConfig
from mbrl_sam.behavior.actor_critic import ActorCritic, ActorCriticConfig
from mbrl_sam.environment import EnvSpec
from mbrl_sam.errors import ConfigError
from mbrl_sam.nets import MLP
from mbrl_sam.objectives import ObjectiveConfig
from mbrl_sam.optim import OptimizerConfig, world_model_optimizer
from mbrl_sam.planners import PlannerConfig
from mbrl_sam.registry import AgentEntry, agent_entry, register, world_model_groups
from tests.test_agent import SPEC, check_contract


@dataclass
class ToyModelConfig:
    """A deterministic latent model's width."""

    units: int = 32


@dataclass
class ToyConfig(AgentConfig):
    """`agent=toy`: every value here, as for the built-in agents."""

    name: str = "toy"
    batch_size: int = 8
    batch_length: int = 8
    prefill: Any = 100
    catch_up: bool = False
    train_ratio: float = 64
    model: ToyModelConfig = field(default_factory=ToyModelConfig)
    model_opt: OptimizerConfig = field(
        default_factory=lambda: OptimizerConfig(lr=1e-3, eps=1e-8, clip=100.0)
    )
    behavior: ActorCriticConfig = field(
        default_factory=lambda: ActorCriticConfig(units=32, layers=1, horizon=5)
    )


class ToyWorldModel(nn.Module):
    """z = encoder(obs); z' = dynamics(z, a); reward and continue read from z'; a decoder keeps
    z informative."""

    def __init__(self, obs_dim: int, action_dim: int, cfg: ToyModelConfig) -> None:
        super().__init__()
        units = cfg.units
        self.encoder = MLP(obs_dim, units, 1, units)
        self.dynamics = MLP(units + action_dim, units, 1, units)
        self.decoder = MLP(units, units, 1, obs_dim)
        self.reward_head = MLP(units, units, 1, 1)
        self.continue_head = MLP(units, units, 1, 1)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Named groups, for SAM's perturbation."""
        parts = ("encoder", "dynamics", "decoder", "reward_head", "continue_head")
        names = ("encoder", "dynamics", "decoder", "reward", "continue")
        return {n: list(getattr(self, p).parameters()) for n, p in zip(names, parts)}

    def features(self, state: Tensor) -> Tensor:
        return state

    def imagine_step(self, state: Tensor, action: Tensor) -> Tensor:
        return self.dynamics(torch.cat([state, action], -1))

    def outcomes(self, feat: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        return self.reward_head(feat[1:]).squeeze(-1), torch.sigmoid(
            self.continue_head(feat[1:]).squeeze(-1)
        )

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict]:
        z = self.encoder(batch["obs"].float())
        pred = self.imagine_step(z[:, :-1], batch["action"][:, 1:])
        valid = (~batch["is_first"][:, 1:]).float()
        consistency = ((pred - z[:, 1:].detach()).pow(2).mean(-1) * valid).mean()
        reward, cont = self.outcomes(torch.stack([z[:, :-1], pred]), batch["action"][:, 1:])
        rew = ((reward[0] - batch["reward"][:, 1:]).pow(2) * valid).mean()
        con = F.binary_cross_entropy(cont[0], (~batch["is_terminal"][:, 1:]).float())
        rec = (self.decoder(z) - batch["obs"].float()).pow(2).mean()
        loss = consistency + rew + con + rec
        return loss, {"metrics": {"loss": loss.detach()}, "post": z.detach()}

    def observe_episode(self, episode: dict[str, Tensor]) -> Tensor:
        return self.encoder(episode["obs"].float())

    def start_states(self, posterior: Tensor, episode: dict[str, Tensor], starts: Tensor) -> Tensor:
        return posterior[starts]

    def observation_error(self, feat: Tensor, obs: Tensor) -> Tensor:
        return (self.decoder(feat) - obs.float()).pow(2).mean(-1)


def toy_world_model(obs_shape: tuple[int, ...], action_dim: int, cfg: ToyConfig) -> ToyWorldModel:
    return ToyWorldModel(obs_shape[0], action_dim, cfg.model)


class ToyAgent(ImaginationAgent):
    """Acts with an actor on the encoding; learns model, then behaviour, per update."""

    def __init__(
        self,
        spec: EnvSpec,
        cfg: ToyConfig,
        objective: ObjectiveConfig,
        planner: PlannerConfig,
        device: torch.device,
    ) -> None:
        self.spec, self.cfg, self.device = spec, cfg, device
        self.world_model = toy_world_model(spec.obs_shape, spec.action_dim, cfg).to(device)
        units = cfg.model.units
        self.ac = ActorCritic(units, spec.action_dim, spec.discrete, cfg.behavior).to(device)
        self.model_optimizer = world_model_optimizer(self.world_model, cfg.model_opt, objective)

    @torch.no_grad()
    def act(self, obs: np.ndarray, state: Any, is_first: bool, explore: bool) -> tuple:
        z = self.world_model.encoder(self._obs_tensor(obs)[None])
        dist = self.ac.actor(z)
        action = dist.clip(dist.sample()) if explore else dist.mode()
        return action[0].cpu().numpy(), z

    def update(self, batch: dict[str, Tensor], step: int) -> dict[str, float]:
        batch = {k: v.to(self.device) for k, v in batch.items()}
        aux, metrics = self.model_step(batch, step)
        start_cont = (~batch["is_terminal"]).float().flatten()
        behavior = self.ac.update(self.world_model, aux["post"].flatten(0, 1), start_cont)
        return {**metrics, **{f"behavior/{k}": v for k, v in behavior.items()}}

    @torch.no_grad()
    def state_value(self, obs: np.ndarray, act_state: Any) -> float:
        return float(self.ac.value(act_state)[0])


TOY = AgentEntry(
    name="toy",
    build=ToyAgent,
    config=ToyConfig,
    world_model=toy_world_model,
    perturb="encoder+dynamics",
    rho=0.02,
    observations=("state",),
    presets={"tiny": {}},
)


@pytest.fixture
def toy_registered():
    register(TOY)
    yield TOY
    AGENTS.pop("toy")


def test_an_agent_defined_outside_the_library_trains_through_train_py(toy_registered, tmp_path):
    overrides = ["agent=toy", "size=tiny", "task=gym/Pendulum-v1", "objective=sam"]
    overrides += ["steps=300", "eval_every=150", "eval_episodes=1", "log_every=100"]
    cfg = load_config([*overrides, "progress=false", f"run_dir={tmp_path}"])
    result = train.run(cfg, tmp_path)
    assert np.isfinite(result["eval_return"])
    saved = OmegaConf.load(tmp_path / "config.yaml")
    assert saved.agent.name == "toy" and saved.objective.perturb == "encoder+dynamics"
    assert saved.objective.rho == 0.02  # the entry's defaults, resolved and saved
    evals = [json.loads(line) for line in (tmp_path / "evals.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [0, 150, 300]
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    trained = [m for m in metrics if "train/model/loss" in m]
    assert trained and "train/model/sharpness" in trained[-1]  # SAM stepped the toy model
    assert (tmp_path / "checkpoint.pt").exists()


def test_the_registered_agent_keeps_the_contract_and_its_checks(toy_registered):
    cfg = load_config(["agent=toy", "size=tiny"])
    check_contract(make_agent(cfg, SPEC, torch.device("cpu")), cfg, SPEC)
    run = validate_config(cfg, Path("/nonexistent"))
    assert world_model_groups(agent_entry("toy"), run.agent, run.obs) == [
        "encoder",
        "dynamics",
        "decoder",
        "reward",
        "continue",
    ]
    with pytest.raises(ConfigError, match="obs='pixels' is not valid for agent=toy"):
        pixels = load_config(["agent=toy", "task=dmc/cartpole-swingup", "obs=pixels"])
        validate_config(pixels, Path("/nonexistent"))
    with pytest.raises(ConfigError, match="planner='mppi' is not valid for agent=toy"):
        validate_config(load_config(["agent=toy", "planner=mppi"]), Path("/nonexistent"))
    with pytest.raises(ConfigError, match="objective.perturb='policy'"):
        validate_config(load_config(["agent=toy", "objective.perturb=policy"]), Path("/x"))


def test_an_unregistered_agent_is_not_offered(toy_registered):
    AGENTS.pop("toy")
    with pytest.raises(ConfigError, match="agent='toy' is not valid; choose one of: dreamer"):
        load_config(["agent=toy"])
    register(TOY)  # for the fixture to remove
