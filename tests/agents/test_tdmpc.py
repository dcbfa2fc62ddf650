"""The TD-MPC2-style agent: value estimate in closed form, update bookkeeping, acting."""

import numpy as np
import pytest
import torch

from agents import make_agent
from agents.run import load_config
from agents.tdmpc import heuristic_discount
from mbrl_sam.environment import EnvSpec
from mbrl_sam.errors import ConfigError
from mbrl_sam.evaluation.flatness import MeasureConfig, world_model_probe

SPEC = EnvSpec((5,), np.float32, 3, False, 2, episode_length=500)


def agent(*overrides):
    torch.manual_seed(0)
    cfg = load_config(["agent=tdmpc", "size=tiny", "objective=sam", *overrides])
    return make_agent(cfg, SPEC, torch.device("cpu"))


def random_batch(size: int, length: int = 4) -> dict[str, torch.Tensor]:
    """A replay-shaped batch of random steps for SPEC, no episode boundaries."""
    rng = np.random.default_rng(0)
    shape = (size, length)
    return {
        "obs": torch.as_tensor(rng.standard_normal((*shape, 5)), dtype=torch.float32),
        "action": torch.as_tensor(rng.uniform(-1, 1, (*shape, 3)), dtype=torch.float32),
        "reward": torch.as_tensor(rng.standard_normal(shape), dtype=torch.float32),
        "is_first": torch.zeros(shape, dtype=torch.bool),
        "is_terminal": torch.zeros(shape, dtype=torch.bool),
    }


def set_constant(twohot, bias, value):
    """Make a zero-weight two-hot head predict `value` everywhere."""
    with torch.no_grad():
        bias.copy_(twohot.encode(torch.tensor(value)).clamp_min(1e-30).log())


def constant_heads_agent(*overrides):
    """An agent (discount 0.9) whose model predicts reward 2 and Q 10 everywhere."""
    a = agent("agent.discount=0.9", *overrides)
    set_constant(a.world_model.twohot, a.world_model.reward_head[-1].bias, 2.0)
    for m in range(a.world_model.cfg.num_q):
        set_constant(a.world_model.twohot, a.world_model.qs.biases[-1][m, 0], 10.0)
    return a


def test_estimated_value_is_discounted_rewards_plus_terminal_q():
    a = constant_heads_agent()
    z = a.world_model.encode(torch.randn(1, 5))
    value = a.estimate_value(z, torch.rand(7, 3, 3) * 2 - 1)
    expected = 2.0 * (1 + 0.9 + 0.81) + 0.9**3 * 10.0
    torch.testing.assert_close(value, torch.full((7,), expected), atol=1e-3, rtol=1e-4)


