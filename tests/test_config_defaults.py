"""Every default has one home: the schemas (dataclasses) hold the values, a YAML file holds only
what differs from them, and no dataclass default is one that every config overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from omegaconf import DictConfig, OmegaConf

from agents import AGENTS
from agents.run import agent_sizes, load_config
from mbrl_sam.config import RunConfig, config_dir, flat_keys
from mbrl_sam.objectives import OBJECTIVE_CONFIGS
from mbrl_sam.planners import PLANNER_NAMES, PlannerConfig


def defaults_of(schema: type) -> dict[str, Any]:
    """A schema's default values as dotted paths."""
    return flat_keys(OmegaConf.to_container(OmegaConf.structured(schema)))


def schema_of_preset(path: Path) -> type:
    """The agent schema a preset file `<agent>_<size>.yaml` sets values of."""
    names = [n for n in AGENTS if path.stem.startswith(f"{n}_")]
    assert names, f"{path.name} names no registered agent"
    return AGENTS[max(names, key=len)].config


def yaml_repeats(path: Path, agent_schema: type | None = None) -> list[str]:
    """`key=value` for each value a config file sets to what its schema already holds."""
    text = path.read_text()
    values = flat_keys(OmegaConf.to_container(OmegaConf.load(path)) or {})
    values = {k: v for k, v in values.items() if not k.startswith(("defaults", "hydra"))}
    if "# @package agent" in text:
        values = {f"agent.{k}": v for k, v in values.items()}
    defaults = (
        {f"agent.{k}": v for k, v in defaults_of(agent_schema).items()} if agent_schema else {}
    )
    defaults.update({f"planner.{k}": v for k, v in defaults_of(PlannerConfig).items()})
    defaults.update({k: v for k, v in defaults_of(RunConfig).items() if k not in defaults})
    return [f"{k}={v}" for k, v in values.items() if k in defaults and defaults[k] == v]


PRESETS = sorted((config_dir() / "preset").glob("*.yaml"))


@pytest.mark.parametrize("path", PRESETS, ids=[p.stem for p in PRESETS])
def test_no_preset_repeats_a_default_of_its_agents_schema(path: Path) -> None:
    assert yaml_repeats(path, schema_of_preset(path)) == []


def test_the_main_config_sets_no_value_of_the_run_schema() -> None:
    assert yaml_repeats(config_dir() / "config.yaml") == []


def test_a_preset_repeating_a_default_is_caught(tmp_path: Path) -> None:
    preset = tmp_path / "tdmpc_x.yaml"
    preset.write_text("# @package agent\nbatch_size: 256\nmodel: {latent_dim: 64, num_q: 5}\n")
    assert yaml_repeats(preset, schema_of_preset(preset)) == [
        "agent.batch_size=256",
        "agent.model.num_q=5",
    ]


def composed_configs() -> list[DictConfig]:
    """Every agent at every size with its defaults, and every objective and planner."""
    configs = [
        load_config([f"agent={name}", f"size={size}"])
        for name in AGENTS
        for size in agent_sizes(name)
    ]
    configs += [load_config([f"objective={name}"]) for name in OBJECTIVE_CONFIGS]
    return configs + [load_config([f"planner={name}"]) for name in PLANNER_NAMES]


def plain_default(f: dataclasses.Field) -> tuple[bool, Any]:
    """(True, value) for a field with a literal default; (False, None) for a required field,
    a factory-built one or an interpolation."""
    value = f.default
    if value is dataclasses.MISSING or value == "???":
        return False, None
    if isinstance(value, str) and "${" in value:
        return False, None
    return True, list(value) if isinstance(value, tuple) else value


def dead_defaults(configs: list[DictConfig]) -> list[str]:
    """`Class.field=default` for each dataclass default that every config overrides, and
    `agent.<path>=value` for each agent schema's default (factory-built ones included) that
    every config of that agent overrides."""
    seen: dict[tuple[type, str], bool] = {}

    def walk(node: DictConfig) -> None:
        schema = OmegaConf.get_type(node)
        if dataclasses.is_dataclass(schema):
            plain = OmegaConf.to_container(node, resolve=True)
            for f in dataclasses.fields(schema):
                literal, value = plain_default(f)
                if literal and f.name in plain:
                    used = plain[f.name] == value
                    seen[schema, f.name] = seen.get((schema, f.name), False) or used
        for key in node:
            child = node._get_node(key)
            if isinstance(child, DictConfig):
                walk(child)

    for cfg in configs:
        walk(cfg)
    dead = [f"{cls.__name__}.{name}" for (cls, name), used in seen.items() if not used]
    for name, entry in AGENTS.items():
        runs = [flat_keys(OmegaConf.to_container(c.agent)) for c in configs if c.agent.name == name]
        for path, value in defaults_of(entry.config).items():
            if runs and all(run.get(path) != value for run in runs):
                dead.append(f"{name}: agent.{path}={value}")
    return sorted(dead)


def test_no_dataclass_default_is_overridden_everywhere() -> None:
    assert dead_defaults(composed_configs()) == []


def test_a_default_that_every_config_overrides_is_caught() -> None:
    cfg = load_config(["agent=tdmpc", "size=tiny"])
    others = load_config(["agent=tdmpc", "size=1M", "agent.tau=0.5", "agent.model_opt.eps=1e-4"])
    cfg.agent.tau = 0.5
    cfg.agent.model_opt.eps = 1e-4
    dead = dead_defaults([cfg, others])
    assert "TDMPCConfig.tau" in dead and "tdmpc: agent.tau=0.01" in dead
    assert "tdmpc: agent.model_opt.eps=1e-08" in dead  # a factory-built default
