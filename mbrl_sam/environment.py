"""What the library needs from an environment: the `Env` and `EnvSpec` protocols (and a
uniform random action in their format).

The suite adapters in `envs/` satisfy them structurally, so the library never imports `envs/`
(the layering is checked by tests/test_layering.py).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class EnvSpec(Protocol):
    """Shapes and types the agent needs to build its networks and replay buffer."""

    obs_shape: tuple[int, ...]  # (D,) for vector obs; (C, H, W) channels-first for pixels
    obs_dtype: np.dtype
    action_dim: int  # continuous: number of dims; discrete: number of actions
    discrete: bool
    action_repeat: int
    episode_length: int | None  # agent steps in a full episode; None: no fixed limit


@runtime_checkable
class Env(Protocol):
    """An episodic environment with actions in [-1, 1] (continuous) or one-hot (discrete)."""

    spec: EnvSpec

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Start an episode (reseeding first if `seed` is given) and return its first obs."""
        ...

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool]:
        """obs, reward summed over the action repeat, terminated, truncated."""
        ...

    def render(self) -> np.ndarray:
        """The scene now as an (H, W, 3) uint8 frame."""
        ...

    def close(self) -> None:
        """Free the simulator and any rendering context; safe to call twice."""
        ...


def random_action(spec: EnvSpec, rng: np.random.Generator) -> np.ndarray:
    """A uniform random action in the agent's action format (one-hot when discrete)."""
    if spec.discrete:
        action = np.zeros(spec.action_dim, np.float32)
        action[rng.integers(spec.action_dim)] = 1.0
        return action
    return rng.uniform(-1, 1, spec.action_dim).astype(np.float32)
