"""A ring-buffer replay of one stream of env steps, sampled as fixed-length sequences."""

from __future__ import annotations

import copy

import numpy as np
import torch

_KEYS = ("obs", "action", "reward", "is_first", "is_terminal")


class SequenceReplay:
    """Fixed-capacity replay of consecutive env steps; samples B windows of T steps."""

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        obs_dtype: np.dtype,
        action_dim: int,
        seed: int = 0,
    ) -> None:
        if int(capacity) <= 0:
            raise ValueError(f"replay capacity must be > 0, got {capacity}")
        if int(action_dim) <= 0:
            raise ValueError(f"replay action_dim must be > 0, got {action_dim}")
        self.capacity = int(capacity)
        self.obs_shape = tuple(int(d) for d in obs_shape)
        self.obs_dtype = np.dtype(obs_dtype)
        self.action_dim = int(action_dim)
        # np.empty maps pages without touching them, so the OS commits memory only as steps arrive.
        self._data: dict[str, np.ndarray] = {
            "obs": np.empty((self.capacity, *self.obs_shape), self.obs_dtype),
            "action": np.empty((self.capacity, self.action_dim), np.float32),
            "reward": np.empty((self.capacity,), np.float32),
            "is_first": np.empty((self.capacity,), np.bool_),
            "is_terminal": np.empty((self.capacity,), np.bool_),
        }
        self._pos = 0
        self._size = 0
        self._total = 0
        self._rng = np.random.Generator(np.random.PCG64(seed))

    def add(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: float,
        is_first: bool,
        is_terminal: bool,
    ) -> None:
        """Store one env step, overwriting the oldest one when the buffer is full."""
        obs = np.asarray(obs)
        if obs.shape != self.obs_shape:
            raise ValueError(f"replay obs has shape {obs.shape}, expected {self.obs_shape}")
        action = np.asarray(action, dtype=np.float32)
        if action.shape != (self.action_dim,):
            raise ValueError(
                f"replay action has shape {action.shape}, expected ({self.action_dim},)"
            )
        i = self._pos
        self._data["obs"][i] = obs
        # No action leads into the first obs of an episode; zeros keep the model's input defined.
        self._data["action"][i] = 0.0 if is_first else action
        self._data["reward"][i] = reward
        self._data["is_first"][i] = is_first
        self._data["is_terminal"][i] = is_terminal
        self._pos = (i + 1) % self.capacity
        self._size = min(self._size + 1, self.capacity)
        self._total += 1

    def __len__(self) -> int:
        """Number of steps currently stored (at most `capacity`)."""
        return self._size

    @property
    def total_added(self) -> int:
        """Number of steps ever added, including overwritten ones."""
        return self._total

    def sample(
        self, batch_size: int, length: int, rng: np.random.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """B windows of T consecutive stored steps, as CPU tensors shaped (B, T, ...).

        `rng` draws the windows instead of the buffer's own generator (which then stays put).
        """
        if batch_size <= 0 or length <= 0:
            raise ValueError(f"batch_size and length must be > 0, got {batch_size}, {length}")
        if self._size < length:
            raise ValueError(
                f"cannot sample sequences of length {length}: replay holds only "
                f"{self._size} steps (capacity {self.capacity})"
            )
        # Windows are drawn in chronological offsets from the oldest step, so none can join
        # the newest step to the overwritten-oldest one across the write head.
        oldest = (self._pos - self._size) % self.capacity
        starts = (rng or self._rng).integers(0, self._size - length + 1, size=batch_size)
        idx = (oldest + starts[:, None] + np.arange(length)[None, :]) % self.capacity
        # Fancy indexing returns fresh arrays, so the tensors never alias the live buffer.
        return {key: torch.from_numpy(self._data[key][idx]) for key in _KEYS}

    def state_dict(self) -> dict:
        """Filled part of the buffer, write position, counts and RNG state.

        The arrays are views of the live buffer (as torch's state_dict shares parameter
        storage), so save them before adding more steps.
        """
        return {
            "capacity": self.capacity,
            "obs_shape": self.obs_shape,
            "obs_dtype": self.obs_dtype.str,
            "action_dim": self.action_dim,
            "pos": self._pos,
            "size": self._size,
            "total": self._total,
            "rng": copy.deepcopy(self._rng.bit_generator.state),
            "data": {key: self._data[key][: self._size] for key in _KEYS},
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore contents, position, counts and RNG state saved by `state_dict`."""
        saved = (
            int(state["capacity"]),
            tuple(state["obs_shape"]),
            np.dtype(state["obs_dtype"]),
            int(state["action_dim"]),
        )
        mine = (self.capacity, self.obs_shape, self.obs_dtype, self.action_dim)
        if saved != mine:
            raise ValueError(
                "replay state does not match this buffer: saved (capacity, obs_shape, "
                f"obs_dtype, action_dim)={saved}, this buffer has {mine}"
            )
        size = int(state["size"])
        for key in _KEYS:
            values = np.asarray(state["data"][key])
            if len(values) != size:
                raise ValueError(f"replay state '{key}' has {len(values)} steps, expected {size}")
            self._data[key][:size] = values
        self._pos = int(state["pos"])
        self._size = size
        self._total = int(state["total"])
        self._rng.bit_generator.state = copy.deepcopy(state["rng"])
