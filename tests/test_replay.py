"""Tests for the sequence replay buffer: layout, windows, wrap-around and state round-trip."""

import numpy as np
import pytest
import torch

from mbrl_sam.replay import SequenceReplay


def _fill_counter(replay: SequenceReplay, n: int, episode_len: int = 7) -> None:
    # obs holds the global step index, so consecutive stored steps differ by exactly 1.
    for i in range(n):
        first = i % episode_len == 0
        replay.add(
            obs=np.full(replay.obs_shape, i, dtype=replay.obs_dtype),
            action=np.full(replay.action_dim, i + 0.5, dtype=np.float32),
            reward=float(i),
            is_first=first,
            is_terminal=i % episode_len == episode_len - 1,
        )


def test_shapes_and_dtypes_uint8_pixels():
    replay = SequenceReplay(50, (3, 8, 8), np.uint8, action_dim=2)
    _fill_counter(replay, 30)
    assert replay._data["obs"].dtype == np.uint8
    batch = replay.sample(4, 5)
    assert batch["obs"].shape == (4, 5, 3, 8, 8) and batch["obs"].dtype == torch.uint8
    assert batch["action"].shape == (4, 5, 2) and batch["action"].dtype == torch.float32
    assert batch["reward"].shape == (4, 5) and batch["reward"].dtype == torch.float32
    assert batch["is_first"].shape == (4, 5) and batch["is_first"].dtype == torch.bool
    assert batch["is_terminal"].shape == (4, 5) and batch["is_terminal"].dtype == torch.bool
    assert all(v.device.type == "cpu" for v in batch.values())


def test_float_obs_stay_float32_and_first_action_is_zero():
    replay = SequenceReplay(100, (4,), np.float32, action_dim=3)
    _fill_counter(replay, 40)
    batch = replay.sample(8, 10)
    assert batch["obs"].dtype == torch.float32
    first = batch["is_first"]
    assert first.any()
    assert torch.all(batch["action"][first] == 0)
    assert torch.all(batch["action"][~first] != 0)


def test_windows_are_consecutive():
    replay = SequenceReplay(200, (2,), np.float32, action_dim=1)
    _fill_counter(replay, 150)
    batch = replay.sample(64, 12)
    obs = batch["obs"][..., 0]
    assert torch.all(obs[:, 1:] - obs[:, :-1] == 1)
    # Every field comes from the same stored step as the obs.
    assert torch.equal(batch["reward"], obs)
    assert len(replay) == 150 and replay.total_added == 150


def test_wraparound_keeps_newest_and_never_straddles_write_head():
    capacity, added, length = 37, 100, 9
    replay = SequenceReplay(capacity, (1,), np.float32, action_dim=1, seed=3)
    _fill_counter(replay, added)
    assert len(replay) == capacity and replay.total_added == added
    stored = np.sort(replay._data["obs"][:, 0])
    np.testing.assert_array_equal(stored, np.arange(added - capacity, added))
    seen_starts = set()
    for _ in range(300):
        obs = replay.sample(16, length)["obs"][..., 0]
        # A straddling window would jump from the newest step back to the oldest one.
        assert torch.all(obs[:, 1:] - obs[:, :-1] == 1)
        assert obs.min() >= added - capacity and obs.max() <= added - 1
        seen_starts.update(obs[:, 0].tolist())
    # All valid windows are reachable, including those touching the oldest and newest step.
    assert seen_starts == set(range(added - capacity, added - length + 1))


def test_too_few_steps_raises():
    replay = SequenceReplay(100, (2,), np.float32, action_dim=1)
    with pytest.raises(ValueError, match="holds only 0 steps"):
        replay.sample(2, 4)
    _fill_counter(replay, 3)
    with pytest.raises(ValueError, match="length 4"):
        replay.sample(2, 4)
    replay.add(np.zeros(2, np.float32), np.zeros(1, np.float32), 0.0, False, False)
    assert replay.sample(2, 4)["obs"].shape == (2, 4, 2)


def test_add_rejects_wrong_shapes():
    replay = SequenceReplay(10, (2,), np.float32, action_dim=1)
    with pytest.raises(ValueError, match="obs has shape"):
        replay.add(np.zeros(3), np.zeros(1), 0.0, True, False)
    with pytest.raises(ValueError, match="action has shape"):
        replay.add(np.zeros(2), np.zeros(2), 0.0, True, False)


@pytest.mark.parametrize("added", [20, 75])
def test_state_dict_round_trip(tmp_path, added):
    replay = SequenceReplay(50, (3, 4, 4), np.uint8, action_dim=2, seed=11)
    _fill_counter(replay, added)
    replay.sample(3, 5)  # advance the RNG so its state is not the seed's
    path = tmp_path / "replay.pt"
    torch.save(replay.state_dict(), path)
    state = torch.load(path, weights_only=False)
    # Only the filled part is stored, not the whole capacity.
    assert len(state["data"]["obs"]) == min(added, 50)

    restored = SequenceReplay(50, (3, 4, 4), np.uint8, action_dim=2, seed=999)
    restored.load_state_dict(state)
    assert len(restored) == len(replay) and restored.total_added == replay.total_added
    for key, values in replay._data.items():
        np.testing.assert_array_equal(restored._data[key][: len(replay)], values[: len(replay)])
    for _ in range(5):
        a, b = replay.sample(6, 7), restored.sample(6, 7)
        for key in a:
            assert torch.equal(a[key], b[key]), key
    # Adding after a reload continues at the same write position.
    for r in (replay, restored):
        _fill_counter(r, 13)
    for key in replay._data:
        np.testing.assert_array_equal(
            restored._data[key][: len(replay)], replay._data[key][: len(replay)]
        )


def test_load_state_dict_rejects_mismatched_layout():
    replay = SequenceReplay(20, (2,), np.float32, action_dim=1)
    _fill_counter(replay, 5)
    other = SequenceReplay(20, (3,), np.float32, action_dim=1)
    with pytest.raises(ValueError, match="does not match"):
        other.load_state_dict(replay.state_dict())


def test_same_seed_gives_same_samples():
    a = SequenceReplay(100, (2,), np.float32, action_dim=1, seed=5)
    b = SequenceReplay(100, (2,), np.float32, action_dim=1, seed=5)
    _fill_counter(a, 60)
    _fill_counter(b, 60)
    assert torch.equal(a.sample(8, 6)["obs"], b.sample(8, 6)["obs"])


def test_current_episode_is_the_records_since_the_last_first_one():
    replay = SequenceReplay(120, (1,), np.float32, action_dim=1)
    _fill_counter(replay, 173, episode_len=50)  # episodes start every 50 records: the last at 150
    episode = replay.current_episode()
    assert episode["is_first"][0] and not episode["is_first"][1:].any()
    np.testing.assert_array_equal(episode["reward"], np.arange(150, 173, dtype=np.float32))
    small = SequenceReplay(30, (1,), np.float32, action_dim=1)
    _fill_counter(small, 90, episode_len=50)  # its episode began 40 records ago: overwritten
    assert small.current_episode() is None


def test_records_and_windows_outside_what_is_stored_are_refused():
    replay = SequenceReplay(20, (1,), np.float32, action_dim=1)
    _fill_counter(replay, 30)  # records 10-30 are stored
    np.testing.assert_array_equal(replay.records(25, 30)["reward"], np.arange(25, 30))
    with pytest.raises(ValueError, match="records 5-30 are not stored: it holds 10-30"):
        replay.records(5, 30)
    with pytest.raises(ValueError, match=r"must start in \[0, 16\], got starts in \[0, 17\]"):
        replay.windows(np.array([0, 17]), 4)
