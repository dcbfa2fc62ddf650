"""Sharpness tools against closed forms: quadratics with known spectra, GD stability, Adam."""

import math

import pytest
import torch
from torch import nn

from mbrl_sam.optim import adam_preconditioner
from mbrl_sam.sharpness import (
    LossProbe,
    hutchinson_trace,
    lanczos,
    power_iteration,
    preconditioned_sharpness,
    sam_sharpness,
    top_eigenvalue,
)


def known_matrix(eigenvalues, seed=0):
    """A symmetric matrix Q diag(eigenvalues) Q' with a random orthogonal Q (float64)."""
    n = len(eigenvalues)
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    return q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ q.T


def quadratic_probe(a, b=None, w0=None):
    """L(w) = 1/2 w'Aw + b'w on a float64 parameter."""
    n = a.shape[0]
    w = nn.Parameter(torch.randn(n, dtype=torch.float64) if w0 is None else w0.clone())
    b = torch.zeros(n, dtype=torch.float64) if b is None else b
    return LossProbe(lambda: 0.5 * w @ a @ w + b @ w, [w]), w


SPECTRUM = [9.0, 7.5, 6.0] + [float(x) for x in torch.linspace(-2.0, 3.0, 27)]


def test_power_iteration_and_lanczos_recover_a_known_spectrum():
    a = known_matrix(SPECTRUM)
    probe, _ = quadratic_probe(a)
    top, used = power_iteration(probe.operator(), probe.dim, iters=500, tol=1e-12)
    assert abs(top - 9.0) / 9.0 < 1e-4 and used <= 500
    ritz = lanczos(probe.operator(), probe.dim, steps=30, k=3)
    expected = torch.tensor([9.0, 7.5, 6.0], dtype=torch.float64)
    torch.testing.assert_close(ritz, expected, rtol=1e-4, atol=0)


def test_lanczos_finds_the_top_eigenvalue_in_few_steps():
    a = known_matrix([20.0] + [float(x) for x in torch.linspace(0.0, 5.0, 199)], seed=1)
    probe, _ = quadratic_probe(a)
    probe.hvp_count = 0
    value = float(lanczos(probe.operator(), probe.dim, steps=12)[0])
    assert abs(value - 20.0) / 20.0 < 1e-4 and probe.hvp_count == 12


def test_hutchinson_trace_lies_within_its_standard_error():
    a = known_matrix(SPECTRUM, seed=2)
    probe, _ = quadratic_probe(a)
    estimate, stderr = hutchinson_trace(probe.operator(), probe.dim, samples=400, seed=3)
    assert abs(estimate - sum(SPECTRUM)) < 3 * stderr
    assert 0 < stderr < 5


def test_first_order_sam_sharpness_of_a_quadratic():
    a = known_matrix(SPECTRUM, seed=4)
    b = torch.randn(30, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    probe, w = quadratic_probe(a, b)
    rho = 0.05
    g = a @ w.detach() + b
    expected = rho * g.norm() + rho**2 / 2 * (g @ a @ g) / (g @ g)
    result = sam_sharpness(probe, rho)
    assert result["sam_sharpness"] == pytest.approx(float(expected), rel=1e-9)
    assert result["first_order"] == pytest.approx(float(rho * g.norm()), rel=1e-9)
    assert result["eps_norm"] == pytest.approx(rho, rel=1e-9)
    # More ascent steps can only find a higher loss on the ball.
    assert sam_sharpness(probe, rho, steps=5)["sam_sharpness"] >= result["sam_sharpness"] - 1e-12


def test_adaptive_sam_sharpness_uses_the_weight_scaled_ball():
    a = torch.diag(torch.tensor([1.0, 4.0], dtype=torch.float64))
    w0 = torch.tensor([2.0, 0.5], dtype=torch.float64)
    probe, w = quadratic_probe(a, w0=w0)
    rho, eta = 0.1, 0.01
    g = a @ w0
    t = w0.abs() + eta
    eps = rho * t * t * g / (t * g).norm()
    expected = float(g @ eps + 0.5 * eps @ a @ eps)
    assert sam_sharpness(probe, rho, adaptive=True, eta=eta)["sam_sharpness"] == pytest.approx(
        expected, rel=1e-9
    )
    torch.testing.assert_close(w.detach(), w0, rtol=0, atol=0)  # weights restored


@pytest.mark.parametrize("lr", [0.19, 0.21])
def test_gradient_descent_diverges_exactly_when_sharpness_exceeds_2_over_lr(lr):
    a = known_matrix([10.0, 3.0, 1.0, 0.5], seed=6)
    probe, w = quadratic_probe(a)
    ratio = top_eigenvalue(probe, lr, steps=4)["gd_ratio"]  # lambda_max * lr / 2
    with torch.no_grad():
        for _ in range(400):
            w -= lr * (a @ w)
    diverged = bool(w.norm() > 1e3)
    assert diverged == (ratio > 1), (lr, ratio, float(w.norm()))


def test_preconditioned_sharpness_of_a_hand_built_diagonal_case():
    diag = torch.tensor([4.0, 1.0, 9.0], dtype=torch.float64)
    probe, w = quadratic_probe(torch.diag(diag))
    opt = torch.optim.Adam([w], lr=0.01, betas=(0.9, 0.999), eps=1e-8)
    w.grad = torch.ones_like(w)
    opt.step()
    v = torch.tensor([4.0, 0.01, 36.0], dtype=torch.float64)
    opt.state[w]["exp_avg_sq"].copy_(v)
    opt.state[w]["step"].fill_(10)
    v_hat = v / (1 - 0.999**10)
    expected = float((diag / (v_hat.sqrt() + 1e-8)).max())  # eigenvalues of P^-1 H
    scale, beta1 = adam_preconditioner(opt, [w], lr=0.01)
    result = preconditioned_sharpness(probe, scale, 0.01, beta1, steps=3)
    assert result["preconditioned_sharpness"] == pytest.approx(expected, rel=1e-6)
    assert result["adam_threshold"] == pytest.approx((2 + 2 * 0.9) / (0.1 * 0.01))


def test_finite_difference_and_double_backward_hvps_agree_on_a_network():
    torch.manual_seed(7)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    x, y = torch.randn(16, 4, dtype=torch.float64), torch.randn(16, 1, dtype=torch.float64)
    probe = LossProbe(lambda: (net(x) - y).pow(2).mean(), list(net.parameters()))
    v = torch.randn(probe.dim, dtype=torch.float64)
    exact = probe.hvp(v)
    approx = probe.hvp_finite_difference(v, eps=1e-4)
    torch.testing.assert_close(approx, exact, rtol=1e-5, atol=1e-7)


def test_random_draws_are_fixed_so_measurements_repeat_exactly():
    torch.manual_seed(8)
    net = nn.Sequential(nn.Linear(5, 16), nn.Dropout(0.3), nn.Tanh(), nn.Linear(16, 1))
    x = torch.randn(32, 5)
    probe = LossProbe(lambda: net(x).pow(2).mean(), list(net.parameters()), seed=11)
    v = torch.randn(probe.dim)
    before = torch.random.get_rng_state()
    first, second = probe.hvp(v), probe.hvp(v)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    assert torch.equal(before, torch.random.get_rng_state())  # the caller's RNG is untouched
    op = probe.operator()
    assert lanczos(op, probe.dim, steps=8)[0] == lanczos(op, probe.dim, steps=8)[0]
    assert math.isfinite(float(lanczos(op, probe.dim, steps=8)[0]))
