"""World-model training objectives, chosen by name from the config."""

from __future__ import annotations

from typing import Any

from mbrl_sam.errors import ConfigError, check_choice
from mbrl_sam.objectives.base import LossClosure, Objective, grad_norm, select_params
from mbrl_sam.objectives.erm import ERM
from mbrl_sam.objectives.sam import ASAM, SAM

OBJECTIVES: dict[str, type[Objective]] = {"erm": ERM, "sam": SAM, "asam": ASAM}

__all__ = ["ASAM", "ERM", "OBJECTIVES", "SAM", "LossClosure", "Objective", "grad_norm"]
__all__ += ["make_objective", "select_params"]


def make_objective(name: str, **options: Any) -> Objective:
    """Build an objective by name with its options (e.g. rho, eta, start_step)."""
    check_choice("objective", name, OBJECTIVES)
    cls = OBJECTIVES[name]
    try:
        return cls(**options)
    except TypeError as err:
        raise ConfigError(f"objective {name!r}: bad options {sorted(options)}: {err}") from None
