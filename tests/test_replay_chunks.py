"""Replay on disk: append-only chunk files, rebuilt exactly on load, never in the checkpoint."""

import numpy as np
import pytest
import torch

from mbrl_sam.errors import ConfigError
from mbrl_sam.replay import SequenceReplay
from mbrl_sam.replay_chunks import ReplayChunks


def _replay(tmp_path, capacity=1000, chunk_size=100, obs_shape=(3,), seed=0) -> SequenceReplay:
    chunks = ReplayChunks(tmp_path / "replay")
    return SequenceReplay(capacity, obs_shape, np.float32, 2, seed, chunks, chunk_size)


def _add(replay: SequenceReplay, start: int, n: int) -> None:
    for i in range(start, start + n):
        obs = np.full(replay.obs_shape, i, np.float32)
        replay.add(obs, np.full(2, i + 0.5, np.float32), float(i), i % 50 == 0, i % 50 == 49)


def _contents(replay: SequenceReplay) -> dict[str, np.ndarray]:
    return {key: array.copy() for key, array in replay._data.items()}


def test_chunks_are_written_as_records_arrive_and_the_rest_at_each_save(tmp_path):
    replay = _replay(tmp_path)
    _add(replay, 0, 250)
    names = [c.path.name for c in replay.chunks.chunks()]
    assert names == ["000000000000-000000000100.npz", "000000000100-000000000200.npz"]
    state = replay.state_dict()
    assert "data" not in state and state["total"] == 250
    assert [(c.start, c.end) for c in replay.chunks.chunks()][-1] == (200, 250)


def test_a_loaded_replay_equals_the_saved_one_and_samples_the_same(tmp_path):
    replay = _replay(tmp_path, capacity=180, chunk_size=64)  # wrapped around the ring
    _add(replay, 0, 437)
    state = replay.state_dict()
    expected = _contents(replay)
    want = replay.sample(8, 10)

    loaded = _replay(tmp_path, capacity=180, chunk_size=64, seed=99)
    loaded.load_state_dict(state)
    for key, array in expected.items():
        np.testing.assert_array_equal(loaded._data[key], array, err_msg=key)
    got = loaded.sample(8, 10)
    assert all(torch.equal(want[k], got[k]) for k in want)
    # It goes on writing where it left off.
    _add(loaded, 437, 100)
    ends = [c.end for c in loaded.chunks.chunks()]
    assert ends[-1] == 437 + 64


def test_records_written_after_the_checkpoint_are_dropped_on_load(tmp_path):
    replay = _replay(tmp_path)
    _add(replay, 0, 120)
    state = replay.state_dict()
    expected = _contents(replay)
    _add(replay, 120, 300)  # the run went on and died before its next checkpoint
    assert replay.chunks.written == 420
    loaded = _replay(tmp_path)
    loaded.load_state_dict(state)
    assert loaded.chunks.written == 120 and len(loaded) == 120
    for key, array in expected.items():
        np.testing.assert_array_equal(loaded._data[key][:120], array[:120], err_msg=key)


def test_evicted_chunks_are_deleted_once_no_checkpoint_needs_them(tmp_path):
    replay = _replay(tmp_path, capacity=200, chunk_size=50)
    _add(replay, 0, 1000)
    replay.state_dict()
    _add(replay, 1000, 100)
    replay.state_dict()
    # The previous save (at 1000) needs records from 800 on; older chunks are gone.
    assert replay.chunks.chunks()[0].start == 800
    assert replay.chunks.written == 1100


def test_a_corrupt_or_missing_chunk_is_a_clear_error(tmp_path):
    replay = _replay(tmp_path)
    _add(replay, 0, 250)
    state = replay.state_dict()
    chunk = replay.chunks.chunks()[1].path
    data = bytearray(chunk.read_bytes())
    data[200:264] = bytes(64)  # inside the first array's bytes: the zip CRC no longer matches
    chunk.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="corrupt"):
        _replay(tmp_path).load_state_dict(state)
    chunk.unlink()
    with pytest.raises(ConfigError, match="records 100-250 are missing"):
        _replay(tmp_path).load_state_dict(state)


def test_a_checkpoint_from_before_chunk_files_loads_and_becomes_a_chunk(tmp_path):
    old = SequenceReplay(1000, (3,), np.float32, 2)
    _add(old, 0, 130)
    state = old.state_dict()
    assert "data" in state
    replay = _replay(tmp_path)
    replay.load_state_dict(state)
    assert [(c.start, c.end) for c in replay.chunks.chunks()] == [(0, 130)]
    again = _replay(tmp_path)
    again.load_state_dict(replay.state_dict())
    np.testing.assert_array_equal(again._data["obs"][:130], old._data["obs"][:130])


def test_current_episode_is_the_records_since_the_last_first_one(tmp_path):
    replay = _replay(tmp_path, capacity=120)
    _add(replay, 0, 173)  # episodes start every 50 records: the last at 150
    episode = replay.current_episode()
    assert episode["is_first"][0] and not episode["is_first"][1:].any()
    np.testing.assert_array_equal(episode["reward"], np.arange(150, 173, dtype=np.float32))
    small = _replay(tmp_path / "small", capacity=30)
    _add(small, 0, 90)  # the episode began 40 records ago, before the oldest kept one
    assert small.current_episode() is None
