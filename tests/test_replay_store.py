"""A replay mirrored as chunk files: written as records arrive and at flush, retained for the
checkpoints kept, rebuilt exactly on load; its state written by no one but the checkpointer."""

from pathlib import Path

import numpy as np
import pytest
import torch

from mbrl_sam.replay import SequenceReplay
from mbrl_sam.replay_chunks import ReplayChunks
from mbrl_sam.replay_store import ChunkStore


def _store(tmp_path: Path, capacity: int = 1000, chunk_size: int = 100, seed: int = 0):
    replay = SequenceReplay(capacity, (3,), np.float32, 2, seed)
    return ChunkStore(ReplayChunks(tmp_path / "replay"), replay, chunk_size)


def _add(store: ChunkStore, start: int, n: int) -> None:
    for i in range(start, start + n):
        obs = np.full(3, i, np.float32)
        store.replay.add(obs, np.full(2, i + 0.5, np.float32), float(i), i % 50 == 0, i % 50 == 49)
        store.write_due()


def _contents(replay: SequenceReplay) -> dict[str, np.ndarray]:
    return {key: array.copy() for key, array in replay._data.items()}


def _bounds(store: ChunkStore) -> list[tuple[int, int]]:
    return [(c.start, c.end) for c in store.files.chunks()]


def _files(directory: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in directory.rglob("*")}


def test_chunks_are_written_as_records_arrive_and_the_rest_at_flush(tmp_path):
    store = _store(tmp_path)
    _add(store, 0, 250)
    assert _bounds(store) == [(0, 100), (100, 200)] and store.pending == 50
    store.flush()
    assert _bounds(store)[-1] == (200, 250) and store.pending == 0
    store.flush()  # nothing pending: no empty chunk
    assert len(_bounds(store)) == 3
    assert "data" not in store.state_dict() and store.state_dict()["total"] == 250


def test_state_dict_writes_and_deletes_nothing_and_refuses_records_not_on_disk(tmp_path):
    store = _store(tmp_path, capacity=200, chunk_size=50)
    _add(store, 0, 1000)
    store.flush()
    store.retain(1000)
    _add(store, 1000, 130)
    before = _files(tmp_path)
    with pytest.raises(RuntimeError, match="30 replay records are not in chunk files"):
        store.state_dict()
    store.replay.state_dict(records=False)
    assert _files(tmp_path) == before
    store.flush()
    before = _files(tmp_path)
    state = store.state_dict()
    assert _files(tmp_path) == before and state["total"] == 1130


def test_a_loaded_replay_equals_the_saved_one_and_samples_the_same(tmp_path):
    store = _store(tmp_path, capacity=180, chunk_size=64)  # wrapped around the ring
    _add(store, 0, 437)
    store.flush()
    state = store.state_dict()
    expected = _contents(store.replay)
    want = store.replay.sample(8, 10)

    loaded = _store(tmp_path, capacity=180, chunk_size=64, seed=99)
    loaded.load_state_dict(state)
    for key, array in expected.items():
        np.testing.assert_array_equal(loaded.replay._data[key], array, err_msg=key)
    got = loaded.replay.sample(8, 10)
    assert all(torch.equal(want[k], got[k]) for k in want)
    # It goes on writing where it left off.
    _add(loaded, 437, 100)
    assert _bounds(loaded)[-1][1] == 437 + 64


def test_records_written_after_the_checkpoint_are_dropped_on_load(tmp_path):
    store = _store(tmp_path)
    _add(store, 0, 120)
    store.flush()
    state = store.state_dict()
    expected = _contents(store.replay)
    _add(store, 120, 300)  # the run went on and died before its next checkpoint
    assert store.files.written == 420
    loaded = _store(tmp_path)
    loaded.load_state_dict(state)
    assert loaded.files.written == 120 and len(loaded.replay) == 120
    for key, array in expected.items():
        np.testing.assert_array_equal(loaded.replay._data[key][:120], array[:120], err_msg=key)


def test_a_read_only_load_writes_and_deletes_nothing(tmp_path):
    store = _store(tmp_path)
    _add(store, 0, 120)
    store.flush()
    state = store.state_dict()
    _add(store, 120, 300)
    before = _files(tmp_path)
    reader = _store(tmp_path)
    reader.load_state_dict(state, read_only=True)
    assert _files(tmp_path) == before and len(reader.replay) == 120


def test_retain_deletes_evicted_chunks_once_no_kept_checkpoint_needs_them(tmp_path):
    store = _store(tmp_path, capacity=200, chunk_size=50)
    _add(store, 0, 1000)
    store.flush()
    first = store.state_dict()
    store.retain(1000)  # the first checkpoint is written: nothing older is kept to need more
    _add(store, 1000, 100)
    store.flush()
    store.retain(1100)
    # The checkpoint before (at 1000) is kept as the fallback: its records from 800 on stay.
    assert store.files.chunks()[0].start == 800 and store.files.written == 1100
    fallback = _store(tmp_path, capacity=200, chunk_size=50)
    fallback.load_state_dict(first, read_only=True)
    np.testing.assert_array_equal(
        np.sort(fallback.replay._data["reward"]), np.arange(800, 1000, dtype=np.float32)
    )


def test_records_overwritten_before_they_were_written_are_an_error(tmp_path):
    store = _store(tmp_path, capacity=100, chunk_size=100)
    for i in range(150):  # without write_due() after each add
        store.replay.add(np.zeros(3, np.float32), np.zeros(2, np.float32), float(i), False, False)
    with pytest.raises(RuntimeError, match="50 replay records were overwritten"):
        store.flush()


def test_a_checkpoint_from_before_chunk_files_loads_and_becomes_a_chunk(tmp_path):
    old = SequenceReplay(1000, (3,), np.float32, 2)
    _add(ChunkStore(ReplayChunks(tmp_path / "unused"), old, 10_000), 0, 130)
    state = old.state_dict()
    assert "data" in state
    store = _store(tmp_path)
    store.load_state_dict(state)
    assert _bounds(store) == [(0, 130)]
    again = _store(tmp_path)
    again.load_state_dict(store.state_dict())
    np.testing.assert_array_equal(again.replay._data["obs"][:130], old._data["obs"][:130])
