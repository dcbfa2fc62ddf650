"""Gymnasium adapter on real envs: action rescaling, discrete actions, repeat, seeds, pixels."""

import numpy as np
import pytest

from envs import make_env
from envs.base import scale_action
from mbrl_sam.environment import RenderUnavailable
from mbrl_sam.errors import ConfigError


def test_scale_action_maps_unit_box_onto_bounds_and_clips():
    low, high = np.array([0.0, -3.0]), np.array([10.0, 1.0])
    np.testing.assert_allclose(scale_action(np.array([-1.0, -1.0]), low, high), low)
    np.testing.assert_allclose(scale_action(np.array([1.0, 1.0]), low, high), high)
    np.testing.assert_allclose(scale_action(np.array([0.0, 0.5]), low, high), [5.0, 0.0])
    np.testing.assert_allclose(scale_action(np.array([4.0, -9.0]), low, high), [10.0, -3.0])


def _pendulum_reward(obs: np.ndarray, torque: float) -> float:
    # Documented Pendulum-v1 reward, computed from the observation before the step.
    theta = np.arctan2(float(obs[1]), float(obs[0]))
    return -(theta**2 + 0.1 * float(obs[2]) ** 2 + 0.001 * torque**2)


@pytest.mark.parametrize(("action", "torque"), [(1.0, 2.0), (-1.0, -2.0), (0.5, 1.0), (7.0, 2.0)])
def test_pendulum_action_reaches_true_bounds(action, torque):
    with make_env("gym/Pendulum-v1", seed=0) as env:
        assert env.spec.action_dim == 1 and not env.spec.discrete
        assert env.spec.action_repeat == 1
        obs = env.reset()
        _, reward, _, _ = env.step(np.array([action], np.float32))
        assert reward == pytest.approx(_pendulum_reward(obs, torque), abs=1e-4)


def test_cartpole_discrete_one_hot_terminates_under_constant_action():
    with make_env("gym/CartPole-v1") as env:
        assert env.spec.discrete and env.spec.action_dim == 2
        assert env.spec.obs_shape == (4,) and env.spec.obs_dtype == np.float32
        obs = env.reset()
        assert obs.dtype == np.float32
        for _ in range(200):
            obs, reward, terminated, truncated = env.step(np.array([1.0, 0.0], np.float32))
            assert reward == 1.0
            if terminated or truncated:
                break
        assert terminated is True and truncated is False


def test_cartpole_scores_pick_the_argmax():
    with make_env("gym/CartPole-v1") as env:
        start = env.reset()
        right, _, _, _ = env.step(np.array([0.2, 0.7], np.float32))  # action 1 pushes right
        assert right[1] > start[1]
        left, _, _, _ = env.step(np.array([0.9, -0.3], np.float32))
        assert left[1] < right[1]


def test_repeat_sums_rewards_and_stops_at_episode_end():
    def episode_return(repeat):
        with make_env("gym/CartPole-v1", action_repeat=repeat, seed=5) as env:
            env.reset()
            total, steps, done = 0.0, 0, False
            while not done:
                _, reward, terminated, truncated = env.step(np.array([0.0, 1.0]))
                total, steps, done = total + reward, steps + 1, terminated or truncated
            return total, steps

    single, single_steps = episode_return(1)
    tripled, tripled_steps = episode_return(3)
    assert tripled == single  # no reward is lost or invented past the end
    assert tripled_steps == -(-single_steps // 3)


def test_seeds():
    def first_obs(seed):
        with make_env("gym/CartPole-v1", seed=seed) as env:
            return env.reset()

    np.testing.assert_array_equal(first_obs(0), first_obs(0))
    assert not np.array_equal(first_obs(0), first_obs(1))
    with make_env("gym/CartPole-v1") as env:
        a = env.reset(seed=11)
        env.step(np.array([1.0, 0.0]))
        np.testing.assert_array_equal(env.reset(seed=11), a)


def test_wrong_action_size_is_rejected():
    with make_env("gym/Pendulum-v1") as env:
        env.reset()
        with pytest.raises(ValueError, match="action_dim=1"):
            env.step(np.zeros(3))


def test_pixels_need_an_image_observation():
    with pytest.raises(ConfigError) as err:
        make_env("gym/CartPole-v1", obs="pixels")
    assert "pixels" in str(err.value) and "state" in str(err.value)


def test_pixels_from_an_image_env():
    pytest.importorskip("ale_py")
    with make_env("gym/ale_py:ALE/Pong-v5", obs="pixels") as env:
        assert env.spec.obs_shape == (3, 64, 64) and env.spec.obs_dtype == np.uint8
        assert env.spec.discrete and env.spec.action_dim == 6
        obs = env.reset()
        assert obs.shape == (3, 64, 64) and obs.dtype == np.uint8
        assert obs.max() > obs.min()
        obs, _, _, _ = env.step(np.eye(6, dtype=np.float32)[0])
        assert obs.shape == (3, 64, 64)


def test_render_needs_the_env_made_for_it():
    with make_env("gym/InvertedPendulum-v5", render=True) as env:
        env.reset(seed=0)
        first = env.render()
        assert first.shape == (480, 480, 3) and first.dtype == np.uint8 and first.std() > 5
        env.step(np.ones(1))  # a push; the pole only falls after several steps
        env.step(np.ones(1))
        assert np.abs(env.render().astype(int) - first).mean() > 0.1  # the pole moved
    with make_env("gym/InvertedPendulum-v5") as env:
        env.reset(seed=0)
        with pytest.raises(RenderUnavailable, match="InvertedPendulum-v5 was made without"):
            env.render()
