"""The Dreamer agent's latent MPC: value estimate in closed form, acting, refusals."""

import numpy as np
import pytest
import torch

from agents import make_agent
from agents.run import load_config
from mbrl_sam.environment import EnvSpec
from mbrl_sam.errors import ConfigError

SPEC = EnvSpec((5,), np.float32, 2, False, 2)


def agent(*overrides, spec=SPEC):
    torch.manual_seed(0)
    cfg = load_config(["agent=dreamer", "size=tiny", *overrides])
    return make_agent(cfg, spec, torch.device("cpu"))


def test_latent_mpc_value_is_discounted_rewards_plus_the_critic_value():
    a = agent("planner=mppi")
    with torch.no_grad():
        a.world_model.reward_head[-1].bias.copy_(
            a.world_model.twohot.encode(torch.tensor(1.5)).log().clamp_min(-1e4)
        )
        a.world_model.continue_head[-1].weight.zero_()
        a.world_model.continue_head[-1].bias.fill_(40.0)  # continue with probability 1
        critic_out = a.ac.critic[-1]
        critic_out.bias.copy_(a.ac.twohot.encode(torch.tensor(-3.0)).log().clamp_min(-1e4))
    latent = a.world_model.initial(1, torch.device("cpu"))
    actions = torch.rand(6, 3, 2) * 2 - 1
    g = a.ac.discount
    expected = 1.5 * (1 + g + g**2) + g**3 * -3.0
    value = a.estimate_value(latent, actions)
    torch.testing.assert_close(value, torch.full((6,), expected), atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("planner", ["mppi", "cem"])
def test_acting_by_latent_mpc_gives_bounded_actions_and_a_warm_start(planner):
    a = agent(f"planner={planner}", "planner.samples=64", "planner.elites=8")
    obs = np.ones(5, np.float32)
    action, state = a.act(obs, None, True, explore=True)
    assert action.shape == (2,) and np.abs(action).max() <= 1
    assert state[2].shape == (3, 2)
    action, _ = a.act(obs, state, False, explore=False)
    assert np.abs(action).max() <= 1


def test_actions_sampled_outside_the_bounds_reach_env_and_model_clipped(monkeypatch):
    """The actor's samples are unclipped (REINFORCE scores them as drawn); acting and the
    planner's policy trajectories hand them on clipped to [-1, 1]."""
    a = agent("planner=mppi")
    monkeypatch.setattr(torch, "randn_like", lambda x: torch.full_like(x, 5.0))  # z = 5
    latent = a.world_model.initial(1, torch.device("cpu"))
    prior = a.proposals(latent)
    cfg = a.planner.cfg
    assert prior.shape == (cfg.prior_trajectories, cfg.horizon, 2) and torch.all(prior == 1)
    a = agent()
    action, state = a.act(np.ones(5, np.float32), None, True, explore=True)
    assert np.all(action == 1) and torch.all(state[1] == 1)  # to the env; to the model next step


def test_planning_with_discrete_actions_is_refused():
    with pytest.raises(ConfigError, match="discrete"):
        agent("planner=mppi", spec=EnvSpec((4,), np.float32, 2, True, 1))
