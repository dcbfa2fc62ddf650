"""HumanoidBench tasks (`humanoidbench/<robot>-<task>-v0`) on humanoid_bench's Gymnasium envs.

HumanoidBench (Sferrazza et al., 2024) is not on PyPI: envs/README.md ("HumanoidBench") says how to
install it from a local clone without its pinned dependencies. This adapter then:
- builds `gymnasium.make("<robot>-<task>-v0", render_mode=None)`: every task otherwise opens an
  offscreen renderer at creation, which state observations never use (and which needs OpenGL);
  videos call the env's Gymnasium MuJoCo renderer directly (the package's own `render` passes it
  the arguments of an older Gymnasium);
- drops from humanoid_bench's bundled copy of dm_control's index table the MjModel/MjData fields the
  installed MuJoCo no longer has (e.g. `flex_evpair`), instead of editing its files;
- reuses GymnasiumEnv for the rest: float32 state vectors, [-1, 1] Box actions (HumanoidEnv already
  rescales [-1, 1] onto the actuator ranges), action repeat with summed rewards, seeding through
  reset, terminated (the robot fell) vs truncated (TimeLimit: 1000 or 500 env steps);
- gives each env its own copy of numpy's global RNG, since several tasks draw their goals and object
  poses from `np.random` (not the env's seeded `np_random`) when they reset.
Only state observations: the benchmark's tasks are defined and scored from state.
"""

from __future__ import annotations

import difflib
from typing import Any

import gymnasium as gym
import numpy as np

from envs.gymnasium_env import GymnasiumEnv
from envs.mujoco_gl import require_renderer, select_gl_backend
from mbrl_sam.errors import ConfigError

# 1, not DMC's 2: the paper's TD-MPC2 and DreamerV3 runs step the env once per action
# (humanoid-bench tdmpc2/tdmpc2/envs/humanoid.py adds no repeat; TD-MPC2 wraps
# ActionRepeatWrapper(env, 2) only in its dmcontrol.py, and its online trainer counts one step per
# env.step), and one env step is already 10 physics steps (Task.frame_skip = 10: 50 Hz control).
DEFAULT_ACTION_REPEAT = 1
# numpy's RandomState only takes seeds below 2**32; callers derive seeds arithmetically.
SEED_RANGE = 2**32
ENTRY_POINT = "humanoid_bench.env:HumanoidEnv"
# The benchmark's main tasks (humanoid-bench README, "Main Benchmark Tasks"): locomotion, then
# whole-body manipulation; the high bar needs h1strong's stronger hands to hang on.
BENCHMARK_TASKS = (
    "h1hand-walk-v0",
    "h1hand-stand-v0",
    "h1hand-run-v0",
    "h1hand-reach-v0",
    "h1hand-hurdle-v0",
    "h1hand-crawl-v0",
    "h1hand-maze-v0",
    "h1hand-sit_simple-v0",
    "h1hand-sit_hard-v0",
    "h1hand-balance_simple-v0",
    "h1hand-balance_hard-v0",
    "h1hand-stair-v0",
    "h1hand-slide-v0",
    "h1hand-pole-v0",
    "h1hand-push-v0",
    "h1hand-cabinet-v0",
    "h1strong-highbar_hard-v0",
    "h1hand-door-v0",
    "h1hand-truck-v0",
    "h1hand-cube-v0",
    "h1hand-bookshelf_simple-v0",
    "h1hand-bookshelf_hard-v0",
    "h1hand-basketball-v0",
    "h1hand-window-v0",
    "h1hand-spoon-v0",
    "h1hand-kitchen-v0",
    "h1hand-package-v0",
    "h1hand-powerlift-v0",
    "h1hand-room-v0",
    "h1hand-insert_normal-v0",
    "h1hand-insert_small-v0",
)
REPOSITORY = "https://github.com/carlosferrazza/humanoid-bench"
INSTALL_STEPS = (
    f"git clone {REPOSITORY} /opt/humanoid-bench && "
    "pip install --no-deps -e /opt/humanoid-bench && pip install jax"
)
INSTALL_DOC = "envs/README.md, section 'HumanoidBench'"


def task_names() -> list[str]:
    """The benchmark's tasks; validate also accepts any other id humanoid_bench registers."""
    return list(BENCHMARK_TASKS)


def missing_package_message(task: str, err: BaseException) -> str:
    """The ConfigError text for a task that needs humanoid_bench when it cannot be imported."""
    return (
        f"task='humanoidbench/{task}' needs HumanoidBench, which failed to import here ({err}); "
        f"it is not on PyPI and its setup.py pins old mujoco/gymnasium/torch, so install it "
        f"without dependencies: {INSTALL_STEPS} (see {INSTALL_DOC})"
    )


