"""Checkpoint files (atomic, checksummed, the previous one kept) and capture/restore of every
global random-number generator."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from mbrl_sam.errors import ConfigError, RunError, is_disk_full
from mbrl_sam.runtime import seed_everything

CHECKPOINT = "checkpoint.pt"  # its file name in a run_dir
PREVIOUS = "checkpoint.prev.pt"  # the one before, kept as a fallback (previous_path)


def previous_path(path: Path) -> Path:
    """Where the checkpoint before `path` is kept: checkpoint.pt -> checkpoint.prev.pt."""
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def checksum_path(path: Path) -> Path:
    """The file beside a checkpoint and its previous one listing their SHA-256s (`sha256sum`
    format): checkpoint.pt and checkpoint.prev.pt -> checkpoint.sha256."""
    return path.with_name(path.name.split(".")[0] + ".sha256")


def _listed_hashes(path: Path) -> dict[str, str] | None:
    """The hashes a checksum file lists, by file name; None when there is no such file."""
    listing = checksum_path(path)
    if not listing.exists():
        return None
    rows = [line.split() for line in listing.read_text(encoding="utf-8").splitlines()]
    return {row[1]: row[0] for row in rows if len(row) == 2}


class _HashingWriter:
    """A file wrapper that hashes what is written through it."""

    def __init__(self, file: BinaryIO) -> None:
        self.file, self.hash = file, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write `state` to `path` with its checksum, keeping the previous checkpoint beside it.

    The new file is read back and checked against what was written before anything replaces
    the old one; a crash at any point leaves the old checkpoint or the new one loadable, and
    RunError says so when the disk is full.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temp file must share the target's filesystem for os.replace to be an atomic rename.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            writer = _HashingWriter(f)
            torch.save(state, writer)
            f.flush()
            os.fsync(f.fileno())
        digest = writer.hash.hexdigest()
        if _file_hash(Path(tmp)) != digest:
            raise RunError(f"checkpoint {str(path)!r} read back differs from what was written")
        # mkstemp creates the file private to the owner; checkpoints are ordinary output files.
        os.chmod(tmp, 0o644)
        # The listing names the new file's hash before the file exists, and keeps the current
        # one's, which becomes the previous: a file is sound when its hash is listed, so a
        # crash between any two of these steps leaves a loadable, verifiable checkpoint.
        # The one to keep as previous: the latest, or the previous if a crash left no latest;
        # listed only while sound (its hash listed already, or no listing: an older run).
        keep = path if path.exists() else previous_path(path)
        rows = f"{digest}  {path.name}\n"
        if keep.exists():
            before, kept = _listed_hashes(path), _file_hash(keep)
            if before is None or kept in before.values():
                rows += f"{kept}  {previous_path(path).name}\n"
        _write_text(checksum_path(path), rows)
        if path.exists():
            os.replace(path, previous_path(path))
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if is_disk_full(err):
            raise RunError(
                f"no space left on device while writing checkpoint {str(path)!r}; the previous "
                "checkpoint is kept: free space and rerun to resume"
            ) from None
        raise
    _fsync_dir(path.parent)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
    """Read a checkpoint written by `save_checkpoint`, checked against its checksum when it
    has one; ConfigError if it is missing, corrupt or truncated."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint {str(path)!r} cannot be loaded: no such file")
    listed = _listed_hashes(path)
    if listed is not None and _file_hash(path) not in listed.values():
        raise ConfigError(f"checkpoint {str(path)!r} is corrupt: its SHA-256 does not match")
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


def load_latest(
    run_dir: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[dict | None, str]:
    """A run's newest loadable checkpoint: (state, note); (None, "") when it has none. A
    corrupt latest one falls back to the previous, and the note says so."""
    run_dir = Path(run_dir)
    latest = run_dir / CHECKPOINT
    previous = previous_path(latest)
    if not latest.exists() and not previous.exists():
        return None, ""
    try:
        if latest.exists():
            return load_checkpoint(latest, map_location), ""
        problem = f"{str(latest)!r} is missing (a write was cut short)"
    except ConfigError as err:
        if not previous.exists():
            raise
        problem = str(err)
    state = load_checkpoint(previous, map_location)
    return state, f"{problem}; using the previous checkpoint {str(previous)!r} instead"


def remove_stale_temp(run_dir: str | os.PathLike) -> list[Path]:
    """Delete the temp files that writes cut short by a kill left in a run_dir."""
    run_dir = Path(run_dir)
    stale = [*run_dir.glob(f".{CHECKPOINT}.*.tmp"), *run_dir.glob(".*.sha256.tmp")]
    stale += [*run_dir.glob("*.jsonl.tmp"), *run_dir.glob(".*.json.*.tmp")]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


@contextlib.contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Run a block with every global generator seeded from `seed`, then put them all back, so
    that what the block draws (evaluation, measurement) never shifts the training run's."""
    saved = rng_state()
    seed_everything(seed)
    try:
        yield
    finally:
        set_rng_state(saved)


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


def all_finite(tree: Any) -> bool:
    """True when every floating-point tensor in a nested state dict is finite."""
    if isinstance(tree, torch.Tensor):
        return not tree.is_floating_point() or bool(torch.isfinite(tree).all())
    if isinstance(tree, dict):
        return all(all_finite(v) for v in tree.values())
    if isinstance(tree, list | tuple):
        return all(all_finite(v) for v in tree)
    return True
