"""Atomic checkpoint files and capture/restore of every global random-number generator."""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

from mbrl_sam.errors import ConfigError

CHECKPOINT = "checkpoint.pt"  # its file name in a run_dir


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write `state` to `path` atomically: readers see the old file or the new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temp file must share the target's filesystem for os.replace to be an atomic rename.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file private to the owner; checkpoints are ordinary output files.
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    # Persists the rename itself across a power loss; not every platform can open a directory.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by `save_checkpoint`; ConfigError if it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint {str(path)!r} cannot be loaded: no such file")
    try:
        # weights_only=False because the state holds numpy arrays and RNG states; checkpoints
        # are trusted files written by this library, never downloaded ones.
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:
        raise ConfigError(
            f"checkpoint {str(path)!r} cannot be loaded (corrupt or truncated?): "
            f"{type(e).__name__}: {e}"
        ) from e
    if not isinstance(state, dict):
        raise ConfigError(
            f"checkpoint {str(path)!r} holds a {type(state).__name__}, expected a dict"
        )
    return state


def rng_state() -> dict:
    """States of python `random`, numpy's global RNG, torch CPU and every CUDA device."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict) -> None:
    """Restore generator states captured by `rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    # map_location may have moved the tensor; torch accepts only a CPU byte tensor here.
    torch.set_rng_state(torch.as_tensor(state["torch"], dtype=torch.uint8).cpu())
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        # A run resumed on fewer GPUs restores the devices it has and ignores the rest.
        for device, device_state in enumerate(cuda[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(device_state.cpu(), device)