def test_estimated_value_stops_at_the_first_predicted_termination():
    a = constant_heads_agent("agent.model.episodic=true")
    z = a.world_model.encode(torch.randn(1, 5))
    actions = torch.rand(7, 3, 3) * 2 - 1
    head = a.world_model.termination_head[-1]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-0.5)  # p(end) = 0.38: the return goes on
        going_on = a.estimate_value(z, actions)
        head.bias.fill_(0.5)  # p(end) = 0.62: it ends after the first step
        ended = a.estimate_value(z, actions)
    expected = 2.0 * (1 + 0.9 + 0.81) + 0.9**3 * 10.0
    torch.testing.assert_close(going_on, torch.full((7,), expected), atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(ended, torch.full((7,), 2.0), atol=1e-3, rtol=1e-4)


def test_update_moves_targets_by_tau_and_keeps_the_policy_out_of_the_model_step():
    a = agent("agent.tau=0.25")
    rng = torch.Generator().manual_seed(0)
    batch = {
        "obs": torch.randn(8, 4, 5, generator=rng),
        "action": torch.rand(8, 4, 3, generator=rng) * 2 - 1,
        "reward": torch.randn(8, 4, generator=rng),
        "is_first": torch.zeros(8, 4, dtype=torch.bool),
        "is_terminal": torch.zeros(8, 4, dtype=torch.bool),
    }
    pi_before = [p.clone() for p in a.world_model.pi.parameters()]
    a.model_step(batch, 0)
    for p, q in zip(a.world_model.pi.parameters(), pi_before):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    targets = [p.clone() for p in a.world_model.target_qs.parameters()]
    metrics = a.update(batch, 1)
    for t, old, q in zip(
        a.world_model.target_qs.parameters(), targets, a.world_model.qs.parameters()
    ):
        torch.testing.assert_close(t, old + 0.25 * (q - old))
    assert any(not torch.equal(p, q) for p, q in zip(a.world_model.pi.parameters(), pi_before))
    assert np.isfinite(metrics["model/sharpness"]) and np.isfinite(metrics["policy/pi_loss"])


@pytest.mark.parametrize("planner", ["mppi", "cem", "none"])
def test_act_gives_bounded_actions_and_carries_the_warm_start(planner):
    a = agent(f"planner={planner}")
    obs = np.random.default_rng(0).standard_normal(5).astype(np.float32)
    action, state = a.act(obs, None, True, explore=True)
    assert action.shape == (3,) and np.abs(action).max() <= 1
    if planner == "none":
        assert state is None
        return
    assert state.shape == (3, 3)
    action, state2 = a.act(obs, state, False, explore=False)
    assert np.abs(action).max() <= 1 and not torch.equal(state2, state)


def test_discount_follows_the_episode_length_as_in_tdmpc2():
    # clamp((L/5 - 1) / (L/5), 0.95, 0.995): 99/100 for 500 steps, 199/200 -> 0.995 for 1000.
    assert heuristic_discount(500) == pytest.approx(0.99)
    assert heuristic_discount(1000) == pytest.approx(0.995)
    assert heuristic_discount(100) == pytest.approx(0.95)  # 19/20
    assert heuristic_discount(50) == 0.95  # 9/10, clamped up
    assert heuristic_discount(27000) == 0.995  # clamped down
    assert agent().discount == pytest.approx(0.99)
    long_spec = EnvSpec((5,), np.float32, 3, False, 1, episode_length=1000)
    cfg = load_config(["agent=tdmpc", "size=tiny"])
    assert make_agent(cfg, long_spec, torch.device("cpu")).discount == pytest.approx(0.995)
    assert agent("agent.discount=0.9").discount == 0.9
    for bad in ("0", "1.5", "abc"):
        with pytest.raises(ConfigError, match="agent.discount"):
            agent(f"agent.discount={bad}")
    unbounded = EnvSpec((5,), np.float32, 3, False, 1)
    with pytest.raises(ConfigError, match="agent.discount"):
        make_agent(cfg, unbounded, torch.device("cpu"))


def test_policy_entropy_bonus_is_tdmpc2s_scaled_gaussian_term():
    a = agent("agent.entropy_coef=0.5")
    zs = torch.rand(4, 6, a.world_model.cfg.latent_dim)
    torch.manual_seed(3)
    loss, _ = a.policy.loss(zs)()
    a.policy.scale.value.fill_(1.0)
    torch.manual_seed(3)
    action, log_prob = a.world_model.pi(zs)
    q = a.world_model.q(zs, action, "avg")  # zero-initialised heads: exactly 0, scale stays 1
    rho = 0.5 ** torch.arange(4.0)
    expected = -(rho[:, None] * (q + 0.5 * 3 * -log_prob)).mean()
    torch.testing.assert_close(loss, expected)


def test_pixels_or_discrete_actions_are_refused_naming_the_agents_that_take_them():
    cfg = load_config(["agent=tdmpc", "size=tiny"])
    pixels = EnvSpec((3, 64, 64), np.uint8, 3, False, 2)
    discrete = EnvSpec((4,), np.float32, 2, True, 1)
    for spec in (pixels, discrete):
        with pytest.raises(ConfigError, match="agents that do: dreamer, storm"):
            make_agent(cfg, spec, torch.device("cpu"))


def test_compiled_mlps_give_the_eager_values_and_keep_checkpoint_keys():
    eager, compiled = agent(), agent("agent.compile=true")
    with torch.no_grad():  # heads that start at zero would make every value the same
        eager.world_model.reward_head[-1].weight.normal_(0, 0.5)
        eager.world_model.qs.weights[-1].normal_(0, 0.5)
    compiled.world_model.load_state_dict(eager.world_model.state_dict())
    assert compiled.world_model.state_dict().keys() == eager.world_model.state_dict().keys()
    z = eager.world_model.encode(torch.randn(1, 5))
    actions = torch.rand(16, 3, 3) * 2 - 1
    values = []
    eager.world_model.eval(), compiled.world_model.eval()  # as when planning: no dropout
    for value in (eager.estimate_value, compiled.estimate_value, compiled._plan_value):
        torch.manual_seed(1)
        with torch.no_grad():
            values.append(value(z, actions))  # the last as the planner calls it: one graph
    assert values[0].std() > 0.1  # the values depend on the actions and the policy's draws
    torch.testing.assert_close(values[1], values[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(values[2], values[0], rtol=1e-4, atol=1e-4)


def test_compiled_agent_trains_on_the_same_loss_and_measures_the_eager_hessian():
    eager, compiled = agent(), agent("agent.compile=true")
    compiled.world_model.load_state_dict(eager.world_model.state_dict())
    batch = random_batch(8)
    compiled.update(batch, 1)  # the training path runs the compiled graphs first
    compiled.world_model.load_state_dict(eager.world_model.state_dict())
    losses = []
    for a in (eager, compiled):
        a.world_model.eval()  # no dropout, so both losses see the same network
        torch.manual_seed(1)
        losses.append(a.model_loss(batch)()[0])
        a.world_model.train()
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-4, atol=1e-5)
    cfg = MeasureConfig(groups="dynamics")
    probes = [world_model_probe(a, batch, cfg) for a in (eager, compiled)]
    vector = torch.randn(probes[0].dim, generator=torch.Generator().manual_seed(0))
    hvps = [p.hvp(vector) for p in probes]
    assert hvps[0].norm() > 0
    torch.testing.assert_close(hvps[1], hvps[0], rtol=1e-3, atol=1e-5)


def test_compiled_update_gives_the_eager_losses_and_gradients():
    eager, compiled = agent(), agent("agent.compile=true")
    compiled.world_model.load_state_dict(eager.world_model.state_dict())
    batch = random_batch(8)
    grads = []
    for a in (eager, compiled):
        a.world_model.eval()  # no dropout, so both see the same network
        torch.manual_seed(1)
        loss, aux = a.model_loss(batch)()
        loss.backward()
        torch.manual_seed(2)
        pi_loss, _ = a.policy.loss(aux["zs"].detach())()
        pi_loss.backward()
        params = list(a.world_model.parameters())
        grads.append(([p.grad.clone() for p in params if p.grad is not None], loss, pi_loss))
        a.world_model.zero_grad()
    (g_eager, loss_eager, pi_eager), (g_comp, loss_comp, pi_comp) = grads
    assert len(g_eager) == len(g_comp) > 10 and sum(g.norm() for g in g_eager) > 0
    torch.testing.assert_close(loss_comp, loss_eager, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(pi_comp, pi_eager, rtol=1e-4, atol=1e-5)
    for g_c, g_e in zip(g_comp, g_eager):
        torch.testing.assert_close(g_c, g_e, rtol=1e-3, atol=1e-5)
