"""Hessian-vector products of a loss closure on fixed data and fixed random draws."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn


def flatten(tensors: Sequence[Tensor]) -> Tensor:
    """One flat vector from a list of tensors."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(vector: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    """Split a flat vector into tensors shaped like `like`."""
    out, offset = [], 0
    for t in like:
        out.append(vector[offset : offset + t.numel()].view_as(t))
        offset += t.numel()
    return out


class LossProbe:
    """A loss closure made deterministic: every evaluation replays the same random draws.

    `closure()` returns a scalar loss (or a (loss, aux) pair); `params` are the parameters the
    measurements are taken in. Dropout, latent samples and the like draw from torch's RNG, which
    is reseeded with `seed` (and restored afterwards) around every evaluation, so the Hessian
    operator is one fixed symmetric matrix and a measurement repeats exactly.
    """

    def __init__(
        self, closure: Callable[[], object], params: Sequence[nn.Parameter], seed: int = 0
    ) -> None:
        self.closure, self.params, self.seed = closure, list(params), seed
        self.hvp_count = 0
        self.on_hvp: Callable[[], object] | None = None  # called after each product (progress)
        cuda = [p.device.index or 0 for p in self.params if p.device.type == "cuda"]
        self._devices = sorted(set(cuda))

    def loss(self) -> Tensor:
        """The loss at the current weights, with the fixed random draws."""
        with torch.random.fork_rng(devices=self._devices):
            torch.manual_seed(self.seed)
            out = self.closure()
        return out[0] if isinstance(out, tuple) else out

    def grad(self, create_graph: bool = False) -> list[Tensor]:
        """Gradient of the loss with respect to `params` (zeros where unused)."""
        grads = torch.autograd.grad(
            self.loss(), self.params, create_graph=create_graph, allow_unused=True
        )
        return [torch.zeros_like(p) if g is None else g for p, g in zip(self.params, grads)]

    def hvp(self, vector: Tensor) -> Tensor:
        """H v by double backward (exact); `vector` and the result are flat."""
        self.hvp_count += 1
        grads = self.grad(create_graph=True)
        dot = sum((g * v).sum() for g, v in zip(grads, unflatten(vector, self.params)))
        hv = torch.autograd.grad(dot, self.params, allow_unused=True)
        self._done()
        return flatten([torch.zeros_like(p) if h is None else h for p, h in zip(self.params, hv)])

    def _done(self) -> None:
        if self.on_hvp is not None:
            self.on_hvp()

    def hvp_finite_difference(self, vector: Tensor, eps: float = 1e-3) -> Tensor:
        """H v ~ (g(w + e v) - g(w - e v)) / (2 e), e = eps / ||v||: for operations that have
        no double backward (some fused kernels)."""
        self.hvp_count += 1
        step = eps / (vector.norm() + 1e-12)
        pieces = unflatten(vector, self.params)
        originals = [p.detach().clone() for p in self.params]
        try:
            with torch.no_grad():
                for p, v in zip(self.params, pieces):
                    p.add_(v, alpha=step)
            plus = flatten(self.grad())
            with torch.no_grad():
                for p, w, v in zip(self.params, originals, pieces):
                    p.copy_(w).sub_(v, alpha=step)
            minus = flatten(self.grad())
        finally:
            with torch.no_grad():
                for p, w in zip(self.params, originals):
                    p.copy_(w)
        self._done()
        return (plus - minus) / (2 * step)

    @property
    def dim(self) -> int:
        """Number of parameters measured."""
        return sum(p.numel() for p in self.params)

    def operator(
        self, method: str = "double_backward", scale: Tensor | None = None
    ) -> Callable[[Tensor], Tensor]:
        """The map v -> H v (or D H D v with D = diag(scale), for preconditioned sharpness)."""
        if method not in ("double_backward", "finite_difference"):
            raise ValueError(f"method={method!r}; choose double_backward or finite_difference")
        product = self.hvp if method == "double_backward" else self.hvp_finite_difference

        first = self.params[0]

        def matvec(vector: Tensor) -> Tensor:
            vector = vector.to(first.device, first.dtype)
            if scale is None:
                return product(vector).detach()
            return (scale * product(scale * vector)).detach()

        return matvec
