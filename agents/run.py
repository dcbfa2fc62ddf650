"""Building a run from its config: the schema Hydra composes over, the start-up checks, and
rebuilding a saved run."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from agents import AGENTS, make_agent
from envs import make_env, validate_task
from mbrl_sam.checkpoint import CHECKPOINT, PREVIOUS, load_latest
from mbrl_sam.config import RunConfig, config_dir
from mbrl_sam.errors import ConfigError
from mbrl_sam.evaluation.study import StudyRun, study_run
from mbrl_sam.objectives import OBJECTIVE_CONFIGS
from mbrl_sam.planners import PLANNER_NAMES, PlannerConfig
from mbrl_sam.registry import (
    AgentEntry,
    agent_entry,
    check_supports,
    resolve_objective,
    typed,
    world_model_groups,
)
from mbrl_sam.runtime import resolve_device, seed_everything


def register_schemas() -> None:
    """Give Hydra the schemas, which hold every default: the run's (configs/config.yaml extends
    it) and, as config groups, each registered agent, objective and planner; agents that bring
    their size presets as data add them to the `preset` group."""
    store = ConfigStore.instance()
    for group in ("agent", "preset"):  # agents registered since, or no longer, are seen anew
        store.repo.pop(group, None)
    store.store(name="run", node=RunConfig, group="schema")
    for name, objective in OBJECTIVE_CONFIGS.items():
        store.store(name=name, node=objective, group="objective")
    for name in PLANNER_NAMES:
        store.store(name=name, node=PlannerConfig(name=name), group="planner")
    for name, entry in AGENTS.items():
        store.store(name=name, node=entry.config, group="agent")
        for size, values in (entry.presets or {}).items():
            store.store(name=f"{name}_{size}", node=dict(values), group="preset", package="agent")


def agent_sizes(name: str) -> list[str]:
    """The sizes `size=` takes for agent `name` (its presets), smallest world model first."""
    entry = agent_entry(name)
    if entry.presets is not None:
        sizes = list(entry.presets)
    else:
        sizes = [p.stem[len(name) + 1 :] for p in config_dir().glob(f"preset/{name}_*.yaml")]

    def params(size: str) -> int:
        cfg = load_config([f"agent={name}", f"size={size}"])
        with torch.device("meta"):
            model = entry.world_model((3, 64, 64), 4, typed(entry.config, cfg.agent))
        return sum(p.numel() for p in model.parameters())

    return sorted(sizes, key=params)


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
        agent = max((a for a in AGENTS if value.startswith(f"{a}_")), key=len, default=None)
        if group == "preset" and agent is not None:  # presets are named <agent>_<size>
            size = value[len(agent) + 1 :]
            sizes = [o[len(agent) + 1 :] for o in options if o.startswith(f"{agent}_")]
            listed = ", ".join(sizes)
            return f"size={size!r} is not valid for agent={agent}; choose one of: {listed}"
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
    """The run config as typed objects, with every range checked and the agent's SAM defaults
    in place of `objective.perturb=auto` and an unset `objective.rho` (in `cfg` too, so the
    saved config names them); ConfigError naming the first invalid value and what would be
    valid."""
    entry = agent_entry(cfg.agent.name)
    for key, value in resolve_objective(entry, cfg.objective).items():
        cfg.objective[key] = value
    try:
        run = OmegaConf.to_object(cfg)
    except ConfigError:
        raise
    except Exception as err:  # a missing or mistyped value OmegaConf meets while building
        raise ConfigError(str(err).splitlines()[0]) from None
    validate_task(run.task, run.obs)
    check_supports(entry, obs=run.obs, planner=run.planner.name)
    check_param_groups(run)
    check_seeds(entry, run)
    checkpoint = Path(run_dir) / CHECKPOINT
    dirs = [Path(run_dir)] if run.seeds == 1 else seed_dirs(Path(run_dir), run.seed, run.seeds)
    has_checkpoint = any((d / CHECKPOINT).exists() or (d / PREVIOUS).exists() for d in dirs)
    if run.resume is True and not has_checkpoint:
        raise ConfigError(f"resume=true but {checkpoint} does not exist; check run_dir={run_dir}")
    if run.resume is False and has_checkpoint:
        raise ConfigError(
            f"run_dir={str(run_dir)!r} already holds a checkpoint and resume=false; "
            "pass resume=auto to continue it or choose another run_dir"
        )
    return run


def study_identity(cfg: DictConfig) -> StudyRun:
    """The run's identity in a study: its resolved config next to the defaults of its agent,
    size and task (validate_config first, so SAM's radius and groups are resolved)."""
    base = [f"agent={cfg.agent.name}", f"size={cfg.size.name}", f"task={cfg.task}"]
    defaults = OmegaConf.to_container(load_config(base), resolve=True)
    return study_run(OmegaConf.to_container(cfg, resolve=True), defaults)


def study_folder(run: RunConfig) -> Path:
    """Where the run's study keeps its CSVs: <results_dir>/<study>."""
    root = Path(run.results_dir) if run.results_dir else config_dir().parent / "results"
    return root.expanduser() / str(run.study)


def seed_dirs(run_dir: Path, seed: int, seeds: int) -> list[Path]:
    """The run directories of a seed group: <run_dir>/seed-<s> for each of its seeds."""
    return [run_dir / f"seed-{s}" for s in range(seed, seed + seeds)]


def check_seeds(entry: AgentEntry, run: RunConfig) -> None:
    """seeds > 1 needs an agent with a stacked update, and eager acting."""
    if run.seeds == 1:
        return
    if entry.stacked is None:
        have = ", ".join(name for name, e in AGENTS.items() if e.stacked is not None)
        raise ConfigError(
            f"seeds={run.seeds} is not valid for agent={entry.name}: it trains one seed per "
            f"process (seeds=1); agents with stacked seeds: {have}"
        )
    if getattr(run.agent, "compile", False):
        raise ConfigError(
            f"agent.compile=true is not valid with seeds={run.seeds}: stacked seeds run eager; "
            "set agent.compile=false or seeds=1"
        )


def check_param_groups(run: RunConfig) -> None:
    """objective.perturb and measure.groups: `all` or '+'-joined names of the agent's world-model
    groups. Checked at start-up: measure.groups was otherwise first read at the first
    measurement, many updates into the run."""
    specs = {"objective.perturb": run.objective.perturb, "measure.groups": run.measure.groups}
    if all(spec == "all" for spec in specs.values()):
        return  # the common case needs no model
    groups = world_model_groups(agent_entry(run.agent.name), run.agent, run.obs)
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
    typed(agent_entry(cfg.agent.name).config, cfg.agent)  # raises on a value the schema refuses
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
