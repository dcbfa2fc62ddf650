"""The action and episode conventions every suite adapter follows; the interface they implement,
`Env` and `EnvSpec`, is the library's (`mbrl_sam/environment.py`)."""

from __future__ import annotations

import math

import numpy as np

OBS_MODES = ("state", "pixels")


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
