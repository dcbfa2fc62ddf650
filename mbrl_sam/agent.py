"""The agent interfaces: what the training loop needs (`Agent`) and what evaluation and the
flatness measurements need on top (`WorldModelAgent`). Every agent in `agents/` satisfies both."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from omegaconf import MISSING
from torch import Tensor, nn

from mbrl_sam.errors import check_int
from mbrl_sam.imagination import EpisodeModel
from mbrl_sam.objectives import LossClosure


@dataclass
class AgentConfig:
    """What every agent's config holds, and what the training loop reads from it."""

    name: str = MISSING
    batch_size: int = MISSING
    batch_length: int = MISSING  # steps per replayed sequence
    prefill: Any = MISSING  # env steps of random actions before learning, or auto
    catch_up: bool = MISSING  # a burst of updates for the prefill's steps when learning starts
    train_ratio: float = MISSING  # replayed steps per agent step

    def __post_init__(self) -> None:
        check_int("agent.batch_size", self.batch_size, 1)
        check_int("agent.batch_length", self.batch_length, 2)


@runtime_checkable
class Agent(Protocol):
    """What the training loop needs from an agent."""

    def act(
        self, obs: np.ndarray, state: Any, is_first: bool, explore: bool
    ) -> tuple[np.ndarray, Any]:
        """The action for `obs` and the recurrent or planner state to pass to the next call."""
        ...

    def update(self, batch: dict[str, Tensor], step: int) -> dict[str, float]:
        """Learn from one replayed batch; return the scalars to log."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything a checkpoint needs to resume the agent (networks, optimizers, scales)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from `state_dict()`."""
        ...


@runtime_checkable
class WorldModel(EpisodeModel, Protocol):
    """A learned latent model (it imagines, and follows real episodes) whose parameters come in
    named groups: what SAM may perturb and sharpness may be measured over."""

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """The world model's parameters by group name (e.g. encoder, dynamics)."""
        ...


@runtime_checkable
class ModelOptimizer(Protocol):
    """What training and the flatness measurements need from the world model's optimizer."""

    def step(
        self, closure: LossClosure, step: int = 0, commit: Callable[[Any], None] | None = None
    ) -> tuple[Any, dict[str, float]]:
        """One update from a pure loss closure; `commit(aux)` applies its state changes once."""
        ...

    def learning_rate(self) -> float:
        """The largest step size any parameter takes (the stability limits are stated in it)."""
        ...

    def preconditioner(self, params: list[nn.Parameter]) -> tuple[Tensor, float] | None:
        """P^-1/2 over `params` as a flat vector, in units of `learning_rate()`, and beta1: the
        geometry Adam steps in; None before its first step."""
        ...


@runtime_checkable
class WorldModelAgent(Agent, Protocol):
    """An agent with a world model: what value gap, model error and sharpness measure."""

    world_model: WorldModel
    model_optimizer: ModelOptimizer  # steps the world model through its objective
    discount: float  # the discount its values are defined with

    def model_loss(self, batch: dict[str, Tensor]) -> LossClosure:
        """The world-model loss on a replayed batch as a pure closure: (loss, aux)."""
        ...

    def state_value(self, obs: np.ndarray, act_state: Any) -> float:
        """The agent's own value estimate of the state it is in."""
        ...


def model_step(agent: WorldModelAgent, batch: dict[str, Tensor], step: int) -> tuple[Any, dict]:
    """One world-model step through the agent's objective: the loss aux and `model/` metrics."""
    aux, opt_metrics = agent.model_optimizer.step(agent.model_loss(batch), step)
    metrics = {f"model/{k}": float(v) for k, v in aux["metrics"].items()}
    metrics.update({f"model/{k}": v for k, v in opt_metrics.items()})
    return aux, metrics
