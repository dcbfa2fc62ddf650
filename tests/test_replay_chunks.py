"""Replay records on disk as chunk files: named by their records, read back across chunks,
corruption and gaps reported, dropped from either end."""

import numpy as np
import pytest

from mbrl_sam.errors import ConfigError
from mbrl_sam.replay_chunks import ReplayChunks


def _records(start: int, end: int) -> dict[str, np.ndarray]:
    steps = np.arange(start, end)
    return {"obs": steps[:, None].astype(np.float32) * [1, 2], "reward": steps.astype(np.float32)}


def _chunks(tmp_path, *bounds: tuple[int, int]) -> ReplayChunks:
    chunks = ReplayChunks(tmp_path / "replay")
    for start, end in bounds:
        chunks.write(start, _records(start, end))
    return chunks


def test_chunks_are_named_by_their_records_and_read_back_across_them(tmp_path):
    chunks = _chunks(tmp_path, (0, 100), (100, 250))
    names = [c.path.name for c in chunks.chunks()]
    assert names == ["000000000000-000000000100.npz", "000000000100-000000000250.npz"]
    assert chunks.written == 250
    parts = list(chunks.read(50, 200))
    assert [first for first, _ in parts] == [50, 100]
    got = np.concatenate([arrays["reward"] for _, arrays in parts])
    np.testing.assert_array_equal(got, np.arange(50, 200, dtype=np.float32))
    np.testing.assert_array_equal(parts[1][1]["obs"], _records(100, 200)["obs"])


def test_a_corrupt_or_missing_chunk_is_a_clear_error(tmp_path):
    chunks = _chunks(tmp_path, (0, 100), (100, 250))
    chunk = chunks.chunks()[1].path
    data = bytearray(chunk.read_bytes())
    data[200:264] = bytes(64)  # inside the first array's bytes: the zip CRC no longer matches
    chunk.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="corrupt"):
        list(chunks.read(0, 250))
    chunk.unlink()
    with pytest.raises(ConfigError, match="records 100-250 are missing"):
        list(chunks.read(0, 250))


def test_chunks_are_dropped_past_a_count_with_temp_files_or_before_one(tmp_path):
    chunks = _chunks(tmp_path, (0, 100), (100, 200), (200, 300))
    (chunks.directory / ".000000000300-000000000400.npz.tmp").write_bytes(b"cut short")
    chunks.drop_after(150)  # the chunk holding record 150 ends past it: written after
    assert [(c.start, c.end) for c in chunks.chunks()] == [(0, 100)]
    assert not list(chunks.directory.glob(".*.tmp"))
    chunks = _chunks(tmp_path / "b", (0, 100), (100, 200), (200, 300))
    chunks.drop_before(199)  # only chunks whose records all come before 199
    assert [(c.start, c.end) for c in chunks.chunks()] == [(100, 200), (200, 300)]
