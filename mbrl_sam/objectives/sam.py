"""Sharpness-aware minimisation (SAM) and its scale-invariant variant (ASAM)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mbrl_sam.errors import ConfigError, check_positive
from mbrl_sam.objectives.base import LossClosure, Objective, grad_norm
from mbrl_sam.objectives.erm import ERM


class SAM(Objective):
    """Gradient at w + eps, eps = rho * g / ||g||: one first-order ascent step, then descend.

    Both passes see the same random draws (the RNG is rewound before the second pass). Before
    `start_step` it acts as ERM, so SAM can be switched on late in training.
    """

    name = "sam"

    def __init__(self, rho: float, start_step: int = 0) -> None:
        check_positive("objective.rho", rho)
        self.rho = float(rho)
        self.start_step = int(start_step)

    def perturbation(self, params: Sequence[Tensor], grads: Sequence[Tensor]) -> list[Tensor]:
        """The ascent step eps for each perturbed parameter."""
        scale = self.rho / (grad_norm(grads) + 1e-12)
        return [g * scale for g in grads]

    def backward(
        self,
        closure: LossClosure,
        params: Sequence[nn.Parameter],
        perturbed: Sequence[nn.Parameter],
        step: int,
    ) -> tuple[Tensor, Any, dict[str, float]]:
        """Gradient at the perturbed weights for `perturbed`, at w for the other params."""
        if step < self.start_step or not perturbed:
            return ERM().backward(closure, params, perturbed, step)
        devices = sorted({p.device.index or 0 for p in params if p.device.type == "cuda"})
        with torch.random.fork_rng(devices=devices):
            loss, aux = closure()
            loss.backward()
        norm = float(grad_norm([p.grad for p in params]))
        metrics = {"grad_norm": norm}
        if not torch.isfinite(torch.tensor(norm)):
            return loss.detach(), aux, metrics  # the optimizer sees it and skips the step
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in perturbed]
        with torch.no_grad():
            eps = self.perturbation(perturbed, grads)
            originals = [p.detach().clone() for p in perturbed]
            for p, e in zip(perturbed, eps):
                p.add_(e)
        try:
            loss_adv, _ = closure()
            adv_grads = torch.autograd.grad(loss_adv, list(perturbed), allow_unused=True)
        finally:
            with torch.no_grad():
                # Copy back rather than subtract eps, so the weights are restored bit for bit.
                for p, w in zip(perturbed, originals):
                    p.copy_(w)
        for p, g in zip(perturbed, adv_grads):
            p.grad = g if g is not None else torch.zeros_like(p)
        metrics["sharpness"] = float(loss_adv.detach() - loss.detach())
        metrics["eps_norm"] = float(grad_norm(eps))
        return loss.detach(), aux, metrics


class ASAM(SAM):
    """Adaptive SAM: eps = rho * T^2 g / ||T g|| with T = |w| + eta, invariant to weight scale."""

    name = "asam"

    def __init__(self, rho: float, eta: float, start_step: int = 0) -> None:
        super().__init__(rho, start_step)
        if not eta >= 0:
            raise ConfigError(f"objective.eta={eta!r} is not valid; it must be >= 0")
        self.eta = float(eta)

    def perturbation(self, params: Sequence[Tensor], grads: Sequence[Tensor]) -> list[Tensor]:
        """The ascent step in the weight-scaled geometry."""
        scales = [p.detach().abs() + self.eta for p in params]
        scaled = [t * g for t, g in zip(scales, grads)]
        factor = self.rho / (grad_norm(scaled) + 1e-12)
        return [t * sg * factor for t, sg in zip(scales, scaled)]
