"""TD-MPC2's policy prior: its densities against closed forms, and its loss."""

import math

import pytest
import torch

from mbrl_sam.behavior.policy_prior import PolicyPrior, linear_quantiles, squashed_log_prob


def test_policy_log_prob_is_the_gaussian_density_before_the_tanh():
    torch.manual_seed(2)
    pi = PolicyPrior(8, 10, 2, log_std_min=-10.0, log_std_max=2.0)
    z = torch.randn(6, 8)
    torch.manual_seed(3)
    action, log_prob = pi(z)
    torch.manual_seed(3)
    noise = torch.randn(6, 2)
    mean, log_std = pi.net(z).chunk(2, -1)
    log_std = -10.0 + 0.5 * (2.0 - -10.0) * (log_std.tanh() + 1)
    raw = mean + noise * log_std.exp()
    torch.testing.assert_close(action, torch.tanh(raw))
    # TD-MPC2's entropy bonus scores the Gaussian sample itself, with no tanh correction.
    expected = torch.distributions.Normal(mean, log_std.exp()).log_prob(raw).sum(-1)
    torch.testing.assert_close(log_prob, expected, rtol=1e-5, atol=1e-5)
    # The squashed density adds -sum log(1 - tanh^2 + 1e-6), as TD-MPC2 logs it.
    squashed = squashed_log_prob(action, log_prob)
    torch.testing.assert_close(squashed, expected - torch.log(1 - action**2 + 1e-6).sum(-1))
    mode, _ = pi(z, explore=False)
    torch.testing.assert_close(mode, torch.tanh(mean))


def test_policy_log_prob_on_hand_computed_numbers():
    pi = PolicyPrior(4, 4, 1, log_std_min=-10.0, log_std_max=2.0)
    with torch.no_grad():
        for p in pi.net.parameters():
            p.zero_()
        # mean 0.5; log_std = -10 + 6 * (tanh(0) + 1) = -4.
        pi.net[-1].bias.copy_(torch.tensor([0.5, 0.0]))
    action, log_prob = pi(torch.zeros(1, 4), explore=False)
    # Zero noise: log N(0.5; 0.5, e^-4) = -(-4) - 0.5 log(2 pi) = 3.0810615.
    torch.testing.assert_close(action, torch.tensor([[math.tanh(0.5)]]))
    torch.testing.assert_close(log_prob, torch.tensor([3.0810615]))


def test_linear_quantiles_equal_torch_quantile_and_run_under_vmap():
    x = torch.randn(3, 257)
    levels = (0.05, 0.5, 0.95)
    batched = torch.vmap(lambda v: linear_quantiles(v, levels))(x)
    for k in range(3):
        expected = torch.quantile(x[k], torch.tensor(levels))
        torch.testing.assert_close(batched[k], expected, rtol=0, atol=1e-6)
    # Hand-computed: 5 values, level 0.3 sits 0.2 of the way from the 2nd to the 3rd.
    v = torch.tensor([4.0, 0.0, 3.0, 1.0, 2.0])
    assert linear_quantiles(v, (0.3,)).item() == pytest.approx(1.2)
