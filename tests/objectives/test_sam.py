"""SAM, ASAM and ERM gradients against closed forms on a quadratic L = 1/2 w'Aw."""

import io
import re

import pytest
import torch
from torch import nn

from mbrl_sam.errors import ConfigError
from mbrl_sam.objectives import (
    ASAM,
    ERM,
    SAM,
    ObjectiveConfig,
    build_objective,
    make_objective,
    select_params,
)
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


# -- every=k: LookSAM's reuse of the sharpness direction between full SAM updates -------------


def plain_sam(closure, perturbed, rho):
    """Today's two-pass SAM written out: the gradient at w + rho g / ||g|| for `perturbed`."""
    loss, _ = closure()
    grads = torch.autograd.grad(loss, perturbed)
    norm = torch.stack([g.norm() for g in grads]).norm()
    with torch.no_grad():
        for p, g in zip(perturbed, grads):
            p.add_(rho * g / norm)
    loss_adv, _ = closure()
    adv = torch.autograd.grad(loss_adv, perturbed)
    with torch.no_grad():
        for p, g in zip(perturbed, grads):
            p.sub_(rho * g / norm)
    return [g.detach() for g in adv]


def test_every_1_is_todays_sam_over_several_steps():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    params = list(net.parameters())
    calls = []

    def closure():
        calls.append(1)
        return (net(x) - y).pow(2).mean(), None

    sam = SAM(rho=0.05, every=1)
    for step in range(5):
        expected = plain_sam(closure, params, 0.05)
        for p in params:
            p.grad = None
        calls.clear()
        _, _, metrics = sam.backward(closure, params, params, step)
        assert len(calls) == 2 and "sam_reused" not in metrics and "sharpness" in metrics
        for p, g in zip(params, expected):
            torch.testing.assert_close(p.grad, g, rtol=1e-12, atol=1e-12)
        with torch.no_grad():
            for p in params:
                p.sub_(0.1 * p.grad)
    assert sam.state_dict() == {} and sam.g_v is None  # nothing kept when nothing is reused


def split_quadratic(seed: int = 2, n: int = 3):
    """L = 1/2 w'Aw, w = [u, v]: u is perturbed, v is not."""
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(2 * n, 2 * n, generator=g)
    a = m @ m.T + 0.5 * torch.eye(2 * n)
    u, v = nn.Parameter(torch.randn(n, generator=g)), nn.Parameter(torch.randn(n, generator=g))
    calls = []

    def closure():
        calls.append(1)
        w = torch.cat([u, v])
        return 0.5 * w @ a @ w, None

    return a, u, v, closure, calls


def test_every_3_refreshes_on_schedule_and_reuses_g_v_by_hand():
    n, rho, alpha, start = 3, 0.1, 0.7, 2
    a, u, v, closure, calls = split_quadratic(n=n)
    sam = SAM(rho=rho, start_step=start, every=3, alpha=alpha)
    passes, g_v = [], None
    for step in range(11):
        w0 = torch.cat([u, v]).detach()
        g = a @ w0
        u.grad = v.grad = None
        calls.clear()
        _, _, metrics = sam.backward(closure, [u, v], [u], step)
        passes.append(len(calls))
        assert metrics["grad_norm"] == pytest.approx(float(g.norm()))
        torch.testing.assert_close(v.grad, g[n:])  # not perturbed: the plain gradient, always
        if step < start:
            torch.testing.assert_close(u.grad, g[:n])  # erm before start_step
            assert "sam_reused" not in metrics
        elif (step - start) % 3 == 0:
            eps = rho * g[:n] / g[:n].norm()
            g_s = (a @ (w0 + torch.cat([eps, torch.zeros(n)])))[:n]
            torch.testing.assert_close(u.grad, g_s)
            g_v = g_s - (g_s @ g[:n]) / (g[:n] @ g[:n]) * g[:n]
            torch.testing.assert_close(sam.g_v[0], g_v)
            assert sam.refreshed_at == step and metrics["sam_reused"] == 0.0
            assert metrics["eps_norm"] == pytest.approx(rho) and "sharpness" in metrics
        else:
            expected = g[:n] + alpha * g[:n].norm() / g_v.norm() * g_v
            torch.testing.assert_close(u.grad, expected)
            assert metrics["sam_reused"] == 1.0 and "sharpness" not in metrics
        with torch.no_grad():
            u.sub_(0.05 * u.grad)
            v.sub_(0.05 * v.grad)
    # erm, erm, then a refresh at start_step, start_step + 3, ...: two passes there, one between.
    assert passes == [1, 1, 2, 1, 1, 2, 1, 1, 2, 1, 1]


