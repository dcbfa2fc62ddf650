import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

from mbrl_sam.nets import mish


def test_mish_matches_aten_in_value_and_gradient_over_a_wide_range():
    x = torch.linspace(-60, 60, 24001, dtype=torch.float64, requires_grad=True)
    ref = F.mish(x)
    (ref_grad,) = torch.autograd.grad(ref.sum(), x)
    x32 = x.detach().float().requires_grad_(True)
    out = mish(x32)
    (grad,) = torch.autograd.grad(out.sum(), x32)
    assert torch.allclose(out.double(), ref, atol=5e-6, rtol=1e-6)
    assert torch.allclose(grad.double(), ref_grad, atol=5e-6, rtol=1e-5)
    assert torch.isfinite(mish(torch.tensor([-1e30, -100.0, 100.0, 1e30]))).all()


def test_mish_first_and_second_derivatives_are_exact():
    x = (torch.randn(40, dtype=torch.float64) * 4).requires_grad_(True)
    assert gradcheck(mish, (x,))
    assert gradgradcheck(mish, (x,))
    # Second derivative against the closed form of d2/dx2 x tanh(softplus(x)) via aten.
    (g,) = torch.autograd.grad(mish(x).sum(), x, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), x)
    (g_ref,) = torch.autograd.grad(F.mish(x).sum(), x, create_graph=True)
    (h_ref,) = torch.autograd.grad(g_ref.sum(), x)
    assert torch.allclose(h, h_ref, atol=1e-10)


def test_mish_runs_under_vmap_and_grad_as_on_each_slice():
    # Stacked models (several seeds through torch.func) call mish under vmap (ATen's op there),
    # gradients too.
    x = torch.randn(3, 5, 7, dtype=torch.float64)
    out = torch.vmap(mish)(x)
    grads = torch.vmap(torch.func.grad(lambda v: mish(v).sum()))(x)
    for k in range(3):
        xk = x[k].clone().requires_grad_(True)
        yk = mish(xk)
        (gk,) = torch.autograd.grad(yk.sum(), xk)
        torch.testing.assert_close(out[k], yk.detach())
        torch.testing.assert_close(grads[k], gk)
