"""Replay records on disk as immutable, append-only chunk files in a run directory.

Records are numbered from 0 in the order they were added. A chunk file holds records
[start, end) and is never changed once written, so a checkpoint needs only the count of records
it covers: on resume, chunks written after it are dropped and the rest rebuild the buffer.
Chunks are `.npz` files, whose zip CRC-32 per array catches a corrupted chunk on reading.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mbrl_sam.errors import ConfigError

_NAME = re.compile(r"^(\d{12})-(\d{12})\.npz$")


@dataclass(frozen=True)
class Chunk:
    """One chunk file: records [start, end)."""

    start: int
    end: int
    path: Path


class ReplayChunks:
    """The chunk files of one replay buffer, in `directory`."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)

    def chunks(self) -> list[Chunk]:
        """Every complete chunk file, ordered by its first record."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in self.directory.iterdir():
            match = _NAME.match(path.name)
            if match:
                found.append(Chunk(int(match.group(1)), int(match.group(2)), path))
        return sorted(found, key=lambda c: c.start)

    @property
    def written(self) -> int:
        """Records on disk: the end of the last chunk (0 when there is none)."""
        chunks = self.chunks()
        return chunks[-1].end if chunks else 0

    def write(self, start: int, arrays: dict[str, np.ndarray]) -> Path:
        """Write records [start, start + len) as one chunk, atomically and durably."""
        length = len(next(iter(arrays.values())))
        end = start + length
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{start:012d}-{end:012d}.npz"
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return path

    def read(self, start: int, end: int) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """Records [start, end) chunk by chunk as (first record, arrays): one chunk in memory
        at a time. ConfigError when a record is missing or a chunk is corrupt."""
        expected = start
        for chunk in self.chunks():
            if chunk.end <= start or chunk.start >= end:
                continue
            if chunk.start > expected:
                break
            try:
                with np.load(chunk.path) as data:
                    lo, hi = max(expected, chunk.start), min(end, chunk.end)
                    arrays = {k: data[k][lo - chunk.start : hi - chunk.start] for k in data.files}
            except Exception as err:  # zipfile's BadZipFile (CRC), ValueError, OSError
                raise ConfigError(
                    f"replay chunk {str(chunk.path)!r} cannot be read (corrupt?): "
                    f"{type(err).__name__}: {err}"
                ) from None
            yield lo, arrays
            expected = hi
        if expected < end:
            raise ConfigError(
                f"replay records {expected}-{end} are missing from {str(self.directory)!r}; "
                "the run's replay cannot be rebuilt"
            )

    def drop_after(self, count: int) -> None:
        """Delete chunks past the first `count` records (written after the checkpoint that
        covers `count`) and any temp file a killed write left."""
        for chunk in self.chunks():
            if chunk.end > count:
                chunk.path.unlink()
        for tmp in self.directory.glob(".*.tmp") if self.directory.is_dir() else ():
            tmp.unlink()

    def drop_before(self, count: int) -> None:
        """Delete chunks whose records all come before record `count` (evicted from replay)."""
        for chunk in self.chunks():
            if chunk.end <= count:
                chunk.path.unlink()
