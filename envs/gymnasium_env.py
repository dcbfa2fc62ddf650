"""Gymnasium environments (`gym/<env id>`) with Box or Discrete actions behind the Env interface."""

from __future__ import annotations

import difflib
import importlib
from typing import Any

import cv2
import gymnasium as gym
import numpy as np

from envs.base import (
    agent_steps,
    as_action_vector,
    check_episode_running,
    discrete_index,
    scale_action,
)
from envs.mujoco_gl import select_gl_backend
from mbrl_sam.environment import Env, EnvSpec, RenderUnavailable
from mbrl_sam.errors import ConfigError

DEFAULT_ACTION_REPEAT = 1
LIST_HINT = (
    "list them all with: python -c \"from envs import list_tasks; print(list_tasks('gym'))\""
)
# Shown when nothing in the registry resembles a misspelt id.
EXAMPLE_IDS = ("CartPole-v1", "Pendulum-v1", "MountainCarContinuous-v0", "Acrobot-v1")
PLUGIN_HINT = "ids registered by another package need its module first, e.g. gym/ale_py:ALE/Pong-v5"


def task_names() -> list[str]:
    """Every env id currently in gymnasium's registry."""
    return sorted(gym.registry)


def _check_registered(name: str) -> None:
    module, _, env_id = name.rpartition(":")
    if module:
        # Gymnasium's `module:id` syntax: importing the module registers its ids.
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(
                f"task='gym/{name}': cannot import module {module!r} ({err})"
            ) from err
    if env_id not in gym.registry:
        similar = difflib.get_close_matches(env_id, list(gym.registry), n=6, cutoff=0.6)
        examples = [e for e in EXAMPLE_IDS if e in gym.registry]
        # Examples always: plugin ids (e.g. HumanoidBench's 192) can crowd out the close matches.
        hint = f"close matches: {', '.join(similar)}; " if similar else ""
        hint += f"valid ids include {', '.join(examples)}; "
        raise ConfigError(
            f"task='gym/{name}' is not a registered Gymnasium id; {hint}{PLUGIN_HINT}; {LIST_HINT}"
        )


def _is_image(space: gym.Space) -> bool:
    if not isinstance(space, gym.spaces.Box) or space.dtype != np.uint8:
        return False
    shape = space.shape
    return len(shape) == 2 or (len(shape) == 3 and shape[-1] in (1, 3))


def _open(name: str, render: bool = False) -> gym.Env:
    _check_registered(name)
    if render:
        select_gl_backend()  # Gymnasium's MuJoCo envs otherwise try GLFW, which needs a display
    try:
        return gym.make(name, render_mode="rgb_array" if render else None)
    except gym.error.DependencyNotInstalled as err:
        raise ConfigError(
            f"task='gym/{name}' needs a package that is not installed: {err}"
        ) from err


def _describe(space: gym.Space) -> str:
    # Box reprs print every bound, which buries the shape and dtype a user needs to see.
    if isinstance(space, gym.spaces.Box):
        return f"Box(shape={space.shape}, dtype={space.dtype})"
    return str(space)


def _check_spaces(name: str, obs: str, obs_space: gym.Space, act_space: gym.Space) -> None:
    task = f"gym/{name}"
    if obs == "pixels" and not _is_image(obs_space):
        raise ConfigError(
            f"obs='pixels' is not available for task={task!r}: its observations are "
            f"{_describe(obs_space)}, not images (H, W, C uint8); use obs='state'"
        )
    if obs == "state" and not isinstance(obs_space, gym.spaces.Box):
        raise ConfigError(
            f"obs='state' for task={task!r} needs a Box observation space, "
            f"not {_describe(obs_space)}"
        )
    if obs == "state" and _is_image(obs_space):
        raise ConfigError(f"task={task!r} observes images; use obs='pixels' instead of 'state'")
    if isinstance(act_space, gym.spaces.Box):
        if not (np.all(np.isfinite(act_space.low)) and np.all(np.isfinite(act_space.high))):
            raise ConfigError(
                f"task={task!r} has unbounded actions {_describe(act_space)}; "
                "the [-1, 1] convention needs finite bounds"
            )
    elif not isinstance(act_space, gym.spaces.Discrete):
        raise ConfigError(
            f"task={task!r} has action space {act_space}; supported: Box (continuous), Discrete"
        )


def validate(name: str, obs: str) -> None:
    """Raise ConfigError unless `name` is a Gymnasium id whose spaces suit `obs`."""
    # Spaces are only known once the env exists; building one is cheap for Gymnasium envs.
    make(name, obs, DEFAULT_ACTION_REPEAT, 0, 64).close()


