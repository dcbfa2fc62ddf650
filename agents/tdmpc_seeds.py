"""K TD-MPC agents (K seeds of one config) updated as one: `python train.py seeds=K`.

Each agent keeps acting, evaluating and checkpointing alone; their weights are slices of one
stack (`mbrl_sam.seed_stack`), and an update runs TDMPCAgent.update's three steps (model
through the objective, policy prior, target-Q EMA) for all seeds in single vmapped calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from agents.tdmpc import TDMPCAgent
from mbrl_sam import seeded
from mbrl_sam.seed_stack import SeedStack, StackedOptimizer


class StackedTDMPC:
    """The updates of K TD-MPC agents as one stacked update."""

    def __init__(self, agents: Sequence[TDMPCAgent]) -> None:
        """Stacks the agents' weights, optimizer states and Q scales (each agent's become views
        of its slice); build it after any checkpoint is loaded into them."""
        self.agents = list(agents)
        first = self.agents[0]
        self.stack = SeedStack([a.world_model for a in self.agents])
        self.model_optimizer = StackedOptimizer(
            [a.model_optimizer for a in self.agents], self.stack
        )
        self.policy_optimizer = StackedOptimizer(
            [a.policy.optimizer for a in self.agents], self.stack
        )
        self.scale = torch.stack([a.policy.scale.value for a in self.agents])
        for k, a in enumerate(self.agents):
            a.policy.scale.value = self.scale[k]
        wm = first.world_model
        self.critic = list(wm.qs.parameters())
        self.targets = self.stack.stacked(list(wm.target_qs.parameters()))
        self.sources = self.stack.stacked(self.critic)

    def update(
        self, batches: Sequence[dict[str, Tensor]], step: int, generators: Sequence[torch.Generator]
    ) -> list[dict[str, float]]:
        """One update of every seed on its own batch, drawing from its own generator; each
        seed's metrics, as TDMPCAgent.update returns them."""
        with seeded.generators_in_use(generators):
            return self._update(batches, step)

    def _update(self, batches: Sequence[dict[str, Tensor]], step: int) -> list[dict[str, float]]:
        first, stack = self.agents[0], self.stack
        batch = {key: torch.stack([b[key] for b in batches]) for key in batches[0]}
        inputs = stack.call(first.model_inputs, batch)
        aux, model_metrics = self.model_optimizer.step(
            lambda: stack.call(first.world_model.loss, *inputs), step
        )
        zs = aux["zs"].detach()
        scale = self.scale

        def policy_loss() -> tuple[Tensor, dict]:
            return stack.call(first.policy.loss_on, zs, scale, frozen=self.critic)

        def commit(pi_aux: dict) -> None:
            stepped = self.policy_optimizer.stacked.stepped
            scale.copy_(torch.where(stepped, pi_aux["q_scale"], scale))

        pi_aux, pi_metrics = self.policy_optimizer.step(policy_loss, commit=commit)
        with torch.no_grad():
            for target, source in zip(self.targets, self.sources):
                target.lerp_(source, first.tau)
        per_seed: dict[str, Any] = {f"model/{k}": v for k, v in aux["metrics"].items()}
        per_seed.update({f"model/{k}": v for k, v in model_metrics.items()})
        per_seed.update({f"policy/{k}": v for k, v in pi_aux.items()})
        per_seed["policy/grad_norm"] = pi_metrics["final_grad_norm"]
        return split_seeds(per_seed, len(self.agents))


def split_seeds(metrics: dict[str, Any], seeds: int) -> list[dict[str, float]]:
    """Per-seed metric dicts from values that are one per seed (tensors, lists) or shared."""
    out: list[dict[str, float]] = [{} for _ in range(seeds)]
    for key, value in metrics.items():
        if isinstance(value, Tensor):
            value = value.detach().tolist()
        for k in range(seeds):
            out[k][key] = float(value[k] if isinstance(value, list) else value)
    return out
