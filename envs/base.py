"""The one environment interface every suite adapter implements, and its action conventions."""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass

import numpy as np

OBS_MODES = ("state", "pixels")


class RenderUnavailable(RuntimeError):
    """This env cannot give video frames (the adapter has no renderer, or was made without one)."""


@dataclass(frozen=True)
class EnvSpec:
    """Shapes and types the agent needs to build its networks and replay buffer."""

    obs_shape: tuple[int, ...]  # (D,) for vector obs; (C, H, W) channels-first for pixels
    obs_dtype: np.dtype  # np.float32 for vectors, np.uint8 for pixels
    action_dim: int  # continuous: number of dims; discrete: number of actions
    discrete: bool
    action_repeat: int
    # Agent steps in an episode that runs to its time limit (after the action repeat); None
    # when the task has no fixed limit. TD-MPC's discount and seed phase are set from it.
    episode_length: int | None = None


class Env(abc.ABC):
    """An episodic environment with actions in the agent's convention (see `as_action_vector`)."""

    spec: EnvSpec

    @abc.abstractmethod
    def reset(self, seed: int | None = None) -> np.ndarray:
        """Start an episode (reseeding first if `seed` is given) and return its first obs."""

    @abc.abstractmethod
    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool]:
        """obs, reward summed over the action repeat, terminated, truncated."""

    def render(self) -> np.ndarray:
        """The scene now as an (H, W, 3) uint8 frame, for videos (adapters that can override)."""
        raise RenderUnavailable(f"{type(self).__name__} cannot render frames")

    @abc.abstractmethod
    def close(self) -> None:
        """Free the simulator and any rendering context; safe to call twice."""

    def __enter__(self) -> Env:
        """Use the env in a `with` block so it is closed on the way out."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the env when leaving a `with` block."""
        self.close()


def agent_steps(env_steps: float | None, action_repeat: int) -> int | None:
    """Agent steps in an episode of at most `env_steps` env steps (None or inf: no limit)."""
    if env_steps is None or not math.isfinite(env_steps):
        return None
    return math.ceil(round(env_steps) / action_repeat)


def as_action_vector(action: np.ndarray, action_dim: int) -> np.ndarray:
    """Return `action` as a flat float64 vector; ValueError unless it has action_dim items."""
    flat = np.asarray(action, dtype=np.float64).reshape(-1)
    if flat.shape[0] != action_dim:
        raise ValueError(
            f"action has {flat.shape[0]} elements but this env expects action_dim={action_dim}"
        )
    return flat


def scale_action(action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Map an action in [-1, 1] linearly onto [low, high], clipping what falls outside."""
    # Clipping first keeps an over-eager policy (or exploration noise) inside the true bounds.
    unit = np.clip(action, -1.0, 1.0)
    return low + (unit + 1.0) * 0.5 * (high - low)


def discrete_index(action: np.ndarray) -> int:
    """Pick the discrete action a one-hot (or score) vector points at."""
    return int(np.argmax(action))


def check_episode_running(done: bool) -> None:
    """Raise RuntimeError if an adapter is stepped after its episode ended without a reset."""
    # Both DMC and Gymnasium would silently misbehave here (auto-reset or undefined state).
    if done:
        raise RuntimeError("the episode has ended (or never started); call reset() before step()")