def test_every_k_through_the_optimizer_matches_a_loop_of_erm_and_sam_steps():
    """ASAM reuses the same way: only its refresh (the ascent step) differs."""
    a, u, v, closure, calls = split_quadratic(seed=3)
    asam = ASAM(rho=0.3, eta=0.01, every=2, alpha=0.5)
    opt = ClosureOptimizer([u, v], lr=0.01, eps=1e-8, clip=1e9, objective=asam, perturbed=[u])
    counts = []
    for step in range(6):
        calls.clear()
        _, metrics = opt.step(closure, step)
        counts.append(len(calls))
        assert metrics["skipped_step"] == 0.0
    assert counts == [2, 1, 2, 1, 2, 1] and asam.refreshed_at == 4


def test_a_non_finite_refresh_stores_nothing_and_the_next_update_refreshes():
    n = 3
    a, u, v, good, calls = split_quadratic(n=n)
    sam = SAM(rho=0.1, every=3)
    sam.backward(good, [u, v], [u], 0)
    kept = sam.g_v

    def nan_at_the_ascent_point():
        loss, aux = good()
        return (loss * float("nan") if len(calls) == 2 else loss), aux

    calls.clear()
    opt = ClosureOptimizer([u, v], lr=0.01, eps=1e-8, clip=1e9, objective=sam, perturbed=[u])
    _, metrics = opt.step(nan_at_the_ascent_point, 3)  # a refresh whose g_s is NaN
    assert len(calls) == 2 and metrics["skipped_step"] == 1.0
    assert sam.g_v is kept and sam.refreshed_at == 0  # the NaN g_v is not stored
    calls.clear()
    opt.step(good, 4)  # no g_v from the last 3 updates: refresh off the schedule
    assert len(calls) == 2 and sam.refreshed_at == 4
    assert all(torch.isfinite(t).all() for t in sam.g_v)


def make_run(seed: int = 0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Dropout(0.1), nn.Linear(16, 2))
    opt = ClosureOptimizer(
        net.parameters(),
        lr=0.01,
        eps=1e-8,
        clip=10.0,
        objective=SAM(rho=0.05, every=3),
        perturbed=list(net[0].parameters()),
    )
    return net, opt


def train(net, opt, steps):
    for step in steps:
        data = torch.Generator().manual_seed(100 + step)
        x, y = torch.randn(32, 4, generator=data), torch.randn(32, 2, generator=data)
        torch.manual_seed(step)  # dropout draws, as a restored run's RNG would give them
        opt.step(lambda x=x, y=y: ((net(x) - y).pow(2).mean(), None), step)


def checkpoint(net, opt) -> dict:
    buffer = io.BytesIO()
    torch.save({"net": net.state_dict(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


def test_state_dict_round_trip_continues_identically():
    net, opt = make_run()
    train(net, opt, range(5))  # refreshed at 0 and 3; step 5 reuses the g_v of step 3
    saved = checkpoint(net, opt)
    assert saved["opt"]["objective"]["refreshed_at"] == 3
    train(net, opt, range(5, 12))
    restored, restored_opt = make_run(seed=1)
    restored.load_state_dict(saved["net"])
    restored_opt.load_state_dict(saved["opt"])
    train(restored, restored_opt, range(5, 12))
    for p, q in zip(net.parameters(), restored.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert restored_opt.objective.refreshed_at == opt.objective.refreshed_at == 9


def test_a_checkpoint_without_objective_state_still_loads_and_refreshes_next():
    net, opt = make_run()
    train(net, opt, range(5))
    saved = checkpoint(net, opt)["opt"]
    del saved["objective"]  # as written before the objective had state
    restored, restored_opt = make_run(seed=1)
    restored_opt.load_state_dict(saved)
    assert restored_opt.objective.g_v is None
    train(restored, restored_opt, [5])  # no g_v to reuse: full SAM off the schedule
    assert restored_opt.objective.refreshed_at == 5
    wrong = SAM(rho=0.05, every=3)
    with pytest.raises(ValueError, match="do not match"):
        wrong.load_state_dict(opt.objective.state_dict(), [nn.Parameter(torch.zeros(2))])


@pytest.mark.parametrize(
    "options, message",
    [
        ({"every": 0}, "objective.every=0 is not valid; it must be an integer >= 1"),
        ({"every": 2.5}, "objective.every=2.5 is not valid"),
        ({"alpha": -0.1}, "objective.alpha=-0.1 is not valid; it must be a number >= 0"),
        ({"alpha": float("nan")}, "objective.alpha=nan is not valid"),
    ],
)
def test_bad_every_or_alpha_is_a_config_error_naming_the_key(options, message):
    for name in ("sam", "asam"):
        with pytest.raises(ConfigError) as err:
            ObjectiveConfig(name=name, rho=0.1, **options)
        assert message in str(err.value) and "\n" not in str(err.value)
        extra = {"eta": 0.01} if name == "asam" else {}
        with pytest.raises(ConfigError, match=re.escape(message)):
            make_objective(name, rho=0.1, **extra, **options)
    built = build_objective(ObjectiveConfig(name="asam", rho=0.3, every=4, alpha=0.2))
    assert isinstance(built, ASAM) and (built.every, built.alpha) == (4, 0.2)
