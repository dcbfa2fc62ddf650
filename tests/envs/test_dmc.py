"""DeepMind Control adapter on real tasks: shapes, repeat, episode ends, pixels, seeding."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from envs import make_env
from envs.dmc import VIDEO_SIZE

ROOT = Path(__file__).resolve().parents[2]


def _random_actions(n: int, dim: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, dim)).astype(np.float32)


def test_walker_state_spec_and_steps():
    with make_env("dmc/walker-walk") as env:
        assert env.spec.obs_shape == (24,)
        assert env.spec.obs_dtype == np.float32
        assert env.spec.action_dim == 6
        assert not env.spec.discrete
        assert env.spec.action_repeat == 2
        obs = env.reset()
        assert obs.shape == (24,) and obs.dtype == np.float32
        for action in _random_actions(10, 6):
            obs, reward, terminated, truncated = env.step(action)
            assert obs.shape == (24,) and obs.dtype == np.float32
            assert isinstance(reward, float) and np.isfinite(reward)
            assert terminated is False and truncated is False


def test_walker_episode_truncates_after_1000_physics_steps():
    with make_env("dmc/walker-walk", action_repeat=2) as env:
        env.reset()
        steps, done = 0, False
        for action in _random_actions(600, 6):
            _, _, terminated, truncated = env.step(action)
            steps += 1
            assert terminated is False
            if truncated:
                done = True
                break
        assert done and steps == 500
        with pytest.raises(RuntimeError, match="reset"):
            env.step(np.zeros(6))


def test_reward_is_summed_over_the_repeat():
    once = make_env("dmc/walker-walk", action_repeat=1, seed=3)
    twice = make_env("dmc/walker-walk", action_repeat=2, seed=3)
    np.testing.assert_array_equal(once.reset(), twice.reset())
    rewards = []
    for action in _random_actions(20, 6, seed=1):
        obs2, r2, _, _ = twice.step(action)
        _, r1a, _, _ = once.step(action)
        obs1, r1b, _, _ = once.step(action)
        assert r2 == pytest.approx(r1a + r1b, abs=1e-9)
        np.testing.assert_array_equal(obs1, obs2)
        rewards.append(r2)
    assert max(rewards) > 0  # a zero reward stream would make the comparison vacuous
    once.close()
    twice.close()


def test_cartpole_pixels():
    with make_env("dmc/cartpole-swingup", obs="pixels") as env:
        assert env.spec.obs_shape == (3, 64, 64)
        assert env.spec.obs_dtype == np.uint8
        first = env.reset()
        assert first.shape == (3, 64, 64) and first.dtype == np.uint8
        assert first.max() > first.min()
        obs = first
        for action in _random_actions(5, 1):
            obs, _, _, _ = env.step(action)
        assert obs.shape == (3, 64, 64) and obs.dtype == np.uint8
        assert np.any(obs != first)


def test_pixel_size_is_configurable():
    with make_env("dmc/point_mass-easy", obs="pixels", size=32) as env:
        assert env.spec.obs_shape == (3, 32, 32)
        assert env.reset().shape == (3, 32, 32)


@pytest.mark.parametrize("task", ["dmc/ball_in_cup-catch", "dmc/point_mass-easy"])
def test_names_with_underscores(task):
    with make_env(task) as env:
        obs = env.reset()
        assert obs.shape == env.spec.obs_shape
        obs, _, _, _ = env.step(np.zeros(env.spec.action_dim))
        assert obs.shape == env.spec.obs_shape


def test_seeds():
    def first_obs(seed):
        with make_env("dmc/walker-walk", seed=seed) as env:
            return env.reset()

    np.testing.assert_array_equal(first_obs(0), first_obs(0))
    assert not np.array_equal(first_obs(0), first_obs(1))


def test_reset_seed_reproduces_an_episode_start():
    with make_env("dmc/walker-walk", seed=0) as env:
        a = env.reset(seed=7)
        env.step(np.ones(6))
        env.reset()
        b = env.reset(seed=7)
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(env.reset(seed=8), a)


def _backend_in_subprocess(mujoco_gl: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    if mujoco_gl is not None:
        env["MUJOCO_GL"] = mujoco_gl
    code = (
        "import os; from envs.mujoco_gl import select_gl_backend; select_gl_backend(); "
        "print(os.environ.get('MUJOCO_GL'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def test_gl_backend_keeps_a_users_choice_and_picks_a_headless_one_otherwise():
    assert _backend_in_subprocess("osmesa") == "osmesa"
    assert _backend_in_subprocess(None) in ("egl", "osmesa")


def test_render_gives_video_frames_of_the_current_state():
    with make_env("dmc/walker-walk", seed=0) as env:
        env.reset(seed=0)
        first = env.render()
        assert first.shape == (VIDEO_SIZE, VIDEO_SIZE, 3) and first.dtype == np.uint8
        assert first.std() > 10  # a scene, not a blank buffer
        for action in _random_actions(10, env.spec.action_dim):
            env.step(action)
        assert np.abs(env.render().astype(int) - first).mean() > 1  # the walker moved
        env.reset(seed=0)
        np.testing.assert_array_equal(env.render(), first)  # same state, same frame
