"""Building a run from its config: the schema Hydra composes over, the start-up checks, and
rebuilding a saved run."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from agents import AGENTS, make_agent, typed
from envs import make_env, validate_task
from mbrl_sam.checkpoint import CHECKPOINT, PREVIOUS, load_latest
from mbrl_sam.config import RunConfig, config_dir
from mbrl_sam.errors import ConfigError
from mbrl_sam.objectives import ObjectiveConfig
from mbrl_sam.planners import PlannerConfig
from mbrl_sam.runtime import resolve_device, seed_everything


def register_schemas() -> None:
    """Put the schemas where the YAML in configs/ extends them (`/schema/...`)."""
    store = ConfigStore.instance()
    store.store(name="run", node=RunConfig, group="schema")
    store.store(name="objective", node=ObjectiveConfig, group="schema")
    store.store(name="planner", node=PlannerConfig, group="schema")
    for name, (_, schema) in AGENTS.items():
        store.store(name=name, node=schema, group="schema/agent")


def load_config(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """Compose configs/config.yaml with `key=value` overrides, as train.py would; a bad override
    raises a one-line ConfigError."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        try:
            return compose("config", overrides=list(overrides))
        except Exception as err:  # Hydra's and OmegaConf's errors share no base class
            raise ConfigError(compose_error(err)) from None


def compose_error(err: BaseException) -> str:
    """One line from Hydra's multi-line composition error: the key, the value, what is valid."""
    text, cause = str(err), str(err.__cause__ or "")
    missing = re.search(r"Could not find '([^']+)/([^']+)'", text)
    if missing:
        group, value = missing.groups()
        listed = re.search(r"Available options in '[^']+':\n((?:\t.*\n?)+)", text)
        options = [o.strip() for o in listed.group(1).splitlines()] if listed else []
        return f"{group}={value!r} is not valid; choose one of: {', '.join(options)}"
    merging = re.search(r"Error merging override (\S+?)=(.*)", text)
    if merging:
        key, value = merging.groups()
        return f"{key}={value!r} is not valid: {cause.splitlines()[0] if cause else text}"
    unknown = re.search(r"Could not override '([^']+)'", text)
    if unknown:
        key = unknown.group(1)
        parent, _, leaf = key.rpartition(".")
        base = load_config()
        # The deepest part of the key that exists, and what it holds.
        while parent and not isinstance(OmegaConf.select(base, parent), DictConfig):
            parent = parent.rpartition(".")[0]
        node = OmegaConf.select(base, parent) if parent else base
        where = parent or "the top level"
        return f"{key} is not a config key; the keys of {where} are: {', '.join(sorted(node))}"
    return text.splitlines()[0] if text else type(err).__name__


def validate_config(cfg: DictConfig, run_dir: Path) -> RunConfig:
    """The run config as typed objects, with every range checked; ConfigError naming the first
    invalid value and what would be valid."""
    try:
        run = OmegaConf.to_object(cfg)
    except ConfigError:
        raise
    except Exception as err:  # a missing or mistyped value OmegaConf meets while building
        raise ConfigError(str(err).splitlines()[0]) from None
    validate_task(run.task, run.obs)
    check_param_groups(run)
    checkpoint = Path(run_dir) / CHECKPOINT
    has_checkpoint = checkpoint.exists() or (Path(run_dir) / PREVIOUS).exists()
    if run.resume is True and not has_checkpoint:
        raise ConfigError(f"resume=true but {checkpoint} does not exist; check run_dir={run_dir}")
    if run.resume is False and has_checkpoint:
        raise ConfigError(
            f"run_dir={str(run_dir)!r} already holds a checkpoint and resume=false; "
            "pass resume=auto to continue it or choose another run_dir"
        )
    return run


def world_model_groups(run: RunConfig) -> list[str]:
    """The names of the agent's world-model parameter groups, which objective.perturb and
    measure.groups choose from. Read off a copy built on the meta device (no memory, no values,
    no env: the observation and action sizes do not change the names, the config can)."""
    import torch

    from mbrl_sam.world_models.dreamer import DreamerWorldModel
    from mbrl_sam.world_models.storm import StormWorldModel
    from mbrl_sam.world_models.tdmpc import TDMPCWorldModel

    obs_shape = (3, 64, 64) if run.obs == "pixels" else (1,)
    with torch.device("meta"):
        if run.agent.name == "dreamer":
            model = DreamerWorldModel(obs_shape, 1, run.agent.model)
        elif run.agent.name == "storm":
            model = StormWorldModel(obs_shape, 1, run.agent.model, run.agent.batch_length - 1)
        else:
            model = TDMPCWorldModel(1, 1, run.agent.model)
    return list(model.param_groups())


def check_param_groups(run: RunConfig) -> None:
    """objective.perturb and measure.groups: `all` or '+'-joined names of the agent's world-model
    groups. Checked at start-up: measure.groups was otherwise first read at the first
    measurement, many updates into the run."""
    specs = {"objective.perturb": run.objective.perturb, "measure.groups": run.measure.groups}
    if all(spec == "all" for spec in specs.values()):
        return  # the common case needs no model
    groups = world_model_groups(run)
    for key, spec in specs.items():
        unknown = [name for name in str(spec).split("+") if name not in groups]
        if spec != "all" and unknown:
            raise ConfigError(
                f"{key}={spec!r} is not valid for agent={run.agent.name}: unknown group "
                f"{', '.join(map(repr, unknown))}; use all or '+'-joined names from: "
                f"{', '.join(groups)}"
            )


# Keys renamed since runs were saved: old path -> new path.
RENAMED = {"measure.rho": "measure.sam_radius", "agent.model.rho": "agent.model.horizon_decay"}


def saved_config(path: Path) -> DictConfig:
    """A saved run's config.yaml, its renamed keys under their new names, checked."""
    cfg = OmegaConf.load(path)
    for old, new in RENAMED.items():
        value = OmegaConf.select(cfg, old)
        if value is not None:
            parent, _, leaf = old.rpartition(".")
            OmegaConf.update(cfg, new, value)
            del OmegaConf.select(cfg, parent)[leaf]
    typed(AGENTS[cfg.agent.name][1], cfg.agent)  # raises on a value the schema refuses
    return cfg


def load_saved_run(
    run_dir: Path, device: str | None, seed: int, render: bool = False
) -> tuple[Any, Any, Any, dict]:
    """(config, agent with the checkpoint's weights, a fresh env, the checkpoint's state)."""
    for needed in ("config.yaml", CHECKPOINT):
        found = (
            (run_dir / needed).exists() or needed == CHECKPOINT and (run_dir / PREVIOUS).exists()
        )
        if not found:
            raise ConfigError(f"run_dir={str(run_dir)!r} has no {needed}; is it a training run?")
    cfg = saved_config(run_dir / "config.yaml")
    device = resolve_device(device or cfg.device)
    seed_everything(seed)
    env = make_env(cfg.task, obs=cfg.obs, action_repeat=cfg.action_repeat, seed=seed, render=render)
    agent = make_agent(cfg, env.spec, device)
    state, note = load_latest(run_dir, map_location=device)
    if note:
        print(f"Warning: {note}")
    agent.load_state_dict(state["agent"])
    return cfg, agent, env, state
