"""DeepMind Control Suite tasks (`dmc/<domain>-<task>`) behind the common Env interface."""

from __future__ import annotations

import difflib
from functools import cache
from typing import Any

import numpy as np

from envs.base import agent_steps, as_action_vector, check_episode_running, scale_action
from envs.mujoco_gl import require_renderer, select_gl_backend
from mbrl_sam.environment import Env, EnvSpec
from mbrl_sam.errors import ConfigError

DEFAULT_ACTION_REPEAT = 2
# numpy's RandomState only takes seeds below 2**32; callers derive seeds arithmetically.
SEED_RANGE = 2**32
# Quadruped's camera 0 looks at the floor from too far away; camera 2 follows the body.
CAMERA_IDS = {"quadruped": 2}
# Shadows and reflections cost most of the render time at 64x64 and carry little signal.
RENDER_FLAGS = {"shadow": False, "reflection": False}
VIDEO_SIZE = 256  # square frames for videos; MuJoCo's default offscreen buffer is 640x480
# Shown when nothing resembles a misspelt name.
EXAMPLE_TASKS = ("walker-walk", "cheetah-run", "cartpole-swingup", "reacher-easy")
LIST_HINT = (
    "list them all with: python -c \"from envs import list_tasks; print(list_tasks('dmc'))\""
)


def _suite() -> Any:
    # MUJOCO_GL must be settled before dm_control's first import, which fixes the backend.
    select_gl_backend()
    from dm_control import suite

    return suite


@cache
def _tasks() -> dict[str, tuple[str, str]]:
    return {f"{domain}-{task}": (domain, task) for domain, task in _suite().ALL_TASKS}


def task_names() -> list[str]:
    """All valid names, `<domain>-<task>`, in dm_control's order."""
    return list(_tasks())


def validate(name: str, obs: str) -> None:
    """Raise ConfigError unless `name` is a DMC task and `obs` can be produced here."""
    tasks = _tasks()
    if name not in tasks:
        domain = name.split("-")[0]
        same_domain = [t for t in tasks if tasks[t][0] == domain]
        similar = difflib.get_close_matches(name, tasks, n=6, cutoff=0.5)
        suggestions = list(dict.fromkeys(same_domain + similar))[:8]
        if suggestions:
            hint = f"close matches: {', '.join(suggestions)}; "
        else:
            hint = f"valid tasks include {', '.join(EXAMPLE_TASKS)}; "
        raise ConfigError(
            f"task='dmc/{name}' is not a DeepMind Control task; {hint}"
            f"names are <domain>-<task>, e.g. dmc/walker-walk; {LIST_HINT}"
        )
    if obs == "pixels":
        require_renderer(f"dmc/{name}")


def make(
    name: str, obs: str, action_repeat: int, seed: int, size: int, render: bool = False
) -> DMCEnv:
    """Build the adapter for a validated task name (it can always render)."""
    validate(name, obs)
    return DMCEnv(name, obs, action_repeat, seed, size)


class DMCEnv(Env):
    """A dm_control suite task with flat float32 state or channels-first uint8 pixel obs."""

    def __init__(
        self, name: str, obs: str = "state", action_repeat: int = 2, seed: int = 0, size: int = 64
    ) -> None:
        """Load `<domain>-<task>`, seeding the task's random state with `seed`."""
        domain, task = _tasks()[name]
        self._env = _suite().load(domain, task, task_kwargs={"random": seed % SEED_RANGE})
        self._name = name
        self._pixels = obs == "pixels"
        self._size = size
        self._camera_id = CAMERA_IDS.get(domain, 0)
        action_spec = self._env.action_spec()
        self._low = action_spec.minimum.astype(np.float64)
        self._high = action_spec.maximum.astype(np.float64)
        obs_spec = self._env.observation_spec()
        # Sorted keys give one fixed layout whatever order the task's dict happens to use.
        self._keys = sorted(obs_spec)
        if self._pixels:
            self._configure_rendering()
            obs_shape: tuple[int, ...] = (3, size, size)
        else:
            obs_shape = (sum(int(np.prod(obs_spec[k].shape)) for k in self._keys),)
        self.spec = EnvSpec(
            obs_shape=obs_shape,
            obs_dtype=np.dtype(np.uint8 if self._pixels else np.float32),
            action_dim=int(action_spec.shape[0]),
            discrete=False,
            action_repeat=action_repeat,
            episode_length=agent_steps(self._env._step_limit, action_repeat),
        )
        self._done = True
        self._closed = False

    def _configure_rendering(self) -> None:
        model = self._env.physics.model
        # Multisampling makes a 64x64 software render ~8x slower for no visible gain.
        model.vis.quality.offsamples = 0
        # The offscreen buffer is sized from the model when the context is first made.
        model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), self._size)
        model.vis.global_.offheight = max(int(model.vis.global_.offheight), self._size)

    def _observe(self, observation: dict[str, Any]) -> np.ndarray:
        if self._pixels:
            image = self._env.physics.render(
                height=self._size,
                width=self._size,
                camera_id=self._camera_id,
                render_flag_overrides=RENDER_FLAGS,
            )
            return np.ascontiguousarray(image.transpose(2, 0, 1))
        parts = [np.asarray(observation[k], dtype=np.float32).reshape(-1) for k in self._keys]
        return np.concatenate(parts)

    def render(self) -> np.ndarray:
        """The observation camera at VIDEO_SIZE pixels, with shadows, for videos."""
        require_renderer(f"dmc/{self._name}", "rendering a video")
        return self._env.physics.render(
            height=VIDEO_SIZE, width=VIDEO_SIZE, camera_id=self._camera_id
        )

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Start an episode; a `seed` reseeds the task so the episode is reproducible."""
        if seed is not None:
            self._env.task.random.seed(seed % SEED_RANGE)
        timestep = self._env.reset()
        self._done = False
        return self._observe(timestep.observation)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool]:
        """obs, reward summed over the action repeat, terminated, truncated."""
        check_episode_running(self._done)
        env_action = scale_action(
            as_action_vector(action, self.spec.action_dim), self._low, self._high
        )
        reward, terminated, truncated = 0.0, False, False
        for _ in range(self.spec.action_repeat):
            timestep = self._env.step(env_action)
            reward += float(timestep.reward) if timestep.reward is not None else 0.0
            if timestep.last():
                # dm_env marks a true terminal state with discount 0; the time limit keeps 1.
                terminated = float(timestep.discount) == 0.0
                truncated = not terminated
                break
        self._done = terminated or truncated
        return self._observe(timestep.observation), reward, terminated, truncated

    def close(self) -> None:
        """Free the physics and its rendering context."""
        if not self._closed:
            self._closed = True
            self._env.close()
