"""Imagination shapes, lambda-returns against a hand computation, policy distributions."""

import pytest
import torch

from mbrl_sam.behavior.actor_critic import ActorCritic, ActorCriticConfig, lambda_returns
from mbrl_sam.behavior.policy import ActionDist, Policy
from mbrl_sam.world_models.dreamer import DreamerModelConfig, DreamerWorldModel

SMALL = dict(deter=64, hidden=16, stoch=4, classes=4, blocks=4, units=16, layers=1, depth=2)


def test_lambda_returns_by_hand():
    r = torch.tensor([[1.0], [2.0]])
    c = torch.tensor([[1.0], [0.5]])
    v = torch.tensor([[10.0], [20.0], [30.0]])
    g, lam = 0.9, 0.8
    r1 = 2.0 + g * 0.5 * 30.0
    r0 = 1.0 + g * 1.0 * ((1 - lam) * 20.0 + lam * r1)
    torch.testing.assert_close(lambda_returns(r, c, v, g, lam), torch.tensor([[r0], [r1]]))


def test_lambda_one_is_discounted_sum_and_zero_is_td():
    r, c, v = torch.rand(4, 3), torch.ones(4, 3), torch.rand(5, 3)
    g = 0.9
    mc = lambda_returns(r, c, v, g, 1.0)
    expected0 = sum(g**i * r[i] for i in range(4)) + g**4 * v[4]
    torch.testing.assert_close(mc[0], expected0)
    td = lambda_returns(r, c, v, g, 0.0)
    torch.testing.assert_close(td, r + g * v[1:])


@pytest.mark.parametrize(
    "discrete,actor_grad",
    [(False, "auto"), (False, "reinforce"), (True, "auto"), (True, "dynamics")],
)
def test_imagination_and_update(discrete, actor_grad):
    torch.manual_seed(0)
    wm = DreamerWorldModel((5,), 3, DreamerModelConfig(**SMALL))
    cfg = ActorCriticConfig(units=16, layers=1, horizon=4, actor_grad=actor_grad)
    ac = ActorCritic(wm.rssm.feat_dim, 3, discrete, cfg)
    start = wm.rssm.initial(10, torch.device("cpu"))
    with torch.no_grad():
        traj = ac.imagine(wm, start)
    assert traj.feat.shape == (5, 10, wm.rssm.feat_dim)
    assert traj.action.shape == (4, 10, 3)
    assert traj.reward.shape == (4, 10) and traj.cont.shape == (4, 10)
    if discrete:
        assert torch.all(traj.action.sum(-1) == 1)
    else:
        assert traj.action.abs().max() <= 1
    before = [p.detach().clone() for p in ac.actor.parameters()]
    metrics = ac.update(wm, start, torch.ones(10))
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    assert any(not torch.equal(b, p) for b, p in zip(before, ac.actor.parameters()))
    # The model only shapes the actor's gradient; its weights get none and stay trainable.
    assert all(p.grad is None and p.requires_grad for p in wm.parameters())


