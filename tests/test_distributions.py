"""Symlog/symexp and two-hot encodings round-trip; categorical helpers are consistent."""

import torch

from mbrl_sam.distributions import (
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