def _drop_fields_mujoco_lacks(sizes: dict[str, dict[str, Any]]) -> None:
    import mujoco

    # The table lists the fields of the MuJoCo humanoid_bench pins (3.1.6); every env getattr()s
    # each one while building its named index, so a field later MuJoCo removed raises there.
    # None of the dropped fields (flex_evpair, qM, ...) is used by a task.
    for struct, cls in (("mjmodel", mujoco.MjModel), ("mjdata", mujoco.MjData)):
        for field in [f for f in sizes[struct] if not hasattr(cls, f)]:
            del sizes[struct][field]


def _import(task: str) -> None:
    # State obs open no renderer; this only makes MUJOCO_GL headless (unless the user set it)
    # in case something renders one of these envs later, as envs/dmc.py does.
    select_gl_backend()
    try:
        import humanoid_bench  # noqa: F401  (registers the <robot>-<task>-v0 ids)
        from humanoid_bench.dmc_deps import dmc_sizes
    except ImportError as err:
        raise ConfigError(missing_package_message(task, err)) from err
    _drop_fields_mujoco_lacks(dmc_sizes.array_sizes)


def registered_ids() -> list[str]:
    """Every env id humanoid_bench has registered with Gymnasium (after it was imported)."""
    return sorted(i for i, spec in gym.registry.items() if spec.entry_point == ENTRY_POINT)


def validate(name: str, obs: str) -> None:
    """Raise ConfigError unless obs is "state" and `name` is an id humanoid_bench registers."""
    if obs != "state":
        raise ConfigError(
            f"obs={obs!r} is not available for task='humanoidbench/{name}': this adapter gives "
            "HumanoidBench's state vector only; use obs=state"
        )
    _import(name)
    known = registered_ids()
    if name not in known:
        similar = difflib.get_close_matches(name, known, n=6, cutoff=0.6)
        hint = f"close matches: {', '.join(similar)}; " if similar else ""
        raise ConfigError(
            f"task='humanoidbench/{name}' is not a HumanoidBench env id; {hint}ids are "
            f"<robot>-<task>-v0, the benchmark's being: {', '.join(BENCHMARK_TASKS)}"
        )


def make(
    name: str, obs: str, action_repeat: int, seed: int, size: int, render: bool = False
) -> HumanoidBenchEnv:
    """Build the adapter for a HumanoidBench env id (size is unused: state obs only).

    It can always render: `render` is unused.
    """
    validate(name, obs)
    try:
        env = gym.make(name, render_mode=None)
    except ValueError as err:  # MuJoCo's XML/asset errors, e.g. a missing texture file
        raise ConfigError(
            f"task='humanoidbench/{name}' failed to build: MuJoCo could not load its model ({err})"
        ) from err
    try:
        return HumanoidBenchEnv(env, action_repeat, seed)
    except ConfigError:
        env.close()
        raise


class HumanoidBenchEnv(GymnasiumEnv):
    """A HumanoidBench env whose global-numpy draws come from its own seeded stream."""

    def __init__(
        self, env: gym.Env, action_repeat: int = DEFAULT_ACTION_REPEAT, seed: int = 0
    ) -> None:
        """Wrap a made HumanoidBench env; `seed` seeds the first reset that is given none."""
        super().__init__(env, "state", action_repeat, seed)
        self._np_state = np.random.RandomState(seed % SEED_RANGE).get_state()

    def render(self) -> np.ndarray:
        """The task's own camera (e.g. cam_default) at the package's 256x256, for videos."""
        require_renderer(f"humanoidbench/{self.name}", "rendering a video")
        # Gymnasium's renderer, called directly: the package's render() passes it the arguments
        # of an older Gymnasium; it picks the GL backend when first used, not at import.
        return np.asarray(self._env.unwrapped.mujoco_renderer.render("rgb_array"), np.uint8)

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Start an episode; a `seed` reseeds the simulator and the task's numpy draws."""
        if seed is not None:
            self._np_state = np.random.RandomState(seed % SEED_RANGE).get_state()
        # reach, push, cube, sit_hard, ... draw goals and object poses from np.random in their
        # reset_model (and nowhere in step, at humanoid-bench 791405f); running the reset on this
        # env's own saved stream makes a seeded reset reproducible and leaves the caller's global
        # stream, and any other env's, untouched. Swapping costs ~0.2 ms: too much for every step.
        outer = np.random.get_state()
        np.random.set_state(self._np_state)
        try:
            return super().reset(seed)
        finally:
            self._np_state = np.random.get_state()
            np.random.set_state(outer)
