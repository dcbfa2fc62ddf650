"""World-model training objectives, chosen by name from the config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mbrl_sam.errors import (
    ConfigError,
    check_choice,
    check_int,
    check_nonnegative,
    check_positive,
)
from mbrl_sam.objectives.base import LossClosure, Objective, grad_norm, select_params
from mbrl_sam.objectives.erm import ERM
from mbrl_sam.objectives.sam import ASAM, SAM

OBJECTIVES: dict[str, type[Objective]] = {"erm": ERM, "sam": SAM, "asam": ASAM}

__all__ = ["ASAM", "ERM", "OBJECTIVES", "SAM", "LossClosure", "Objective", "grad_norm"]
__all__ += [
    "ASAMConfig",
    "OBJECTIVE_CONFIGS",
    "ObjectiveConfig",
    "build_objective",
    "make_objective",
]
__all__ += ["select_params"]


def make_objective(name: str, **options: Any) -> Objective:
    """Build an objective by name with its options (e.g. rho, eta, start_step, every)."""
    check_choice("objective", name, OBJECTIVES)
    cls = OBJECTIVES[name]
    try:
        return cls(**options)
    except TypeError as err:
        raise ConfigError(f"objective {name!r}: bad options {sorted(options)}: {err}") from None


@dataclass
class ObjectiveConfig:
    """The world-model objective (`objective=erm|sam|asam`); SAM's radius and groups default to
    each agent's (its registry entry: the paper's code's settings for that agent)."""

    name: str = "erm"  # erm | sam | asam
    # sam, asam: the radius of the ascent step; unset: the agent's, as the paper's code (TD-MPC
    # 0.001, Dreamer and STORM 0.05)
    rho: float | None = None
    eta: float = 0.01  # asam: added to |w| in the weight scaling
    start_step: int = 0  # sam, asam: updates before which they act as erm
    # sam, asam: full SAM on every `every`-th update from start_step; the ones in between reuse
    # its sharpness direction (LookSAM, Liu et al. 2022) at one pass's cost. 1: SAM every update.
    every: int = 1
    alpha: float = 0.7  # sam, asam with every > 1: weight of the reused direction (LookSAM's)
    # The world-model groups perturbed (the others take the plain gradient): auto (the agent's
    # own, as the paper's code: TD-MPC encoder+dynamics, Dreamer and STORM all), all, or
    # '+'-joined group names.
    perturb: str = "auto"

    def __post_init__(self) -> None:
        check_choice("objective", self.name, OBJECTIVES)
        if self.name != "erm" and self.rho is not None:
            check_positive("objective.rho", self.rho)
            check_int("objective.start_step", self.start_step, 0)
        # Checked for erm too (which ignores them): a bad value is a typo whatever the objective.
        check_int("objective.every", self.every, 1)
        check_nonnegative("objective.alpha", self.alpha)
        if self.name == "asam" and not self.eta >= 0:
            raise ConfigError(f"objective.eta={self.eta!r} is not valid; it must be >= 0")


@dataclass
class ASAMConfig(ObjectiveConfig):
    """`objective=asam`: its radius is in the weight-scaled geometry, so larger (ASAM's paper,
    Kwon et al. 2021, uses 0.5-2.0 where SAM uses 0.05-0.1)."""

    name: str = "asam"
    rho: float = 0.5


# objective=<name> -> its config node (Hydra's `objective` group)
OBJECTIVE_CONFIGS: dict[str, ObjectiveConfig] = {
    "erm": ObjectiveConfig(name="erm"),
    "sam": ObjectiveConfig(name="sam"),
    "asam": ASAMConfig(),
}


def build_objective(cfg: ObjectiveConfig) -> Objective:
    """The objective a config names, with the options it takes."""
    sam = ("rho", "start_step", "every", "alpha")
    options = {"sam": sam, "asam": (*sam, "eta")}
    return make_objective(cfg.name, **{k: getattr(cfg, k) for k in options.get(cfg.name, ())})
