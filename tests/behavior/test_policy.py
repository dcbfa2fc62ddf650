"""Action distributions: the continuous sample as drawn, its log-density, the clip to [-1, 1]."""

import math

import torch

from mbrl_sam.behavior.policy import ActionDist, Policy


def test_continuous_sample_is_unclipped_and_clip_bounds_it():
    torch.manual_seed(0)
    mean, std = torch.full((1000, 2), 0.9), torch.full((1000, 2), 0.5)
    dist = ActionDist(False, (mean, std))
    sample = dist.sample()
    # P(sample > 1) = P(z > 0.2), about 42%: the draw must keep them for log_prob to score.
    assert (sample > 1).float().mean() > 0.3
    action = dist.clip(sample)
    assert action.abs().max() <= 1
    inside = sample.abs() <= 1
    torch.testing.assert_close(action[inside], sample[inside])
    assert torch.all(action[sample > 1] == 1) and torch.all(action[sample < -1] == -1)


def test_log_prob_of_a_sample_outside_the_bounds_by_hand():
    dist = ActionDist(False, (torch.tensor([[0.9, -0.6]]), torch.tensor([[0.5, 0.25]])))
    # -z^2/2 - log(std) - log(2 pi)/2 per dimension, z = (2, -1):
    expected = (-2.0 - math.log(0.5)) + (-0.5 - math.log(0.25)) - math.log(2 * math.pi)
    torch.testing.assert_close(
        dist.log_prob(torch.tensor([[1.9, -0.85]])), torch.tensor([expected])
    )
    torch.testing.assert_close(torch.tensor(expected), torch.tensor(-2.2584354))


def test_discrete_clip_is_the_identity_and_rsample_stays_bounded():
    torch.manual_seed(0)
    disc = Policy(8, 3, True, 16, 1, "layer", 0.1, 1.0, 0.01)(torch.randn(4, 8))
    onehot = disc.sample()
    assert torch.equal(disc.clip(onehot), onehot)
    cont = ActionDist(False, (torch.full((1000, 2), 0.9, requires_grad=True), torch.ones(1000, 2)))
    action = cont.rsample()
    assert action.abs().max() <= 1
    # Straight-through: the clip passes the gradient on unchanged.
    (grad,) = torch.autograd.grad(action.sum(), cont.params[0])
    torch.testing.assert_close(grad, torch.ones(1000, 2))
