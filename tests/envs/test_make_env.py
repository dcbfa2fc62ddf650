"""make_env / validate_task: suite registry, defaults, and errors that name the valid choices."""

import subprocess
import sys
from pathlib import Path

import pytest

from envs import SUITES, list_tasks, make_env, validate_task
from mbrl_sam.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

BAD_INPUTS = [
    # (kwargs, the bad value, one valid choice the message must offer)
    ({"task": "nosuch/x"}, "nosuch", "dmc"),
    ({"task": "dmc/walker-fly"}, "walker-fly", "walker-walk"),
    ({"task": "gym/NoSuchEnv-v0"}, "NoSuchEnv-v0", "CartPole-v1"),
    ({"task": "gym/CartPol-v1"}, "CartPol-v1", "CartPole-v1"),
    ({"task": "walker-walk"}, "walker-walk", "dmc/walker-walk"),
    ({"task": "dmc/walker-walk", "obs": "depth"}, "depth", "pixels"),
    ({"task": "dmc/walker-walk", "action_repeat": 0}, "action_repeat=0", ">= 1"),
]


@pytest.mark.parametrize(("kwargs", "bad", "valid"), BAD_INPUTS)
def test_make_env_errors_name_the_value_and_a_choice(kwargs, bad, valid):
    with pytest.raises(ConfigError) as err:
        make_env(**kwargs)
    assert bad in str(err.value) and valid in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "bad", "valid"), [b for b in BAD_INPUTS if "action_repeat" not in b[0]]
)
def test_validate_task_raises_the_same_errors(kwargs, bad, valid):
    with pytest.raises(ConfigError) as err:
        validate_task(kwargs["task"], kwargs.get("obs", "state"))
    assert bad in str(err.value) and valid in str(err.value)


def test_unknown_dmc_task_says_how_to_list_all():
    with pytest.raises(ConfigError, match="list_tasks"):
        validate_task("dmc/walker-fly")


@pytest.mark.parametrize(
    "task", ["dmc/walker-walk", "dmc/ball_in_cup-catch", "gym/CartPole-v1", "gym/Pendulum-v1"]
)
def test_valid_tasks_pass_validation(task):
    validate_task(task, "state")


def test_registry_and_task_lists():
    assert {"dmc", "gym", "atari", "humanoidbench"} <= set(SUITES)
    from dm_control import suite

    dmc = list_tasks("dmc")
    assert len(dmc) == len(suite.ALL_TASKS)
    assert {"walker-walk", "ball_in_cup-catch", "point_mass-easy", "dog-run"} <= set(dmc)
    assert "CartPole-v1" in list_tasks("gym")
    assert len(list_tasks("atari")) == 26 and "Pong" in list_tasks("atari")
    with pytest.raises(ConfigError, match="nosuch"):
        list_tasks("nosuch")


def test_default_action_repeats():
    with make_env("dmc/cartpole-balance") as dmc, make_env("gym/CartPole-v1") as gym:
        assert dmc.spec.action_repeat == 2
        assert gym.spec.action_repeat == 1
    with make_env("dmc/cartpole-balance", action_repeat=4) as dmc:
        assert dmc.spec.action_repeat == 4


def test_importing_envs_does_not_import_simulators():
    code = (
        "import sys, envs; "
        "print(sorted(m for m in ('dm_control', 'gymnasium', 'mujoco') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
