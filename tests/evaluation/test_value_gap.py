"""Value gap exact on a small MDP with known values; model error on real held-out episodes."""

import numpy as np
import pytest
import torch

from agents import AGENTS, make_agent
from agents.run import load_config
from envs import make_env
from mbrl_sam.environment import Env, EnvSpec
from mbrl_sam.evaluation.model_error import measure_model_error, performance_gap, record_episode
from mbrl_sam.evaluation.value_gap import discounted_returns, measure_value_gap

GAMMA = 0.9


class Chain(Env):
    """States 0..n-1, reward 1 per step; the episode ends after n steps (terminal or cut)."""

    def __init__(self, n: int, terminal: bool) -> None:
        self.n, self.terminal = n, terminal
        self.spec = EnvSpec((1,), np.float32, 1, False, 1)

    def reset(self, seed=None):
        self.t = 0
        return np.array([0.0], np.float32)

    def step(self, action):
        self.t += 1
        done = self.t == self.n
        return (
            np.array([self.t], np.float32),
            1.0,
            done and self.terminal,
            done and not self.terminal,
        )

    def close(self):
        pass


class KnownValues:
    """Acts with a constant action; its value of state t is value_fn(t) (+ offset)."""

    def __init__(self, value_fn, offset=0.0):
        self.value_fn, self.offset, self.discount = value_fn, offset, GAMMA

    def act(self, obs, state, is_first, explore):
        return np.zeros(1, np.float32), None

    def state_value(self, obs, state):
        return self.value_fn(int(obs[0])) + self.offset


def finite_values(n):
    return lambda t: (1 - GAMMA ** (n - t)) / (1 - GAMMA)


def test_discounted_returns_by_hand():
    np.testing.assert_allclose(
        discounted_returns(np.array([1.0, 2.0, 3.0]), 0.5, tail=8.0),
        [1 + 0.5 * 2 + 0.25 * 3 + 0.125 * 8, 2 + 1.5 + 2, 3 + 4],
    )


def test_true_values_have_no_gap_and_an_offset_shows_as_bias():
    n = 7
    exact = measure_value_gap(KnownValues(finite_values(n)), Chain(n, terminal=True), 2, 0)
    assert exact["overall"]["abs_gap"] == pytest.approx(0.0, abs=1e-12)
    assert exact["real_returns"] == [7.0, 7.0]
    off = measure_value_gap(KnownValues(finite_values(n), 1.5), Chain(n, terminal=True), 1, 0)
    for key in ("bias", "abs_gap", "rmse"):
        assert off["overall"][key] == pytest.approx(1.5, abs=1e-12)


def test_time_limit_tails_bootstrap_or_count_as_zero():
    n = 5
    infinite = KnownValues(lambda t: 1 / (1 - GAMMA))  # the true value of an endless chain
    boot = measure_value_gap(infinite, Chain(n, terminal=False), 1, 0, tail="bootstrap")
    assert boot["overall"]["abs_gap"] == pytest.approx(0.0, abs=1e-9)
    zero = measure_value_gap(infinite, Chain(n, terminal=False), 1, 0, tail="zero")
    # Ignoring the tail undercounts return t by gamma^(n-t) / (1 - gamma).
    expected = np.mean([GAMMA ** (n - t) / (1 - GAMMA) for t in range(n)])
    assert zero["overall"]["bias"] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("agent_name", sorted(AGENTS))
def test_model_error_and_performance_gap_on_real_held_out_episodes(agent_name):
    env = make_env("gym/Pendulum-v1")
    torch.manual_seed(0)
    agent = make_agent(load_config([f"agent={agent_name}", "size=tiny"]), env.spec, "cpu")
    result = measure_model_error(agent, env, episodes=1, seed=3, horizon=4, stride=20)
    for key, errors in result["open_loop"].items():
        assert len(errors) == 4 and all(np.isfinite(errors)), key
    assert np.isfinite(result["performance_gap"]["gap"])
    episode = record_episode(agent, env, seed=3)
    assert episode["reward"].shape[0] == 201 and episode["is_first"][0]  # 200 steps + reset
    gap = performance_gap(agent, [episode])
    assert gap["real_returns"][0] == pytest.approx(float(episode["reward"][1:].sum()), rel=1e-5)
    value = measure_value_gap(agent, env, 1, 3)
    assert np.isfinite(value["overall"]["rmse"]) and value["discount"] == agent.discount
    env.close()
