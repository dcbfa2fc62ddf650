"""Every registered agent satisfies the declared interfaces, signatures included, and does what
they promise on real calls: act, update, value a state, checkpoint, predict open loop."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from agents import AGENTS, make_agent
from agents.run import load_config
from mbrl_sam.agent import Agent, ModelOptimizer, WorldModel, WorldModelAgent
from mbrl_sam.environment import EnvSpec
from mbrl_sam.evaluation.model_error import open_loop

SPEC = EnvSpec((5,), np.float32, 2, False, 2, episode_length=500)


def same_signature(protocol: type, obj: object, method: str) -> bool:
    """Whether obj.method takes the parameters the protocol declares, by name and order."""
    declared = inspect.signature(getattr(protocol, method)).parameters
    actual = inspect.signature(getattr(obj, method)).parameters
    return list(actual) == [p for p in declared if p != "self"]


def replay_batch(size: int, length: int, spec: EnvSpec) -> dict[str, torch.Tensor]:
    """Random replay-shaped steps with one episode start in the middle of each sequence."""
    rng = np.random.default_rng(0)
    shape = (size, length)
    is_first = np.zeros(shape, bool)
    is_first[:, length // 2] = True
    return {
        "obs": torch.as_tensor(rng.standard_normal((*shape, *spec.obs_shape)), dtype=torch.float32),
        "action": torch.as_tensor(
            rng.uniform(-1, 1, (*shape, spec.action_dim)), dtype=torch.float32
        ),
        "reward": torch.as_tensor(rng.standard_normal(shape), dtype=torch.float32),
        "is_first": torch.as_tensor(is_first),
        "is_terminal": torch.zeros(shape, dtype=torch.bool),
    }


def check_contract(agent: WorldModelAgent, cfg, spec: EnvSpec) -> None:
    """The interfaces, then one round of real calls."""
    assert isinstance(agent, Agent) and isinstance(agent, WorldModelAgent)
    assert isinstance(agent.world_model, WorldModel)
    assert isinstance(agent.model_optimizer, ModelOptimizer)
    assert isinstance(agent.discount, float) and 0 < agent.discount <= 1
    for protocol in (Agent, WorldModelAgent):
        for method in ("act", "update", "state_dict", "load_state_dict"):
            assert same_signature(protocol, agent, method), method
    for method in ("model_loss", "state_value"):
        assert same_signature(WorldModelAgent, agent, method), method
    for method in ("features", "imagine_step", "outcomes", "observe_episode", "start_states"):
        assert same_signature(WorldModel, agent.world_model, method), method
    obs = np.ones(spec.obs_shape, np.float32)
    action, state = agent.act(obs, None, True, explore=True)
    assert action.shape == (spec.action_dim,) and np.abs(action).max() <= 1
    assert np.isfinite(agent.state_value(obs, state))
    batch = replay_batch(cfg.agent.batch_size, cfg.agent.batch_length, spec)
    metrics = agent.update(batch, 0)
    assert metrics and all(np.isfinite(v) for v in metrics.values())
    saved = {k: v for k, v in agent.world_model.state_dict().items()}
    agent.load_state_dict(agent.state_dict())
    assert all(torch.equal(saved[k], v) for k, v in agent.world_model.state_dict().items())
    episode = replay_batch(1, 12, spec)
    episode = {k: v[0, 6:] for k, v in episode.items()}  # from its episode start on
    out = open_loop(agent.world_model, episode, torch.tensor([0, 2]), horizon=3)
    assert out["reward_pred"].shape == out["reward_true"].shape == (2, 3)
    assert torch.isfinite(out["latent_mse"]).all()


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_every_registered_agent_keeps_the_contract(name):
    torch.manual_seed(0)
    cfg = load_config([f"agent={name}", "size=tiny", "agent.batch_size=4"])
    agent = make_agent(cfg, SPEC, torch.device("cpu"))
    check_contract(agent, cfg, SPEC)
    assert set(agent.world_model.param_groups()) >= {"encoder", "reward"}


def test_an_object_missing_a_method_is_not_an_agent():
    class NoUpdate:
        def act(self, obs, state, is_first, explore):
            return obs, state

        def state_dict(self):
            return {}

        def load_state_dict(self, state):
            pass

    assert not isinstance(NoUpdate(), Agent)
