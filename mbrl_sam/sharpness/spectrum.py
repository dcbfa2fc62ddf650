"""Spectral estimates of a symmetric operator given only v -> A v: power iteration, Lanczos
with full reorthogonalisation, and Hutchinson's trace estimator."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

# v -> A v; called with float64 CPU vectors, may return any float dtype and device.
MatVec = Callable[[Tensor], Tensor]


def _start(dim: int, generator: torch.Generator) -> Tensor:
    v = torch.randn(dim, generator=generator, dtype=torch.float64)
    return v / v.norm()


def power_iteration(
    matvec: MatVec, dim: int, iters: int = 100, tol: float = 1e-6, seed: int = 0
) -> tuple[float, int]:
    """Eigenvalue of largest magnitude and the number of products used."""
    gen = torch.Generator().manual_seed(seed)
    v = _start(dim, gen)
    value = 0.0
    for i in range(1, iters + 1):
        w = matvec(v).double().cpu()
        new = float(v @ w)  # Rayleigh quotient of the unit vector v
        norm = w.norm()
        if norm == 0:
            return 0.0, i
        v = w / norm
        if i > 1 and abs(new - value) <= tol * max(abs(new), 1e-12):
            return new, i
        value = new
    return value, iters


def lanczos(matvec: MatVec, dim: int, steps: int = 20, k: int = 1, seed: int = 0) -> Tensor:
    """The k algebraically largest Ritz values after `steps` Lanczos steps (descending).

    Every new vector is reorthogonalised against all previous ones (twice), so the Ritz values
    stay free of the spurious copies plain Lanczos produces in floating point.
    """
    steps = min(steps, dim)
    gen = torch.Generator().manual_seed(seed)
    q = _start(dim, gen)
    basis = [q]
    alphas: list[float] = []
    betas: list[float] = []
    for j in range(steps):
        w = matvec(basis[j]).double().cpu()
        alpha = float(basis[j] @ w)
        alphas.append(alpha)
        q_mat = torch.stack(basis)
        for _ in range(2):
            w = w - q_mat.T @ (q_mat @ w)
        beta = float(w.norm())
        if j == steps - 1 or beta < 1e-10:
            break
        betas.append(beta)
        basis.append(w / beta)
    n = len(alphas)
    tri = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if n > 1:
        off = torch.tensor(betas[: n - 1], dtype=torch.float64)
        tri = tri + torch.diag(off, 1) + torch.diag(off, -1)
    ritz = torch.linalg.eigvalsh(tri)
    return ritz.flip(0)[:k]


def hutchinson_trace(
    matvec: MatVec, dim: int, samples: int = 20, seed: int = 0
) -> tuple[float, float]:
    """Unbiased trace estimate from Rademacher probes: (mean, standard error)."""
    gen = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(samples):
        z = torch.randint(0, 2, (dim,), generator=gen).double() * 2 - 1
        values.append(float(z @ matvec(z).double().cpu()))
    estimates = torch.tensor(values, dtype=torch.float64)
    stderr = float(estimates.std() / samples**0.5) if samples > 1 else float("nan")
    return float(estimates.mean()), stderr