def make(
    name: str, obs: str, action_repeat: int, seed: int, size: int, render: bool = False
) -> GymnasiumEnv:
    """Build the adapter for a Gymnasium id (with rgb_array rendering if `render`)."""
    env = _open(name, render)
    try:
        return GymnasiumEnv(env, obs, action_repeat, seed, size)
    except ConfigError:
        env.close()
        raise


class GymnasiumEnv(Env):
    """A Gymnasium env with [-1, 1] Box or one-hot Discrete actions and float32/uint8 obs."""

    def __init__(
        self,
        env: gym.Env,
        obs: str = "state",
        action_repeat: int = 1,
        seed: int = 0,
        size: int = 64,
    ) -> None:
        """Wrap a made Gymnasium env; `seed` seeds the first reset that is given none."""
        name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
        _check_spaces(name, obs, env.observation_space, env.action_space)
        self.name = name
        self._env = env
        self._pixels = obs == "pixels"
        self._size = size
        # Gymnasium seeds only through reset, so hold the seed until the first one.
        self._pending_seed: int | None = seed
        act_space = self._env.action_space
        self._discrete = isinstance(act_space, gym.spaces.Discrete)
        if self._discrete:
            self._start = int(act_space.start)
            action_dim = int(act_space.n)
        else:
            self._low = act_space.low.astype(np.float64).reshape(-1)
            self._high = act_space.high.astype(np.float64).reshape(-1)
            action_dim = self._low.shape[0]
        obs_space = self._env.observation_space
        if self._pixels:
            channels = 1 if len(obs_space.shape) == 2 else obs_space.shape[-1]
            obs_shape: tuple[int, ...] = (channels, size, size)
        else:
            obs_shape = (int(np.prod(obs_space.shape)),)
        self.spec = EnvSpec(
            obs_shape=obs_shape,
            obs_dtype=np.dtype(np.uint8 if self._pixels else np.float32),
            action_dim=action_dim,
            discrete=self._discrete,
            action_repeat=action_repeat,
            episode_length=agent_steps(getattr(env.spec, "max_episode_steps", None), action_repeat),
        )
        self._done = True
        self._closed = False

    def _observe(self, observation: Any) -> np.ndarray:
        if not self._pixels:
            return np.asarray(observation, dtype=np.float32).reshape(-1)
        image = np.asarray(observation, dtype=np.uint8)
        if image.shape[:2] != (self._size, self._size):
            # INTER_AREA averages source pixels, so thin objects (balls, paddles) survive.
            image = cv2.resize(image, (self._size, self._size), interpolation=cv2.INTER_AREA)
        if image.ndim == 2:  # grayscale, or cv2 dropped a single channel
            image = image[:, :, None]
        return np.ascontiguousarray(image.transpose(2, 0, 1))

    def _env_action(self, action: np.ndarray) -> Any:
        flat = as_action_vector(action, self.spec.action_dim)
        if self._discrete:
            return self._start + discrete_index(flat)
        space = self._env.action_space
        scaled = scale_action(flat, self._low, self._high)
        return scaled.astype(space.dtype).reshape(space.shape)

    def render(self) -> np.ndarray:
        """The env's own rgb_array frame; needs the env made with render=True."""
        if self._env.render_mode != "rgb_array":
            raise RenderUnavailable(f"{self.name} was made without render=True")
        try:
            frame = self._env.render()
        except gym.error.DependencyNotInstalled as err:
            raise ConfigError(f"rendering {self.name} needs a package: {err}") from err
        return np.asarray(frame, dtype=np.uint8)

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Start an episode; a `seed` (or the constructor's, on the first reset) reseeds it."""
        if seed is None:
            seed, self._pending_seed = self._pending_seed, None
        observation, _ = self._env.reset(seed=seed)
        self._pending_seed = None
        self._done = False
        return self._observe(observation)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool]:
        """obs, reward summed over the action repeat, terminated, truncated."""
        check_episode_running(self._done)
        env_action = self._env_action(action)
        total, terminated, truncated = 0.0, False, False
        for _ in range(self.spec.action_repeat):
            observation, reward, terminated, truncated, _ = self._env.step(env_action)
            total += float(reward)
            if terminated or truncated:
                break
        self._done = bool(terminated or truncated)
        return self._observe(observation), total, bool(terminated), bool(truncated)

    def close(self) -> None:
        """Close the underlying Gymnasium env."""
        if not self._closed:
            self._closed = True
            self._env.close()
