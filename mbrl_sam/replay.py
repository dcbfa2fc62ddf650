"""A ring-buffer replay of one stream of env steps, sampled as fixed-length sequences.

The buffer only stores and reads records. Which windows a batch holds is its sampler's choice
(`mbrl_sam.replay_sampler`); keeping the records on disk is a `ChunkStore`'s job
(`mbrl_sam.replay_store`), so that checkpoints need not hold them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import numpy as np
import torch

from mbrl_sam.replay_sampler import Sampler, UniformWindows

KEYS = ("obs", "action", "reward", "is_first", "is_terminal")


class SequenceReplay:
    """Fixed-capacity replay of consecutive env steps; samples B windows of T steps."""

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        obs_dtype: np.dtype,
        action_dim: int,
        seed: int = 0,
        sampler: Sampler | None = None,
    ) -> None:
        """`seed` seeds the generator that `sample` draws windows with (saved with the
        buffer); `sampler` chooses them (uniformly random windows by default)."""
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
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.sampler = sampler if sampler is not None else UniformWindows()

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
        """B windows of T consecutive stored steps chosen by the sampler, as CPU tensors shaped
        (B, T, ...). `rng` draws them instead of the buffer's own generator (which then stays
        put)."""
        if batch_size <= 0 or length <= 0:
            raise ValueError(f"batch_size and length must be > 0, got {batch_size}, {length}")
        if self._size < length:
            raise ValueError(
                f"cannot sample sequences of length {length}: replay holds only "
                f"{self._size} steps (capacity {self.capacity})"
            )
        return self.sampler.sample(self, batch_size, length, rng or self.rng)

    def windows(self, starts: np.ndarray, length: int) -> dict[str, torch.Tensor]:
        """The windows of `length` steps that begin `starts` steps after the oldest stored one,
        as tensors shaped (len(starts), length, ...)."""
        starts = np.asarray(starts)
        if starts.size and (starts.min() < 0 or starts.max() + length > self._size):
            raise ValueError(
                f"replay windows of length {length} must start in [0, {self._size - length}], "
                f"got starts in [{starts.min()}, {starts.max()}]"
            )
        # Offsets count from the oldest step, so no window can join the newest step to the
        # overwritten-oldest one across the write head.
        oldest = (self._pos - self._size) % self.capacity
        idx = (oldest + starts[:, None] + np.arange(length)[None, :]) % self.capacity
        # Fancy indexing returns fresh arrays, so the tensors never alias the live buffer.
        return {key: torch.from_numpy(self._data[key][idx]) for key in KEYS}

    def records(self, start: int, end: int) -> dict[str, np.ndarray]:
        """Copies of records [start, end), numbered from the first ever added; they must all
        be stored still."""
        if start < self._total - self._size or end > self._total or start > end:
            raise ValueError(
                f"replay records {start}-{end} are not stored: it holds "
                f"{self._total - self._size}-{self._total}"
            )
        idx = np.arange(start, end) % self.capacity
        return {key: self._data[key][idx] for key in KEYS}

    def current_episode(self) -> dict[str, np.ndarray] | None:
        """The stored records of the episode in progress (from its is_first record on), or
        None when its start has been overwritten."""
        for back in range(1, self._size + 1):
            if self._data["is_first"][(self._pos - back) % self.capacity]:
                return self.records(self._total - back, self._total)
        return None

    def state_dict(self, records: bool = True) -> dict:
        """Write position, counts and the sampling RNG's state; with `records`, the filled part
        of the buffer too (views of it: save them before adding more). Without them the
        records must be kept elsewhere (chunk files). Writes nothing anywhere."""
        state = {
            "capacity": self.capacity,
            "obs_shape": self.obs_shape,
            "obs_dtype": self.obs_dtype.str,
            "action_dim": self.action_dim,
            "pos": self._pos,
            "size": self._size,
            "total": self._total,
            "rng": copy.deepcopy(self.rng.bit_generator.state),
        }
        if records:
            state["data"] = {key: self._data[key][: self._size] for key in KEYS}
        return state

    def check_fits(self, state: dict) -> None:
        """ValueError unless `state` was saved by a buffer of this layout."""
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

    def load_state_dict(
        self, state: dict, records: Iterable[tuple[int, dict[str, np.ndarray]]] | None = None
    ) -> None:
        """Restore contents, position, counts and RNG state saved by `state_dict`: the records
        from the state, or else from `records`, (first record, arrays) pairs covering the
        stored ones (a ChunkStore reads them)."""
        self.check_fits(state)
        size, total = int(state["size"]), int(state["total"])
        if "data" in state:
            for key in KEYS:
                values = np.asarray(state["data"][key])
                if len(values) != size:
                    raise ValueError(
                        f"replay state '{key}' has {len(values)} steps, expected {size}"
                    )
                self._data[key][:size] = values
        elif records is None:
            raise ValueError("replay state holds no records and no chunk files were given")
        else:
            for first, arrays in records:
                idx = np.arange(first, first + len(arrays["reward"])) % self.capacity
                for key in KEYS:
                    self._data[key][idx] = arrays[key]
        self._pos = int(state["pos"])
        self._size = size
        self._total = total
        self.rng.bit_generator.state = copy.deepcopy(state["rng"])
