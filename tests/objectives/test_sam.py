"""SAM, ASAM and ERM gradients against closed forms on a quadratic L = 1/2 w'Aw."""

import pytest
import torch
from torch import nn

from mbrl_sam.errors import ConfigError
from mbrl_sam.objectives import ASAM, ERM, SAM, make_objective, select_params
from mbrl_sam.optim import ClosureOptimizer


@pytest.fixture(autouse=True)
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def quadratic(seed: int = 0, n: int = 6):
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(n, n, generator=g)
    a = m @ m.T + 0.5 * torch.eye(n)
    w = nn.Parameter(torch.randn(n, generator=g))
    return a, w, lambda: (0.5 * w @ a @ w, {"draw": torch.rand(())})


def grads_of(objective, a, w, closure, perturbed=None, step=0):
    w.grad = None
    loss, aux, metrics = objective.backward(
        closure, [w], [w] if perturbed is None else perturbed, step
    )
    return w.grad.clone(), loss, aux, metrics


def test_erm_is_plain_gradient():
    a, w, closure = quadratic()
    g, loss, _, metrics = grads_of(ERM(), a, w, closure)
    torch.testing.assert_close(g, a @ w.detach())
    assert metrics["grad_norm"] == pytest.approx(float((a @ w.detach()).norm()))


@pytest.mark.parametrize("rho", [0.01, 0.05, 0.5])
def test_sam_gradient_matches_closed_form(rho):
    a, w, closure = quadratic()
    w0 = w.detach().clone()
    g, loss, _, metrics = grads_of(SAM(rho=rho), a, w, closure)
    aw = a @ w0
    expected = a @ (w0 + rho * aw / aw.norm())
    torch.testing.assert_close(g, expected)
    torch.testing.assert_close(w.detach(), w0, rtol=0, atol=0)  # restored bit for bit
    l0 = 0.5 * w0 @ a @ w0
    eps = rho * aw / aw.norm()
    l1 = 0.5 * (w0 + eps) @ a @ (w0 + eps)
    assert metrics["sharpness"] == pytest.approx(float(l1 - l0))
    assert metrics["grad_norm"] == pytest.approx(float(aw.norm()))


def test_asam_gradient_matches_closed_form():
    a, w, closure = quadratic(1)
    w0 = w.detach().clone()
    rho, eta = 0.3, 0.01
    g, *_ = grads_of(ASAM(rho=rho, eta=eta), a, w, closure)
    t = w0.abs() + eta
    grad = a @ w0
    eps = rho * t * t * grad / (t * grad).norm()
    torch.testing.assert_close(g, a @ (w0 + eps))


def test_sam_perturbs_only_the_named_subset():
    torch.manual_seed(0)
    n = 4
    a = torch.eye(2 * n) + 0.1
    u, v = nn.Parameter(torch.randn(n)), nn.Parameter(torch.randn(n))

    def closure():
        w = torch.cat([u, v])
        return 0.5 * w @ a @ w, None

    u0, v0 = u.detach().clone(), v.detach().clone()
    SAM(rho=0.1).backward(closure, [u, v], [u], 0)
    w0 = torch.cat([u0, v0])
    g = a @ w0
    eps = torch.cat([0.1 * g[:n] / g[:n].norm(), torch.zeros(n)])
    torch.testing.assert_close(u.grad, (a @ (w0 + eps))[:n])  # perturbed: gradient at w + eps
    torch.testing.assert_close(v.grad, g[n:])  # the rest: the unperturbed gradient


def test_sam_start_step_acts_as_erm_before_it():
    a, w, closure = quadratic()
    g, *_ = grads_of(SAM(rho=0.1, start_step=10), a, w, closure, step=3)
    torch.testing.assert_close(g, a @ w.detach())
    g, *_ = grads_of(SAM(rho=0.1, start_step=10), a, w, closure, step=10)
    assert not torch.allclose(g, a @ w.detach())


def test_both_passes_see_the_same_random_draws():
    w = nn.Parameter(torch.ones(3))
    draws = []

    def closure():
        noise = torch.randn(3)
        draws.append(noise)
        return (w * noise).sum() ** 2, None

    SAM(rho=0.1).backward(closure, [w], [w], 0)
    assert len(draws) == 2
    torch.testing.assert_close(draws[0], draws[1], rtol=0, atol=0)
    assert not torch.equal(torch.randn(3), draws[0])  # the RNG moves on after the update


def test_update_after_ascent_and_restore_is_original_plus_optimizer_step():
    a, w, closure = quadratic()
    w0 = w.detach().clone()
    opt = ClosureOptimizer([w], lr=0.01, eps=1e-8, clip=1e9, objective=SAM(rho=0.05))
    opt.step(closure)
    aw = a @ w0
    g = a @ (w0 + 0.05 * aw / aw.norm())
    # Adam's first step moves each coordinate by lr * g / (|g| + eps') = lr * sign(g).
    expected = w0 - 0.01 * g / (g.abs() + 1e-8)
    torch.testing.assert_close(w.detach(), expected)


def test_clipping_applies_to_final_gradient_and_nonfinite_skips():
    w = nn.Parameter(torch.ones(2))
    opt = ClosureOptimizer([w], lr=0.1, eps=1e-8, clip=1.0, objective=SAM(rho=0.01))
    _, metrics = opt.step(lambda: ((w * 100).sum(), None))
    assert metrics["final_grad_norm"] == pytest.approx(100 * 2**0.5)
    before = w.detach().clone()
    _, metrics = opt.step(lambda: ((w * float("nan")).sum(), None))
    assert metrics["skipped_step"] == 1.0 and opt.skipped == 1
    torch.testing.assert_close(w.detach(), before, rtol=0, atol=0)


def test_make_objective_validates():
    assert isinstance(make_objective("sam", rho=0.1), SAM)
    with pytest.raises(ConfigError, match="rho"):
        make_objective("sam", rho=0.0)
    with pytest.raises(ConfigError, match="'nosuch'.*'erm'"):
        make_objective("nosuch")
    with pytest.raises(ConfigError, match="enc"):
        select_params({"encoder": [], "dynamics": []}, "enc+dynamics")
