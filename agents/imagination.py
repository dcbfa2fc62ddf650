"""What agents that learn their behaviour in imagination (Dreamer, STORM) share: the model step
through the objective, the discount, and checkpoints of world model, actor-critic and
optimizers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mbrl_sam.agent import model_step
from mbrl_sam.behavior.actor_critic import ActorCritic
from mbrl_sam.optim import ClosureOptimizer


class ImaginationAgent:
    """A world model stepped by `model_optimizer` and an actor-critic `ac` trained in it.

    Subclasses set `world_model`, `ac`, `model_optimizer` and `device` (and may set `loss_fn`,
    e.g. to a compiled loss) and add acting and the update.
    """

    world_model: nn.Module
    ac: ActorCritic
    model_optimizer: ClosureOptimizer
    device: torch.device
    loss_fn: Callable[[dict[str, Tensor]], tuple[Tensor, dict]] | None = None

    def _obs_tensor(self, obs: np.ndarray | Tensor) -> Tensor:
        """Observations on the device: pixels stay uint8, vectors become float32."""
        obs = torch.as_tensor(obs, device=self.device)
        return obs if obs.dtype == torch.uint8 else obs.float()

    def model_loss(self, batch: dict[str, Tensor]) -> Callable[[], tuple[Tensor, dict]]:
        """The world-model loss on a (B, T) batch as a closure."""
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        loss = self.loss_fn or self.world_model.loss
        return lambda: loss(batch)

    def model_step(self, batch: dict[str, Tensor], step: int) -> tuple[dict, dict[str, float]]:
        """One world-model step through the objective; returns the loss aux and metrics."""
        return model_step(self, batch, step)

    @property
    def discount(self) -> float:
        """The discount the critic's values are defined with."""
        return self.ac.discount

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume learning: weights and optimizer states."""
        return {
            "wm": self.world_model.state_dict(),
            "ac": self.ac.state_dict(),
            "wm_opt": self.model_optimizer.state_dict(),
            "ac_opt": self.ac.optimizer_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from `state_dict()`."""
        self.world_model.load_state_dict(state["wm"])
        self.ac.load_state_dict(state["ac"])
        self.model_optimizer.load_state_dict(state["wm_opt"])
        self.ac.load_optimizer_state(state["ac_opt"])
