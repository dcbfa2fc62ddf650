"""One entry point, `make_env("suite/name")`, for every environment suite.

A suite is a module exposing `DEFAULT_ACTION_REPEAT`, `task_names()`, `validate(name, obs)` and
`make(name, obs, action_repeat, seed, size, render)`; adding one to `SUITE_MODULES` plugs it in.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from envs.base import OBS_MODES
from mbrl_sam.environment import Env, EnvSpec
from mbrl_sam.errors import ConfigError, check_choice, check_int

# Modules are imported on first use so `import envs` stays cheap (no dm_control, no MuJoCo).
SUITE_MODULES = {
    "dmc": "envs.dmc",
    "gym": "envs.gymnasium_env",
    "atari": "envs.atari",
    "humanoidbench": "envs.humanoidbench",
}
SUITES = tuple(SUITE_MODULES)

__all__ = ["SUITES", "Env", "EnvSpec", "list_tasks", "make_env", "validate_task"]


def _suite_module(suite: str) -> ModuleType:
    return importlib.import_module(SUITE_MODULES[suite])


def _split(task: str) -> tuple[str, str]:
    if not isinstance(task, str) or "/" not in task:
        raise ConfigError(
            f"task={task!r} is not valid; write it as <suite>/<name> with suite one of "
            f"{', '.join(SUITES)}, e.g. dmc/walker-walk, gym/CartPole-v1, atari/Pong or "
            "humanoidbench/h1hand-walk-v0"
        )
    suite, name = task.split("/", 1)
    if suite not in SUITE_MODULES:
        raise ConfigError(
            f"task={task!r} names unknown suite {suite!r}; choose one of: {', '.join(SUITES)}"
        )
    if not name:
        raise ConfigError(f"task={task!r} has no name after {suite}/, e.g. dmc/walker-walk")
    return suite, name


def list_tasks(suite: str) -> list[str]:
    """Every task name `suite` accepts (without the `suite/` prefix)."""
    check_choice("suite", suite, SUITES)
    return _suite_module(suite).task_names()


def validate_task(task: str, obs: str = "state") -> None:
    """Cheap start-up check of a task and obs mode; raises ConfigError naming the valid choices."""
    check_choice("obs", obs, OBS_MODES)
    suite, name = _split(task)
    _suite_module(suite).validate(name, obs)


def make_env(
    task: str,
    obs: str = "state",
    action_repeat: int | None = None,
    seed: int = 0,
    size: int = 64,
    render: bool = False,
) -> Env:
    """Build `suite/name` with "state" or "pixels" obs; action_repeat None: suite default.

    render=True builds the env so that `render()` returns frames for videos.
    """
    check_choice("obs", obs, OBS_MODES)
    suite, name = _split(task)
    if action_repeat is not None:
        check_int("action_repeat", action_repeat, 1)
    check_int("seed", seed, 0)
    check_int("size", size, 1)
    module = _suite_module(suite)
    repeat = module.DEFAULT_ACTION_REPEAT if action_repeat is None else action_repeat
    return module.make(name, obs, repeat, seed, size, render)
