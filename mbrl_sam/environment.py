"""What the library needs from an environment: `EnvSpec` (shapes and types) and the `Env`
interface, defined here once; the suite adapters in `envs/` implement it. A uniform random action
in the agent's format, for prefill and baselines."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


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


@runtime_checkable
class Env(Protocol):
    """An episodic environment with actions in [-1, 1] (continuous) or one-hot (discrete).

    Adapters subclass it (inheriting `render`'s refusal and the `with` block) or match it
    structurally; the library only calls these methods."""

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


def random_action(spec: EnvSpec, rng: np.random.Generator) -> np.ndarray:
    """A uniform random action in the agent's action format (one-hot when discrete)."""
    if spec.discrete:
        action = np.zeros(spec.action_dim, np.float32)
        action[rng.integers(spec.action_dim)] = 1.0
        return action
    return rng.uniform(-1, 1, spec.action_dim).astype(np.float32)
