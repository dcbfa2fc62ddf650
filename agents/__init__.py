"""Complete agents composed from the library, built by name from the config."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import OmegaConf

from envs.base import EnvSpec
from mbrl_sam.errors import check_choice
from mbrl_sam.objectives import make_objective


def _build_dreamer(cfg: Any, spec: EnvSpec, device: torch.device) -> Any:
    from agents.dreamer import DreamerAgent

    return DreamerAgent(
        spec,
        model=OmegaConf.to_container(cfg.agent.model, resolve=True),
        behavior=OmegaConf.to_container(cfg.agent.behavior, resolve=True),
        model_opt=OmegaConf.to_container(cfg.agent.model_opt, resolve=True),
        objective=build_objective(cfg.objective),
        perturb=cfg.objective.perturb,
        device=device,
    )


AGENTS = {"dreamer": _build_dreamer}


def build_objective(objective_cfg: Any) -> Any:
    """The world-model objective named in the config, with its options."""
    options = {k: v for k, v in dict(objective_cfg).items() if k not in ("name", "perturb")}
    return make_objective(objective_cfg.name, **options)


def make_agent(cfg: Any, spec: EnvSpec, device: torch.device) -> Any:
    """Build the agent named by `cfg.agent.name` for an environment with `spec`."""
    check_choice("agent", cfg.agent.name, AGENTS)
    return AGENTS[cfg.agent.name](cfg, spec, device)
