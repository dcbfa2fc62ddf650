"""The run config's schema: every key typed at composition, ranges checked, one-line errors."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from agents import AGENTS, make_agent
from agents.run import load_config, saved_config, validate_config
from mbrl_sam.config import RunConfig, parse_options
from mbrl_sam.environment import EnvSpec
from mbrl_sam.errors import ConfigError
from mbrl_sam.evaluation.flatness import MeasureConfig
from mbrl_sam.planners import PlannerConfig
from mbrl_sam.world_models.tdmpc import TDMPCModelConfig


def untyped_nodes(node: DictConfig, path: str = "") -> list[str]:
    """Paths of dict nodes that no dataclass schema types (loss_scales is a typed dict)."""
    found = []
    if not dataclasses.is_dataclass(OmegaConf.get_type(node)) and path:
        found.append(path)
    for key in node:
        child = node._get_node(key)
        if isinstance(child, DictConfig) and key != "loss_scales":
            found += untyped_nodes(child, f"{path}.{key}".lstrip("."))
    return found


@pytest.mark.parametrize("agent", sorted(AGENTS))
def test_every_node_of_the_composed_config_has_a_schema(agent):
    cfg = load_config([f"agent={agent}"])
    assert OmegaConf.get_type(cfg) is RunConfig
    assert untyped_nodes(cfg) == []
    run = validate_config(cfg, Path("/nonexistent"))
    assert isinstance(run, RunConfig) and isinstance(run.agent, AGENTS[agent].config)
    assert isinstance(run.planner, PlannerConfig) and isinstance(run.measure, MeasureConfig)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["agent=foo"], "agent='foo' is not valid; choose one of: dreamer, storm, tdmpc"),
        (["objective=adam"], "objective='adam' is not valid; choose one of: asam, erm, sam"),
        (["planner=foo"], "planner='foo' is not valid; choose one of: auto, cem, mppi, none"),
        (["agent.batch_size=abc"], "agent.batch_size='abc' is not valid: Value 'abc'"),
        (["agent.batchsize=3"], "agent.batchsize is not a config key; the keys of agent are:"),
        (["stpes=3"], "stpes is not a config key; the keys of the top level are:"),
        (["steps=1.5"], "steps='1.5' is not valid"),
    ],
)
def test_composition_errors_are_one_line_naming_key_and_value(overrides, message):
    with pytest.raises(ConfigError) as err:
        load_config(overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["steps=0"], "steps=0 is not valid; it must be an integer >= 1"),
        (["prefill=-3"], "prefill=-3 is not valid"),
        (["objective.rho=0"], "objective.rho=0.0 is not valid; it must be a number > 0"),
        (["objective.every=0"], "objective.every=0 is not valid; it must be an integer >= 1"),
        (["objective.alpha=-1"], "objective.alpha=-1.0 is not valid; it must be a number >= 0"),
        (["planner.samples=1"], "planner.samples=1 must be >= 2"),
        (["measure.horizon=0"], "measure.horizon=0 is not valid"),
        (["agent.model.dropout=1.5"], "agent.model.dropout=1.5 is not valid"),
        (["agent.model.latent_dim=60"], "multiple of agent.model.simnorm_dim=8"),
        (["agent.discount=2"], "agent.discount=2 must be auto or a number in (0, 1]"),
        (["agent.pi_opt.lr=0"], "agent.pi_opt.lr=0.0 is not valid"),
        (["agent.model_opt.enc_lr_scale=-1"], "agent.model_opt.enc_lr_scale=-1.0 is not valid"),
        (["agent=dreamer", "agent.behavior.actor_grad=x"], "agent.behavior.actor_grad='x'"),
        (["agent=dreamer", "agent.model.deter=100"], "multiple of agent.model.blocks=8"),
        (["agent=dreamer", "agent.model_opt.clip=0"], "agent.model_opt.clip=0.0 is not valid"),
        (["replay_capacity=10"], "replay_capacity=10 is not valid; it must hold at least"),
        (["agent.batch_size=8", "replay_capacity=31"], "agent.batch_length = 32"),
        (["matmul_precision=low"], "matmul_precision='low' is not valid"),
    ],
)
def test_ranges_are_checked_when_the_typed_config_is_built(overrides, message):
    cfg = load_config(overrides)
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, Path("/nonexistent"))
    assert message in str(err.value)


def test_a_saved_config_with_old_key_names_loads_under_the_new_ones(tmp_path):
    cfg = load_config(["agent=tdmpc"])
    plain = OmegaConf.to_container(cfg, resolve=True)
    plain["measure"]["rho"] = plain["measure"].pop("sam_radius")
    plain["agent"]["model"]["rho"] = plain["agent"]["model"].pop("horizon_decay")
    OmegaConf.save(OmegaConf.create(plain), tmp_path / "config.yaml")
    loaded = saved_config(tmp_path / "config.yaml")
    assert loaded.measure.sam_radius == 0.05 and "rho" not in loaded.measure
    assert loaded.agent.model.horizon_decay == 0.5 and "rho" not in loaded.agent.model


def test_library_dataclasses_check_their_own_ranges():
    with pytest.raises(ConfigError, match="agent.model.horizon_decay=1.5"):
        TDMPCModelConfig(horizon_decay=1.5)
    with pytest.raises(ConfigError, match="planner.elites=600 must be in"):
        PlannerConfig(elites=600)


@dataclasses.dataclass
class Options:
    run_dir: str = "???"
    episodes: int = 10
    video: bool = False


@pytest.mark.parametrize(
    "argv, message",
    [
        (["episodes=3"], "run_dir=<value> is required"),
        (["run_dir=x", "bogus=1"], "bogus is not an option; the options are: run_dir, episodes"),
        (["run_dir=x", "video=maybe"], "video='maybe' is not valid"),
        (["run_dir=x", "episodes=abc"], "episodes='abc' is not valid"),
    ],
)
def test_script_options_fail_in_one_line(argv, message):
    with pytest.raises(ConfigError) as err:
        parse_options(Options, argv)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_script_options_parse_into_their_dataclass():
    assert parse_options(Options, ["run_dir=x", "video=true"]) == Options("x", 10, True)


SPEC = EnvSpec((5,), np.float32, 2, False, 2, episode_length=500)


@pytest.mark.parametrize(
    "agent, groups, rho",
    [("tdmpc", "encoder+dynamics", 0.001), ("dreamer", "all", 0.05), ("storm", "all", 0.05)],
)
def test_sam_defaults_are_each_agents_and_an_override_wins(agent, groups, rho):
    cfg = load_config([f"agent={agent}", "objective=sam"])
    run = validate_config(cfg, Path("/nonexistent"))
    assert (run.objective.perturb, run.objective.rho) == (groups, rho)
    assert (cfg.objective.perturb, cfg.objective.rho) == (groups, rho)  # what config.yaml saves
    built = make_agent(cfg, SPEC, torch.device("cpu"))
    wm_groups = built.world_model.param_groups()
    chosen = wm_groups if groups == "all" else {k: wm_groups[k] for k in groups.split("+")}
    expected = {id(p) for ps in chosen.values() for p in ps}
    assert {id(p) for p in built.model_optimizer.perturbed} == expected
    assert built.model_optimizer.objective.rho == rho
    cfg = load_config([f"agent={agent}", "objective.perturb=encoder", "objective.rho=0.2"])
    run = validate_config(cfg, Path("/nonexistent"))
    assert (run.objective.perturb, run.objective.rho) == ("encoder", 0.2)
    asam = validate_config(load_config([f"agent={agent}", "objective=asam"]), Path("/x"))
    assert asam.objective.rho == 0.5  # ASAM's radius is its own
