"""A ring-buffer replay of one stream of env steps, sampled as fixed-length sequences, kept on
disk as append-only chunk files when given a `ReplayChunks` (so checkpoints need not hold it)."""

from __future__ import annotations

import copy

import numpy as np
import torch

from mbrl_sam.replay_chunks import ReplayChunks

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
        chunks: ReplayChunks | None = None,
        chunk_size: int = 1024,
    ) -> None:
        """With `chunks`, every `chunk_size` added records (and what is pending at each
        `state_dict()`) are written to disk, and `load_state_dict` reads them back."""
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
        self.chunks = chunks
        self.chunk_size = min(int(chunk_size), self.capacity)
        self._flushed = 0  # records written to chunk files
        self._saved = 0  # records covered by the last state_dict()

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
        if self.chunks is not None and self._total - self._flushed >= self.chunk_size:
            self._write_chunk()

    def _write_chunk(self) -> None:
        """Write the records added since the last chunk as a new chunk file."""
        idx = np.arange(self._flushed, self._total) % self.capacity
        self.chunks.write(self._flushed, {key: self._data[key][idx] for key in _KEYS})
        self._flushed = self._total

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
        """Write position, counts and RNG state, and the records themselves: without chunk
        files, the filled part of the buffer (views of it: save them before adding more);
        with them, pending records go to a chunk and the state holds only their count."""
        state = {
            "capacity": self.capacity,
            "obs_shape": self.obs_shape,
            "obs_dtype": self.obs_dtype.str,
            "action_dim": self.action_dim,
            "pos": self._pos,
            "size": self._size,
            "total": self._total,
            "rng": copy.deepcopy(self._rng.bit_generator.state),
        }
        if self.chunks is None:
            state["data"] = {key: self._data[key][: self._size] for key in _KEYS}
            return state
        if self._total > self._flushed:
            self._write_chunk()
        # Chunks evicted before the previous save: that checkpoint (kept as a fallback until
        # this one is verified) may still need the rest.
        self.chunks.drop_before(self._saved - self.capacity)
        self._saved = self._total
        return state

    def load_state_dict(self, state: dict, read_only: bool = False) -> None:
        """Restore contents, position, counts and RNG state saved by `state_dict`.

        Chunk files written after that state are deleted, unless `read_only` (a reader beside a
        run that may still be training: then no chunk file is written or deleted)."""
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
        size, total = int(state["size"]), int(state["total"])
        if "data" in state:
            for key in _KEYS:
                values = np.asarray(state["data"][key])
                if len(values) != size:
                    raise ValueError(
                        f"replay state '{key}' has {len(values)} steps, expected {size}"
                    )
                self._data[key][:size] = values
        elif self.chunks is None:
            raise ValueError("replay state holds no records and this buffer has no chunk files")
        else:
            # Chunks past the checkpoint were written by the run that died after it.
            if not read_only:
                self.chunks.drop_after(total)
            for first, arrays in self.chunks.read(total - size, total):
                idx = np.arange(first, first + len(arrays["reward"])) % self.capacity
                for key in _KEYS:
                    self._data[key][idx] = arrays[key]
        self._pos = int(state["pos"])
        self._size = size
        self._total = total
        self._flushed = self._saved = total
        self._rng.bit_generator.state = copy.deepcopy(state["rng"])
        if "data" in state and self.chunks is not None and not read_only:
            # A checkpoint from before chunk files: its records become the first chunk.
            self.chunks.drop_after(total - size)
            self._flushed = total - size
            self._write_chunk()

    def current_episode(self) -> dict[str, np.ndarray] | None:
        """The stored records of the episode in progress (from its is_first record on), or
        None when its start has been overwritten."""
        for back in range(1, self._size + 1):
            if self._data["is_first"][(self._pos - back) % self.capacity]:
                idx = np.arange(self._total - back, self._total) % self.capacity
                return {key: self._data[key][idx] for key in _KEYS}
        return None
