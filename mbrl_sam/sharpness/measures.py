"""Sharpness measures on a LossProbe: SAM and ASAM sharpness, top eigenvalue against 2/lr,
and Adam's preconditioned sharpness against its edge-of-stability threshold."""

from __future__ import annotations

import torch
from torch import Tensor

from mbrl_sam.sharpness.hessian import LossProbe, flatten, unflatten
from mbrl_sam.sharpness.spectrum import lanczos


def _perturbed_loss(probe: LossProbe, eps: Tensor) -> float:
    """L(w + eps), weights restored exactly afterwards."""
    originals = [p.detach().clone() for p in probe.params]
    try:
        with torch.no_grad():
            for p, e in zip(probe.params, unflatten(eps, probe.params)):
                p.add_(e)
            return float(probe.loss())
    finally:
        with torch.no_grad():
            for p, w in zip(probe.params, originals):
                p.copy_(w)


def sam_sharpness(
    probe: LossProbe, rho: float, steps: int = 1, adaptive: bool = False, eta: float = 0.01
) -> dict[str, float]:
    """max over ||eps|| <= rho of L(w + eps) - L(w), by `steps` normalised ascent steps.

    One step is SAM's own first-order estimate (eps = rho g / ||g||); more steps project each
    ascent step back onto the ball. `adaptive` measures in ASAM's geometry, where the ball is
    ||eps / (|w| + eta)|| <= rho.
    """
    with torch.no_grad():
        base = float(probe.loss())
        scale = flatten([p.detach().abs() + eta for p in probe.params]) if adaptive else None
    eps = torch.zeros(probe.dim, device=probe.params[0].device)
    grad_norm = 0.0
    for i in range(steps):
        g = _gradient_at(probe, eps)
        if i == 0:
            grad_norm = float(g.norm())
        # In the scaled geometry eps = T u with ||u|| <= rho; ascend in u, map back with T.
        direction = g if scale is None else scale * scale * g
        size = g.norm() if scale is None else (scale * g).norm()
        step = direction * (rho / steps if steps > 1 else rho) / (size + 1e-12)
        eps = _project(eps + step, rho, scale)
    return {
        "sam_sharpness": _perturbed_loss(probe, eps) - base,
        "grad_norm": grad_norm,
        "first_order": rho * grad_norm,  # the bound's leading term, rho ||g||
        "eps_norm": float(eps.norm()),
    }


def _gradient_at(probe: LossProbe, eps: Tensor) -> Tensor:
    originals = [p.detach().clone() for p in probe.params]
    try:
        with torch.no_grad():
            for p, e in zip(probe.params, unflatten(eps, probe.params)):
                p.add_(e)
        return flatten(probe.grad()).detach()
    finally:
        with torch.no_grad():
            for p, w in zip(probe.params, originals):
                p.copy_(w)


def _project(eps: Tensor, rho: float, scale: Tensor | None) -> Tensor:
    """Back onto the (scaled) ball of radius rho."""
    size = eps.norm() if scale is None else (eps / scale).norm()
    return eps if size <= rho else eps * (rho / size)


def top_eigenvalue(probe: LossProbe, lr: float, steps: int = 20) -> dict[str, float]:
    """lambda_max(H) by Lanczos, and gradient descent's stability limit 2 / lr."""
    value = float(lanczos(probe.operator(), probe.dim, steps=steps, k=1)[0])
    return {"top_eigenvalue": value, "gd_threshold": 2.0 / lr, "gd_ratio": value * lr / 2.0}


def preconditioned_sharpness(
    probe: LossProbe, scale: Tensor, lr: float, beta1: float, steps: int = 20
) -> dict[str, float]:
    """lambda_max(P^-1/2 H P^-1/2) for Adam's preconditioner (`scale` = P^-1/2, flat) and its
    edge of stability (2 + 2 b1) / ((1 - b1) lr)."""
    value = float(lanczos(probe.operator(scale=scale), probe.dim, steps=steps, k=1)[0])
    threshold = (2 + 2 * beta1) / ((1 - beta1) * lr)
    return {
        "preconditioned_sharpness": value,
        "adam_threshold": threshold,
        "adam_ratio": value / threshold,
    }
