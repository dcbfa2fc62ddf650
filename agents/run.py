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
from mbrl_sam.checkpoint import CHECKPOINT, load_checkpoint
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
    checkpoint = Path(run_dir) / CHECKPOINT
    if run.resume is True and not checkpoint.exists():
        raise ConfigError(f"resume=true but {checkpoint} does not exist; check run_dir={run_dir}")
    if run.resume is False and checkpoint.exists():
        raise ConfigError(
            f"run_dir={str(run_dir)!r} already holds a checkpoint and resume=false; "
            "pass resume=auto to continue it or choose another run_dir"
        )
    return run


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
        if not (run_dir / needed).exists():
            raise ConfigError(f"run_dir={str(run_dir)!r} has no {needed}; is it a training run?")
    cfg = saved_config(run_dir / "config.yaml")
    device = resolve_device(device or cfg.device)
    seed_everything(seed)
    env = make_env(cfg.task, obs=cfg.obs, action_repeat=cfg.action_repeat, seed=seed, render=render)
    agent = make_agent(cfg, env.spec, device)
    state = load_checkpoint(run_dir / CHECKPOINT, map_location=device)
    agent.load_state_dict(state["agent"])
    return cfg, agent, env, state
