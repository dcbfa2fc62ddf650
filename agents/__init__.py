"""Complete agents composed from the library, built by name from the config."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import OmegaConf

from agents.dreamer import DreamerAgent, DreamerConfig
from agents.storm import StormAgent, StormConfig
from agents.tdmpc import TDMPCAgent, TDMPCConfig
from envs.base import EnvSpec
from mbrl_sam.agent import WorldModelAgent
from mbrl_sam.errors import check_choice
from mbrl_sam.objectives import ObjectiveConfig
from mbrl_sam.planners import PlannerConfig

# name -> (agent class, its config schema)
AGENTS: dict[str, tuple[type, type]] = {
    "dreamer": (DreamerAgent, DreamerConfig),
    "tdmpc": (TDMPCAgent, TDMPCConfig),
    "storm": (StormAgent, StormConfig),
}


def typed(schema: type, node: Any) -> Any:
    """`node` (a config node, or a saved run's plain one) as a checked `schema` object."""
    if isinstance(node, schema):
        return node
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), node))


def make_agent(cfg: Any, spec: EnvSpec, device: torch.device) -> WorldModelAgent:
    """Build the agent named by `cfg.agent.name` for an environment with `spec`."""
    check_choice("agent", cfg.agent.name, AGENTS)
    cls, schema = AGENTS[cfg.agent.name]
    objective = typed(ObjectiveConfig, cfg.objective)
    return cls(spec, typed(schema, cfg.agent), objective, typed(PlannerConfig, cfg.planner), device)
