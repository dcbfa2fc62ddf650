"""Both agents satisfy the declared agent interfaces, method signatures included."""

import inspect

import numpy as np
import pytest
import torch

from agents import make_agent
from agents.run import load_config
from mbrl_sam.agent import Agent, WorldModel, WorldModelAgent
from mbrl_sam.environment import EnvSpec

SPEC = EnvSpec((5,), np.float32, 2, False, 2, episode_length=500)


@pytest.mark.parametrize("name", ["dreamer", "tdmpc"])
def test_agents_satisfy_the_protocols_with_the_declared_signatures(name):
    cfg = load_config([f"agent={name}", "size=tiny"])
    agent = make_agent(cfg, SPEC, torch.device("cpu"))
    assert isinstance(agent, Agent) and isinstance(agent, WorldModelAgent)
    assert isinstance(agent.world_model, WorldModel)
    assert isinstance(agent.discount, float) and 0 < agent.discount <= 1
    assert set(agent.world_model.param_groups()) >= {"encoder", "dynamics", "reward"}
    for protocol in (Agent, WorldModelAgent):
        for method in ("act", "update", "state_dict", "load_state_dict"):
            declared = inspect.signature(getattr(protocol, method)).parameters
            actual = inspect.signature(getattr(agent, method)).parameters
            assert list(actual) == [p for p in declared if p != "self"], (name, method)
    for method in ("model_loss", "state_value"):
        declared = inspect.signature(getattr(WorldModelAgent, method)).parameters
        actual = inspect.signature(getattr(agent, method)).parameters
        assert list(actual) == [p for p in declared if p != "self"], (name, method)


def test_an_object_missing_a_method_is_not_an_agent():
    class NoUpdate:
        def act(self, obs, state, is_first, explore):
            return obs, state

        def state_dict(self):
            return {}

        def load_state_dict(self, state):
            pass

    assert not isinstance(NoUpdate(), Agent)
