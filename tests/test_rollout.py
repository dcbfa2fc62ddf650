"""The one acting loop, on a real Gymnasium env: carried state, first flags, returns, overrides."""

import numpy as np
import pytest

from envs import make_env
from mbrl_sam.agent import Agent
from mbrl_sam.rollout import Rollout


class CountingAgent:
    """Pushes the cart toward the side the pole leans to; its state counts its steps."""

    def __init__(self) -> None:
        self.calls: list[tuple[bool, object, bool]] = []

    def act(self, obs, state, is_first, explore):
        self.calls.append((is_first, state, explore))
        action = np.zeros(2, np.float32)
        action[int(obs[2] > 0)] = 1.0
        return action, (0 if is_first or state is None else state) + 1

    def update(self, batch, step):
        return {}

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def test_a_rollout_carries_the_agent_state_and_adds_up_the_episode():
    agent = CountingAgent()
    assert isinstance(agent, Agent)
    with make_env("gym/CartPole-v1", seed=0) as env:
        rollout = Rollout(agent, env, explore=True)
        first = rollout.reset(seed=3)
        steps = [rollout.step()]
        while not steps[-1].done:
            steps.append(rollout.step())
        assert 10 < len(steps) < 500 and steps[-1].terminated  # balanced a while, then fell
        np.testing.assert_array_equal(steps[0].obs, first)
        for before, after in zip(steps, steps[1:]):
            np.testing.assert_array_equal(after.obs, before.next_obs)
        assert [t.act_state for t in steps] == list(range(1, len(steps) + 1))
        assert [c[0] for c in agent.calls] == [True] + [False] * (len(steps) - 1)
        assert all(c[2] for c in agent.calls)
        assert rollout.ret == pytest.approx(sum(t.reward for t in steps)) == len(steps)
        assert rollout.length == len(steps)
        # A new episode starts the agent's state afresh.
        rollout.reset(seed=3)
        assert rollout.step().act_state == 1 and agent.calls[-1][:2] == (True, None)


def test_a_given_action_is_played_without_asking_the_agent():
    agent = CountingAgent()
    with make_env("gym/CartPole-v1", seed=0) as env:
        rollout = Rollout(agent, env)
        with pytest.raises(RuntimeError, match="reset"):
            rollout.step()
        rollout.reset(seed=0)
        left = np.array([1.0, 0.0], np.float32)
        step = rollout.step(left)
        assert agent.calls == [] and step.act_state is None
        np.testing.assert_array_equal(step.action, left)
        # The agent's first own action still sees is_first=False: the episode is under way.
        rollout.step()
        assert agent.calls[0][0] is False
