"""The agents a run can name. Each agent declares itself once, in an `AgentEntry`: its config
schema, how to build it and its world model, what observations, actions and planners it supports,
and SAM's default radius and world-model groups (the paper's code's). Config composition, the
start-up checks, `make_agent`, the contract tests and the benchmarks all read the entries.

The built-in agents register themselves when `agents` is imported; another agent needs only its
own files and a `register(AgentEntry(...))` call (tests/test_registry.py registers one)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from mbrl_sam.agent import AgentConfig, WorldModelAgent
from mbrl_sam.environment import EnvSpec
from mbrl_sam.errors import ConfigError, check_choice
from mbrl_sam.objectives import ObjectiveConfig
from mbrl_sam.planners import PlannerConfig

OBSERVATIONS = ("state", "pixels")
ACTIONS = ("continuous", "discrete")

# (env spec, agent config, objective, planner, device) -> the agent
AgentFactory = Callable[[EnvSpec, Any, ObjectiveConfig, PlannerConfig, torch.device], Any]
# (observation shape, action dim, agent config) -> its world model, which names the groups
WorldModelFactory = Callable[[tuple[int, ...], int, Any], nn.Module]


@dataclass(frozen=True)
class AgentEntry:
    """One agent: everything the rest of the library needs to know about it, declared once."""

    name: str  # agent=<name>
    build: AgentFactory
    config: type[AgentConfig]  # its schema, holding every default value
    world_model: WorldModelFactory
    # SAM as the paper's code runs it for this agent: the world-model groups perturbed when
    # objective.perturb=auto (`all` or '+'-joined names) and the radius when objective.rho is
    # unset (ASAM has its own).
    perturb: str
    rho: float
    observations: tuple[str, ...] = OBSERVATIONS
    actions: tuple[str, ...] = ACTIONS
    planners: tuple[str, ...] = ("auto", "none")  # planner=<name> values it accepts
    # K built agents (K seeds) -> their updates as one stacked update (`seeds=K`); None: the
    # agent trains one seed per process.
    stacked: Callable[[list[Any]], Any] | None = None
    # Size presets as size -> values under `agent`; None: configs/preset/<name>_<size>.yaml.
    presets: Mapping[str, Mapping[str, Any]] | None = field(default=None)

    def __post_init__(self) -> None:
        for key, values, valid in (
            ("observations", self.observations, OBSERVATIONS),
            ("actions", self.actions, ACTIONS),
        ):
            if not values or any(v not in valid for v in values):
                raise ValueError(f"agent {self.name!r}: {key}={values!r}; choose from {valid}")


AGENTS: dict[str, AgentEntry] = {}


def register(entry: AgentEntry) -> AgentEntry:
    """Make `agent=<entry.name>` available (a later entry of the same name replaces it)."""
    AGENTS[entry.name] = entry
    return entry


def agent_entry(name: str) -> AgentEntry:
    """The registered agent called `name`; ConfigError listing the registered ones."""
    check_choice("agent", name, sorted(AGENTS))
    return AGENTS[name]


def typed(schema: type, node: Any) -> Any:
    """`node` (a config node, or a saved run's plain one) as a checked `schema` object."""
    if isinstance(node, schema):
        return node
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), node))


def resolve_objective(entry: AgentEntry, objective: Any) -> dict[str, Any]:
    """objective.perturb and objective.rho with the agent's defaults in place of `auto` and of an
    unset radius."""
    perturb = entry.perturb if objective.perturb == "auto" else objective.perturb
    rho = entry.rho if objective.rho is None else objective.rho
    return {"perturb": perturb, "rho": rho}


def world_model_groups(entry: AgentEntry, cfg: Any, obs: str) -> list[str]:
    """The names of the agent's world-model parameter groups for this config, read off a copy
    built on the meta device (no memory, no values, no env: the observation and action sizes do
    not change the names; the config can)."""
    obs_shape = (3, 64, 64) if obs == "pixels" else (1,)
    with torch.device("meta"):
        model = entry.world_model(obs_shape, 1, typed(entry.config, cfg))
    return list(model.param_groups())


def check_supports(
    entry: AgentEntry,
    obs: str | None = None,
    planner: str | None = None,
    discrete: bool | None = None,
) -> None:
    """ConfigError unless the agent takes these observations, planner and actions (each checked
    when given: the actions are known only once the env is made)."""
    if obs is not None and obs not in entry.observations:
        raise ConfigError(
            f"obs={obs!r} is not valid for agent={entry.name}; it takes: "
            f"{', '.join(entry.observations)}{_others('observations', obs)}"
        )
    if planner is not None and planner not in entry.planners:
        raise ConfigError(
            f"planner={planner!r} is not valid for agent={entry.name}; choose one of: "
            f"{', '.join(entry.planners)}"
        )
    if discrete is None:
        return
    kind = ACTIONS[int(discrete)]
    if kind not in entry.actions:
        raise ConfigError(
            f"agent={entry.name} needs {' or '.join(entry.actions)} actions and this task's are "
            f"{kind}{_others('actions', kind)}"
        )
    if discrete and planner not in (None, "auto", "none"):
        raise ConfigError(
            f"planner={planner} needs continuous actions; this task's are discrete (use "
            "planner=none)"
        )


def _others(key: str, value: str) -> str:
    """'; agents that take it: ...' for an observation or action kind."""
    takers = [e.name for e in AGENTS.values() if value in getattr(e, key)]
    return f"; agents that do: {', '.join(takers)}" if takers else ""


def make_agent(cfg: Any, spec: EnvSpec, device: torch.device | str) -> WorldModelAgent:
    """Build the agent that `cfg.agent.name` names for an environment with `spec`; `cfg` is a
    run config, typed (`RunConfig`) or composed."""
    entry = agent_entry(cfg.agent.name)
    objective = typed(ObjectiveConfig, cfg.objective)
    objective = replace(objective, **resolve_objective(entry, objective))
    planner = typed(PlannerConfig, cfg.planner)
    obs = "pixels" if len(spec.obs_shape) == 3 else "state"
    check_supports(entry, obs, planner.name, spec.discrete)
    agent_cfg = typed(entry.config, cfg.agent)
    return entry.build(spec, agent_cfg, objective, planner, torch.device(device))
