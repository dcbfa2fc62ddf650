"""Sharpness-aware minimisation (SAM) and its scale-invariant variant (ASAM)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mbrl_sam import seeded
from mbrl_sam.errors import ConfigError, check_int, check_nonnegative, check_positive
from mbrl_sam.objectives.base import (
    LossClosure,
    Objective,
    grad_norm,
    per_slice,
    scalar,
    total,
)
from mbrl_sam.objectives.erm import ERM


class SAM(Objective):
    """Gradient at w + eps, eps = rho * g / ||g||: one first-order ascent step, then descend.

    Both passes see the same random draws (the RNG is rewound before the second pass). Before
    `start_step` it acts as ERM, so SAM can be switched on late in training.

    With `every` = k > 1 it is LookSAM (Liu et al. 2022, "Towards Efficient and Scalable
    Sharpness-Aware Minimization"): full SAM only on every k-th update from `start_step`, where
    it also keeps g_v, the part of the perturbed gradient g_s orthogonal to g (over the perturbed
    parameters as one vector). The k - 1 updates in between take one pass at w, as ERM, and give
    the perturbed parameters g + alpha * ||g|| / ||g_v|| * g_v: the sharpness direction changes
    slowly, so it is reused instead of paying for a second pass. k = 1 is plain SAM.
    """

    name = "sam"

    def __init__(self, rho: float, start_step: int = 0, every: int = 1, alpha: float = 0.7) -> None:
        check_positive("objective.rho", rho)
        check_int("objective.every", every, 1)
        check_nonnegative("objective.alpha", alpha)
        self.rho = float(rho)
        self.start_step = int(start_step)
        self.every = int(every)
        self.alpha = float(alpha)  # LookSAM's default, 0.7
        # Reused between refreshes (every > 1 only): g_v per perturbed parameter, on its device,
        # and the update that computed it. Saved with the optimizer, so a resumed run reuses the
        # same g_v at the same updates.
        self.g_v: list[Tensor] | None = None
        self.refreshed_at: int | None = None

    def perturbation(self, params: Sequence[Tensor], grads: Sequence[Tensor]) -> list[Tensor]:
        """The ascent step eps for each perturbed parameter."""
        scale = self.rho / (grad_norm(grads, self.per_seed) + 1e-12)
        return [g * per_slice(scale, g) for g in grads]

    def refresh_due(self, step: int) -> bool:
        """Whether update `step` does full SAM: on the schedule (start_step, start_step + k, ...),
        and off it whenever there is no g_v from the last k updates to reuse (none yet, a
        checkpoint without one, or the refresh was skipped for a non-finite gradient)."""
        if self.every == 1 or self.g_v is None or self.refreshed_at is None:
            return True
        stale = not 0 <= step - self.refreshed_at < self.every
        return stale or (step - self.start_step) % self.every == 0

    def backward(
        self,
        closure: LossClosure,
        params: Sequence[nn.Parameter],
        perturbed: Sequence[nn.Parameter],
        step: int,
    ) -> tuple[Tensor, Any, dict[str, float]]:
        """Gradient at the perturbed weights for `perturbed`, at w for the other params."""
        if step < self.start_step or not perturbed:
            erm = ERM()
            erm.per_seed = self.per_seed
            return erm.backward(closure, params, perturbed, step)
        if not self.refresh_due(step):
            return self.reuse(closure, params, perturbed)
        devices = sorted({p.device.index or 0 for p in params if p.device.type == "cuda"})
        with seeded.fork_rng(devices=devices):  # the second pass draws what the first drew
            loss, aux = closure()
            total(loss).backward()
        norm = grad_norm([p.grad for p in params], self.per_seed)
        metrics = {"grad_norm": scalar(norm)}
        if self.every > 1:
            metrics["sam_reused"] = 0.0
        finite = torch.isfinite(norm)
        if not bool(finite.any()):
            return loss.detach(), aux, metrics  # the optimizer sees it and skips the step
        all_finite = bool(finite.all())
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in perturbed]
        with torch.no_grad():
            eps = self.perturbation(perturbed, grads)
            if not all_finite:  # seeds=K: a non-finite seed is not perturbed
                eps = [torch.where(per_slice(finite, e), e, 0.0) for e in eps]
            originals = [p.detach().clone() for p in perturbed]
            for p, e in zip(perturbed, eps):
                p.add_(e)
        try:
            loss_adv, _ = closure()
            adv_grads = torch.autograd.grad(total(loss_adv), list(perturbed), allow_unused=True)
        finally:
            with torch.no_grad():
                # Copy back rather than subtract eps, so the weights are restored bit for bit.
                for p, w in zip(perturbed, originals):
                    p.copy_(w)
        for p, g, g0 in zip(perturbed, adv_grads, grads):
            g = g if g is not None else torch.zeros_like(p)
            # A non-finite seed keeps its first gradient, so the optimizer skips it.
            p.grad = g if all_finite else torch.where(per_slice(finite, g), g, g0)
        metrics["sharpness"] = scalar(loss_adv.detach() - loss.detach())
        if self.every == 1:
            metrics["eps_norm"] = scalar(grad_norm(eps, self.per_seed))
            return loss.detach(), aux, metrics
        g_v = orthogonal_part([p.grad for p in perturbed], grads, self.per_seed)
        # One host sync for both norms; ||g_v|| is read to keep a non-finite g_v out of the
        # state (the optimizer skips this step, and the next update refreshes again).
        norms = torch.stack([grad_norm(eps, self.per_seed), grad_norm(g_v, self.per_seed)])
        metrics["eps_norm"] = norms[0].tolist()
        if bool(torch.isfinite(norms[1]).all()):
            self.g_v, self.refreshed_at = g_v, step
        return loss.detach(), aux, metrics

    def reuse(
        self,
        closure: LossClosure,
        params: Sequence[nn.Parameter],
        perturbed: Sequence[nn.Parameter],
    ) -> tuple[Tensor, Any, dict[str, float]]:
        """LookSAM's update between refreshes: one pass at w; the perturbed params get
        g + alpha * ||g|| / ||g_v|| * g_v, the others their plain gradient."""
        assert self.g_v is not None
        loss, aux = closure()  # no RNG rewind: one pass draws what SAM's two passes draw
        total(loss).backward()
        norm = grad_norm([p.grad for p in params], self.per_seed)  # ||g|| at w, as on a refresh
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in perturbed]
        with torch.no_grad():
            # A tensor, not a float: no host sync. A non-finite g makes the sum non-finite and
            # the optimizer skips the step, as for SAM.
            scale = (
                self.alpha
                * grad_norm(grads, self.per_seed)
                / (grad_norm(self.g_v, self.per_seed) + 1e-12)
            )
            for p, g, v in zip(perturbed, grads, self.g_v):
                p.grad = g + per_slice(scale, v) * v
        return loss.detach(), aux, {"grad_norm": scalar(norm), "sam_reused": 1.0}

    def state_dict(self) -> dict[str, Any]:
        """The g_v reused between refreshes and the update that computed it; {} without one."""
        if self.g_v is None:
            return {}
        return {"g_v": list(self.g_v), "refreshed_at": self.refreshed_at}

    def load_state_dict(self, state: dict[str, Any], perturbed: Sequence[nn.Parameter]) -> None:
        """Restore from `state_dict()` onto the perturbed params' devices; {} (a checkpoint
        from before `every`, or every = 1) leaves no g_v, so the next update refreshes."""
        if not state.get("g_v"):
            self.g_v, self.refreshed_at = None, None
            return
        g_v = state["g_v"]
        shapes = [tuple(v.shape) for v in g_v]
        if shapes != [tuple(p.shape) for p in perturbed]:
            raise ValueError(
                f"objective state: g_v has {len(g_v)} tensors of shapes {shapes}, which do not "
                f"match the {len(perturbed)} perturbed parameters"
            )
        self.g_v = [v.to(device=p.device, dtype=p.dtype, copy=True) for v, p in zip(g_v, perturbed)]
        self.refreshed_at = int(state["refreshed_at"])


def orthogonal_part(
    g_s: Sequence[Tensor], g: Sequence[Tensor], per_seed: bool = False
) -> list[Tensor]:
    """g_s - (<g_s, g> / ||g||^2) g, with the lists taken as one vector (LookSAM's g_v);
    `per_seed`: each seed's slices as its own vector."""
    if per_seed:
        dot = torch.stack([(a * b).flatten(1).sum(1) for a, b in zip(g_s, g)]).sum(0)
        sq = torch.stack([(b * b).flatten(1).sum(1) for b in g]).sum(0)
    else:
        dot = torch.stack([(a * b).sum() for a, b in zip(g_s, g)]).sum()
        sq = torch.stack([(b * b).sum() for b in g]).sum()
    coef = dot / (sq + 1e-30)  # g = 0: g_v = g_s
    return [a - per_slice(coef, b) * b for a, b in zip(g_s, g)]


class ASAM(SAM):
    """Adaptive SAM: eps = rho * T^2 g / ||T g|| with T = |w| + eta, invariant to weight scale."""

    name = "asam"

    def __init__(
        self, rho: float, eta: float, start_step: int = 0, every: int = 1, alpha: float = 0.7
    ) -> None:
        super().__init__(rho, start_step, every, alpha)
        if not eta >= 0:
            raise ConfigError(f"objective.eta={eta!r} is not valid; it must be >= 0")
        self.eta = float(eta)

    def perturbation(self, params: Sequence[Tensor], grads: Sequence[Tensor]) -> list[Tensor]:
        """The ascent step in the weight-scaled geometry."""
        scales = [p.detach().abs() + self.eta for p in params]
        scaled = [t * g for t, g in zip(scales, grads)]
        factor = self.rho / (grad_norm(scaled, self.per_seed) + 1e-12)
        return [t * sg * per_slice(factor, sg) for t, sg in zip(scales, scaled)]
