"""Complete agents composed from the library, built by name from the config."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import OmegaConf

from envs.base import EnvSpec
from mbrl_sam.agent import WorldModelAgent
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
        planner=OmegaConf.to_container(cfg.planner, resolve=True),
    )


def _build_tdmpc(cfg: Any, spec: EnvSpec, device: torch.device) -> Any:
    from agents.tdmpc import TDMPCAgent

    a = OmegaConf.to_container(cfg.agent, resolve=True)
    return TDMPCAgent(
        spec,
        model=a["model"],
        model_opt=a["model_opt"],
        pi_opt=a["pi_opt"],
        planner=OmegaConf.to_container(cfg.planner, resolve=True),
        objective=build_objective(cfg.objective),
        perturb=cfg.objective.perturb,
        device=device,
        discount=a["discount"],
        tau=a["tau"],
        entropy_coef=a["entropy_coef"],
        scale_rate=a["scale_rate"],
        compile=a["compile"],
    )


PLANNER_CHOICES = ("auto", "none", "mppi", "cem")

AGENTS = {"dreamer": _build_dreamer, "tdmpc": _build_tdmpc}


def build_objective(objective_cfg: Any) -> Any:
    """The world-model objective named in the config, with its options."""
    options = {k: v for k, v in dict(objective_cfg).items() if k not in ("name", "perturb")}
    return make_objective(objective_cfg.name, **options)


def make_agent(cfg: Any, spec: EnvSpec, device: torch.device) -> WorldModelAgent:
    """Build the agent named by `cfg.agent.name` for an environment with `spec`."""
    check_choice("agent", cfg.agent.name, AGENTS)
    return AGENTS[cfg.agent.name](cfg, spec, device)
