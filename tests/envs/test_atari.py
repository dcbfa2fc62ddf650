"""Atari-100k adapter on real ALE games: spec, pooling, no-op starts, episode ends, errors."""

import cv2
import gymnasium as gym
import numpy as np
import pytest

from envs import Env, list_tasks, make_env, validate_task
from envs.atari import GAMES, MAX_FRAMES, AtariEnv, max_pool
from mbrl_sam.errors import ConfigError

ale_py = pytest.importorskip("ale_py")

PONG_ACTIONS = 6
NOOP = np.eye(PONG_ACTIONS, dtype=np.float32)[0]


def _pong(**kwargs) -> Env:
    return make_env("atari/Pong", obs="pixels", **kwargs)


def test_pong_spec_and_one_hot_steps():
    with _pong() as env:
        assert env.spec.obs_shape == (3, 64, 64) and env.spec.obs_dtype == np.uint8
        assert env.spec.discrete and env.spec.action_dim == PONG_ACTIONS
        assert env.spec.action_repeat == 4
        obs = env.reset()
        assert obs.shape == (3, 64, 64) and obs.dtype == np.uint8 and obs.flags.c_contiguous
        assert obs.max() > obs.min()
        for action in np.eye(PONG_ACTIONS, dtype=np.float32):
            obs, reward, terminated, truncated = env.step(action)
            assert obs.shape == (3, 64, 64) and obs.dtype == np.uint8
            assert isinstance(reward, float) and np.isfinite(reward)
            assert terminated is False and truncated is False
        with pytest.raises(ValueError, match="action_dim=6"):
            env.step(np.zeros(3))


def test_emulator_gets_the_protocol_settings():
    with _pong() as env:
        ale = env._env.unwrapped.ale
        assert ale.getFloat("repeat_action_probability") == 0.0
        assert ale.getInt("max_num_frames_per_episode") == MAX_FRAMES == 108_000
        assert len(ale.getMinimalActionSet()) == PONG_ACTIONS


def test_max_pool_takes_pixelwise_max_of_the_last_two_frames():
    rng = np.random.default_rng(0)
    stale = np.full((4, 5, 3), 255, np.uint8)  # earlier in the repeat: must not leak in
    a, b = rng.integers(0, 200, (2, 4, 5, 3), dtype=np.uint8)
    pooled = max_pool([stale, a, b])
    np.testing.assert_array_equal(pooled, np.maximum(a, b))
    assert pooled.dtype == np.uint8 and (pooled == a).any() and (pooled == b).any()
    np.testing.assert_array_equal(max_pool([a]), a)


def test_step_obs_pools_the_last_two_frames_of_the_repeat():
    # Freeway's cars move every frame, so pooling frames 3 and 4 differs from frame 4 alone.
    four = make_env("atari/Freeway", obs="pixels", action_repeat=4, seed=2)
    one = make_env("atari/Freeway", obs="pixels", action_repeat=1, seed=2)
    with four, one:
        np.testing.assert_array_equal(four.reset(), one.reset())
        pooled, _, _, _ = four.step(np.eye(3)[0])
        singles = [one.step(np.eye(3)[0])[0].astype(int) for _ in range(4)]
    # INTER_AREA averages with non-negative weights, so it cannot shrink a max (bar rounding).
    assert np.all(pooled.astype(int) >= np.maximum(singles[2], singles[3]) - 1)
    assert not np.array_equal(pooled, singles[3])


def test_noop_episode_terminates_with_summed_unclipped_rewards():
    with _pong(seed=1) as env:
        env.reset()
        total, rewards = 0.0, set()
        for _ in range(2000):
            _, reward, terminated, truncated = env.step(NOOP)
            total += reward
            rewards.add(reward)
            if terminated or truncated:
                break
        # A motionless paddle loses every point: Pong ends at 0-21, one life, no early end.
        assert terminated is True and truncated is False and total == -21.0
        assert rewards <= {-1.0, 0.0, 1.0}
        with pytest.raises(RuntimeError, match="reset"):
            env.step(NOOP)


def test_short_frame_cap_truncates():
    with AtariEnv("Pong", max_frames=200) as env:
        env.reset()
        steps, truncated = 0, False
        while not truncated and steps < 100:
            _, _, terminated, truncated = env.step(NOOP)
            steps += 1
            assert terminated is False
        assert truncated and steps <= 50  # 200 frames, some spent on no-ops and ALE's reset


def test_noop_starts_follow_the_seed():
    def first(game: str, seed: int) -> tuple[bytes, int]:
        with make_env(f"atari/{game}", obs="pixels", seed=seed) as env:
            return env.reset().tobytes(), env.noops

    pong = first("Pong", 3)
    assert pong == first("Pong", 3)
    with _pong() as env:
        counts = set()
        for seed in range(5):
            env.reset(seed=seed)
            counts.add(env.noops)
        env.step(NOOP)
        assert (env.reset(seed=3).tobytes(), env.noops) == pong
    assert len(counts) > 1 and counts <= set(range(1, 31))
    # Pong's screen is still during the no-ops; Freeway's moving cars show the differing starts.
    freeway = {first("Freeway", seed) for seed in range(3)}
    assert len({obs for obs, _ in freeway}) == 3


MISSPELT = [("atari/Pongg", "Pong"), ("atari/mspacman", "MsPacman")]


@pytest.mark.parametrize(("task", "valid"), MISSPELT)
def test_unknown_game_names_close_matches_and_the_list(task, valid):
    with pytest.raises(ConfigError) as err:
        validate_task(task, "pixels")
    message = str(err.value)
    assert task in message and f"close matches: {valid}" in message
    assert all(game in message for game in GAMES)


def test_state_obs_is_refused():
    with pytest.raises(ConfigError, match="only pixels; use obs=pixels"):
        validate_task("atari/Pong", "state")
    with pytest.raises(ConfigError, match="obs=pixels"):
        make_env("atari/Pong")
    validate_task("atari/Pong", "pixels")


def test_the_26_games_are_ale_ids():
    assert list_tasks("atari") == list(GAMES) and len(GAMES) == 26
    gym.register_envs(ale_py)
    missing = [game for game in GAMES if f"ALE/{game}-v5" not in gym.registry]
    assert missing == []


def test_every_game_constructs_resets_and_steps():
    for game in GAMES:
        with make_env(f"atari/{game}", obs="pixels") as env:
            assert env.reset().shape == (3, 64, 64)
            obs, reward, _, _ = env.step(np.eye(env.spec.action_dim)[0])
            assert obs.shape == (3, 64, 64) and np.isfinite(reward)


def test_render_is_the_full_screen_the_first_obs_is_resized_from():
    with _pong(seed=0) as env:
        obs = env.reset()
        frame = env.render()
        assert frame.shape == (210, 160, 3) and frame.dtype == np.uint8
        small = cv2.resize(frame, (64, 64), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(obs, small.transpose(2, 0, 1))