def test_dynamics_gradient_reaches_actor_through_the_model():
    torch.manual_seed(0)
    wm = DreamerWorldModel((5,), 2, DreamerModelConfig(**SMALL))
    torch.nn.init.normal_(wm.reward_head[-1].weight)  # a reward that depends on the state
    ac = ActorCritic(wm.rssm.feat_dim, 2, False, ActorCriticConfig(units=16, layers=1, horizon=3))
    traj = ac.imagine(wm, wm.rssm.initial(4, torch.device("cpu")))
    traj.reward.sum().backward()
    grads = [p.grad for p in ac.actor.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize("discrete", [False, True])
def test_rollout_log_probs_equal_a_fresh_actor_pass(discrete):
    """REINFORCE uses the rollout's own log-probs: same values and gradients as re-running the
    actor on the imagined features."""
    torch.manual_seed(0)
    wm = DreamerWorldModel((5,), 3, DreamerModelConfig(**SMALL)).requires_grad_(False)
    ac = ActorCritic(wm.rssm.feat_dim, 3, discrete, ActorCriticConfig(units=16, layers=1))
    traj = ac.imagine(wm, wm.rssm.initial(6, torch.device("cpu")), backprop=False)
    assert not traj.feat.requires_grad and not traj.action.requires_grad
    dist = ac.actor(traj.feat[:-1])
    torch.testing.assert_close(traj.action, dist.clip(traj.extras["raw_action"]))
    fresh = dist.log_prob(traj.extras["raw_action"])
    torch.testing.assert_close(traj.extras["log_prob"], fresh)
    torch.testing.assert_close(traj.extras["entropy"], dist.entropy())
    params = list(ac.actor.parameters())
    kept = torch.autograd.grad(traj.extras["log_prob"].sum(), params)
    again = torch.autograd.grad(fresh.sum(), params)
    for a, b in zip(kept, again):
        torch.testing.assert_close(a, b)


class FixedActor(torch.nn.Module):
    """A continuous policy with the same mean and std at every state (the mean trainable)."""

    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.mean = torch.nn.Parameter(torch.tensor(mean))
        self.std = torch.tensor(std)

    def forward(self, feat: torch.Tensor) -> ActionDist:
        shape = (*feat.shape[:-1], self.mean.shape[0])
        return ActionDist(False, (self.mean.expand(shape), self.std.expand(shape)))


def test_reinforce_scores_the_unclipped_sample_and_the_model_gets_it_clipped(monkeypatch):
    """mean (0.9, -0.6), std (0.5, 0.25), noise (2, -1): the sample (1.9, -0.85) reaches the
    model as (1, -0.85), and REINFORCE scores the sample as drawn (scoring the clipped action
    would give -0.2784354 and a mean gradient of (0.4, -4))."""
    torch.manual_seed(0)
    wm = DreamerWorldModel((5,), 2, DreamerModelConfig(**SMALL)).requires_grad_(False)
    ac = ActorCritic(wm.rssm.feat_dim, 2, False, ActorCriticConfig(units=16, layers=1, horizon=3))
    ac.actor = FixedActor([0.9, -0.6], [0.5, 0.25])
    noise = torch.tensor([2.0, -1.0])
    monkeypatch.setattr(torch, "randn_like", lambda x: noise.expand_as(x).clone())
    traj = ac.imagine(wm, wm.rssm.initial(4, torch.device("cpu")), backprop=False)
    torch.testing.assert_close(traj.action, torch.tensor([1.0, -0.85]).expand(3, 4, 2))
    # log N(1.9; 0.9, 0.5) + log N(-0.85; -0.6, 0.25), each -z^2/2 - log(std) - log(2 pi)/2:
    # (-2 + 0.6931472 - 0.9189385) + (-0.5 + 1.3862944 - 0.9189385) = -2.2584354
    torch.testing.assert_close(traj.extras["log_prob"], torch.full((3, 4), -2.2584354))
    # The score function d log p / d mean = z / std = (2 / 0.5, -1 / 0.25) per step.
    (grad,) = torch.autograd.grad(traj.extras["log_prob"].sum(), ac.actor.mean)
    torch.testing.assert_close(grad, 12 * torch.tensor([4.0, -4.0]))
    torch.testing.assert_close(
        traj.extras["raw_action"], torch.tensor([1.9, -0.85]).expand(3, 4, 2)
    )


def test_policy_log_prob_and_entropy():
    torch.manual_seed(0)
    pol = Policy(8, 2, False, 16, 1, "layer", 0.1, 1.0, 0.01)
    dist = pol(torch.randn(4, 8))
    mean, std = dist.params
    ref = torch.distributions.Normal(mean, std)
    a = dist.sample()
    torch.testing.assert_close(dist.log_prob(a), ref.log_prob(a).sum(-1))
    torch.testing.assert_close(dist.entropy(), ref.entropy().sum(-1))
    disc = Policy(8, 3, True, 16, 1, "layer", 0.1, 1.0, 0.01)(torch.randn(4, 8))
    onehot = disc.mode()
    ref = torch.distributions.Categorical(probs=disc.params[0])
    torch.testing.assert_close(disc.log_prob(onehot), ref.log_prob(onehot.argmax(-1)))
    torch.testing.assert_close(disc.entropy(), ref.entropy())


# REINFORCE scoring the sample as drawn moves slower here than scoring the clipped action did:
# over 250 updates, seed 0 gains +0.004 at lr 1e-3 (the clipped-action score gained +0.028), +0.031
# at 3e-3.
@pytest.mark.parametrize("actor_grad,lr", [("dynamics", 1e-3), ("reinforce", 3e-3)])
def test_behavior_learning_raises_the_models_predicted_reward(actor_grad, lr):
    """On a fixed model whose reward depends on the latent state, the actor learns to raise it."""
    torch.manual_seed(0)
    small = dict(deter=64, hidden=32, stoch=4, classes=4, blocks=4, units=32, layers=1, depth=2)
    wm = DreamerWorldModel((5,), 2, DreamerModelConfig(**small))
    direction = torch.randn(wm.rssm.feat_dim) / wm.rssm.feat_dim**0.5
    wm.reward = lambda feat: torch.tanh(feat @ direction)
    cfg = ActorCriticConfig(units=32, layers=2, actor_grad=actor_grad, actor_lr=lr, critic_lr=lr)
    ac = ActorCritic(wm.rssm.feat_dim, 2, False, cfg)
    with torch.no_grad():
        start = wm.rssm.img_step(wm.rssm.initial(256, torch.device("cpu")), torch.zeros(256, 2))
    rewards = [ac.update(wm, start, torch.ones(256))["imag_reward"] for _ in range(250)]
    first, last = sum(rewards[:10]) / 10, sum(rewards[-10:]) / 10
    assert last > first + 0.02, (first, last)
