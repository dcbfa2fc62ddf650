"""Sampling planners over action sequences, behind one interface."""

from __future__ import annotations

import torch

from mbrl_sam.errors import check_choice
from mbrl_sam.planners.base import PLANNER_NAMES, Plan, Planner, PlannerConfig, Score
from mbrl_sam.planners.cem import CEM
from mbrl_sam.planners.mppi import MPPI

PLANNERS: dict[str, type[Planner]] = {"mppi": MPPI, "cem": CEM}


def make_planner(name: str, action_dim: int, cfg: PlannerConfig, device: torch.device) -> Planner:
    """The planner called `name`."""
    check_choice("planner", name, PLANNERS)
    return PLANNERS[name](action_dim, cfg, device)


__all__ = [
    "CEM",
    "MPPI",
    "PLANNER_NAMES",
    "PLANNERS",
    "Plan",
    "Planner",
    "PlannerConfig",
    "Score",
    "make_planner",
]
