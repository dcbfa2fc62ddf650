"""Symlog/symexp and two-hot encodings round-trip; categorical helpers are consistent."""

import torch

from mbrl_sam.distributions import (
    SymlogTwoHot,
    TwoHot,
    categorical_kl,
    sample_one_hot,
    straight_through,
    symexp,
    symlog,
    unimix_probs,
)


def test_symlog_symexp_round_trip():
    x = torch.tensor([-1e4, -3.5, -1.0, 0.0, 1e-3, 2.0, 1e5], dtype=torch.float64)
    torch.testing.assert_close(symexp(symlog(x)), x)
    torch.testing.assert_close(symlog(torch.tensor([torch.e - 1])), torch.tensor([1.0]))


def test_two_hot_round_trip_and_weights():
    twohot = TwoHot(255)
    y = torch.tensor([-500.0, -1.3, 0.0, 0.25, 7.0, 1234.5])
    w = twohot.encode(y)
    assert w.shape == (6, 255)
    torch.testing.assert_close(w.sum(-1), torch.ones(6))
    assert ((w > 0).sum(-1) <= 2).all()
    torch.testing.assert_close(twohot.decode(w), y, rtol=1e-5, atol=1e-5)
    # A peaked distribution on the encoding has the encoded value as its mean.
    torch.testing.assert_close(twohot.mean(torch.log(w + 1e-30)), y, rtol=1e-4, atol=1e-4)


def test_two_hot_loss_is_minimised_by_target_distribution():
    twohot = TwoHot(41)
    target = torch.tensor([3.0])
    logits = torch.zeros(1, 41, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.5)
    for _ in range(300):
        opt.zero_grad()
        twohot.loss(logits, target).sum().backward()
        opt.step()
    assert abs(float(twohot.mean(logits.detach())) - 3.0) < 0.05


def test_symlog_two_hot_places_bins_linearly_in_symlog_space():
    twohot = SymlogTwoHot(101, -10.0, 10.0)
    torch.testing.assert_close(twohot.bins[[0, 50, 55, 100]], torch.tensor([-10.0, 0, 1.0, 10]))
    # symlog(2) = ln 3 = 1.0986123 sits at bin position (1.0986123 + 10) / 0.2 = 55.493061:
    # weight 0.506939 on bin 55 (symlog 1.0) and 0.493061 on bin 56 (symlog 1.2).
    # symlog(-0.5) = -ln 1.5 = -0.4054651: position 47.972675, bins 47 and 48.
    # Beyond symexp(10) the target sits on the last bin (or the first, below -symexp(10)).
    w = twohot.encode(torch.tensor([2.0, -0.5, 1e6, -1e6]))
    assert w.shape == (4, 101) and ((w > 0).sum(-1) <= 2).all()
    torch.testing.assert_close(w[0, [55, 56]], torch.tensor([0.506939, 0.493061]))
    torch.testing.assert_close(
        w[1, [47, 48]], torch.tensor([0.027325, 0.972675]), atol=2e-6, rtol=0
    )
    assert w[2, 100] == 1 and w[3, 0] == 1
    torch.testing.assert_close(twohot.decode(w[:2]), torch.tensor([2.0, -0.5]))


def test_symlog_two_hot_decodes_symexp_of_the_expected_bin():
    twohot = SymlogTwoHot(101, -10.0, 10.0)
    # Half the mass on bin 50 (symlog 0), half on bin 60 (symlog 2): the expected bin is 1.0,
    # so the value is symexp(1) = e - 1 = 1.7182818 (DreamerV3's layout would give the mean
    # of the two values, (e^2 - 1) / 2 = 3.1945280).
    logits = torch.full((1, 101), -1e9)
    logits[0, [50, 60]] = 0.0
    torch.testing.assert_close(twohot.mean(logits), torch.tensor([1.7182818]))
    # The loss is the cross-entropy to the two-hot target, -sum(w * log_softmax(logits)).
    logits = torch.randn(3, 101)
    target = torch.tensor([2.0, -0.5, 30.0])
    expected = -(twohot.encode(target) * logits.log_softmax(-1)).sum(-1)
    torch.testing.assert_close(twohot.loss(logits, target), expected)


def test_unimix_and_sampling():
    torch.manual_seed(0)
    logits = torch.tensor([[10.0, -10.0, -10.0, -10.0]])
    probs = unimix_probs(logits, 0.01)
    assert float(probs.min()) >= 0.01 / 4 - 1e-6
    samples = sample_one_hot(probs.expand(20000, 4))
    assert torch.all(samples.sum(-1) == 1)
    freq = samples.mean(0)
    torch.testing.assert_close(freq, probs[0], atol=0.01, rtol=0)


def test_straight_through_gradient_is_that_of_probs():
    logits = torch.randn(3, 5, requires_grad=True)
    probs = logits.softmax(-1)
    sample = sample_one_hot(probs.detach())
    out = straight_through(sample, probs)
    torch.testing.assert_close(out, sample)
    (out * torch.arange(5.0)).sum().backward()
    ref = torch.autograd.grad((logits.softmax(-1) * torch.arange(5.0)).sum(), logits)[0]
    torch.testing.assert_close(logits.grad, ref)


def test_categorical_kl_zero_iff_equal():
    p = torch.tensor([0.2, 0.3, 0.5])
    q = torch.tensor([0.4, 0.4, 0.2])
    assert float(categorical_kl(p, p)) == 0.0
    expected = float((p * (p / q).log()).sum())
    assert abs(float(categorical_kl(p, q)) - expected) < 1e-6


def test_two_hot_loss_equals_dense_cross_entropy():
    twohot = TwoHot(31)
    logits = torch.randn(7, 31, dtype=torch.float64)
    y1, y2 = torch.randn(7, dtype=torch.float64) * 5, torch.randn(7, dtype=torch.float64)
    twohot.bins = twohot.bins.double()
    logp = logits.log_softmax(-1)
    dense1 = -(twohot.encode(y1) * logp).sum(-1)
    dense2 = -(twohot.encode(y2) * logp).sum(-1)
    torch.testing.assert_close(twohot.loss(logits, y1), dense1)
    torch.testing.assert_close(twohot.loss(logits, y1, y2, 0.3), dense1 + 0.3 * dense2)


def test_twohot_mean_of_a_flat_distribution_is_zero_despite_huge_bins():
    # Naive float32 summation over bins reaching +-5e8 leaves rounding noise of order 1.
    twohot = TwoHot(255)
    assert twohot.mean(torch.zeros(4, 255)).abs().max() < 1e-3
    logits = torch.randn(64, 255, generator=torch.Generator().manual_seed(0))
    exact = logits.double().softmax(-1) @ twohot.bins.double()
    torch.testing.assert_close(twohot.mean(logits).double(), exact, rtol=1e-5, atol=1e-3)
