"""Random draws that follow each seed's own stream when several seeds train stacked.

A run with `seeds=K` evaluates its K networks in one `vmap`. A random op inside it would draw
for all seeds at once from one generator, so seed k would see other numbers than a run of its
own. The model code draws through the functions here instead: outside `streams()` they are
torch's own ops on the global generator (a single run draws exactly what it always drew);
inside, they are custom ops whose vmap rule draws each seed's slice from that seed's generator
with the shape a single run draws, so seed k gets the numbers its own run would.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

# The seeds' generators while stacked code runs, and the seed-index tensor that the vmapped
# function was given (vmap batches it: each seed's call sees its own index).
_GENERATORS: list[torch.Generator] | None = None
_IDS: Tensor | None = None


@contextlib.contextmanager
def generators_in_use(generators: Sequence[torch.Generator]) -> Iterator[None]:
    """The seeds' generators for a stacked computation: what `streams` draws from and what
    `fork_rng` rewinds (entered around a whole stacked update, objective included)."""
    global _GENERATORS
    saved, _GENERATORS = _GENERATORS, list(generators)
    try:
        yield
    finally:
        _GENERATORS = saved


@contextlib.contextmanager
def streams(ids: Tensor) -> Iterator[None]:
    """Inside a vmapped function: slice k of each draw in the block comes from generator
    `ids[k]` of `generators_in_use` (`ids` is the function's own, batched, index argument)."""
    global _IDS
    if _GENERATORS is None:
        raise RuntimeError("seeded.streams() outside seeded.generators_in_use()")
    saved, _IDS = _IDS, ids
    try:
        yield
    finally:
        _IDS = saved


def generators() -> list[torch.Generator]:
    """The generators of the enclosing `generators_in_use` (for rewinding them, as SAM does)."""
    return list(_GENERATORS or [])


def _draw_each(ids: Tensor, draw: Callable[[torch.Generator], Tensor]) -> Tensor:
    """`draw(generator)` seed by seed, in seed order, stacked along a new leading axis."""
    assert _GENERATORS is not None
    # The vmap rule still runs under vmap's random-op guard; the draws themselves are plain.
    keys = torch._C.DispatchKeySet(torch._C.DispatchKey.FuncTorchVmapMode)
    with torch._C._ExcludeDispatchKeyGuard(keys):
        return torch.stack([draw(_GENERATORS[i]) for i in ids.flatten().tolist()])


def _one(ids: Tensor, draw: Callable[[torch.Generator], Tensor]) -> Tensor:
    """`draw` with the generator of a lone (0-d) seed index."""
    assert _GENERATORS is not None
    return draw(_GENERATORS[int(ids)])


def _normal_draw(shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> Callable:
    return lambda g: torch.randn(list(shape), generator=g, dtype=dtype, device=device)


def _bernoulli_draw(
    shape: Sequence[int], keep: float, dtype: torch.dtype, device: torch.device
) -> Callable:
    return lambda g: torch.empty(list(shape), dtype=dtype, device=device).bernoulli_(
        keep, generator=g
    )


def _randperm_draw(n: int, device: torch.device) -> Callable:
    return lambda g: torch.randperm(n, generator=g, device=device)


@torch.library.custom_op("mbrl_sam::seeded_normal", mutates_args=())
def _normal(ids: Tensor, shape: Sequence[int], dtype: torch.dtype) -> Tensor:
    return _one(ids, _normal_draw(shape, dtype, ids.device))


@torch.library.custom_op("mbrl_sam::seeded_bernoulli", mutates_args=())
def _bernoulli(ids: Tensor, shape: Sequence[int], keep: float, dtype: torch.dtype) -> Tensor:
    return _one(ids, _bernoulli_draw(shape, keep, dtype, ids.device))


@torch.library.custom_op("mbrl_sam::seeded_randperm", mutates_args=())
def _randperm(ids: Tensor, n: int) -> Tensor:
    return _one(ids, _randperm_draw(n, ids.device))


@_normal.register_vmap
def _normal_vmap(info, in_dims, ids, shape, dtype):  # noqa: ANN001, ANN202
    return _draw_each(ids, _normal_draw(shape, dtype, ids.device)), 0


@_bernoulli.register_vmap
def _bernoulli_vmap(info, in_dims, ids, shape, keep, dtype):  # noqa: ANN001, ANN202
    return _draw_each(ids, _bernoulli_draw(shape, keep, dtype, ids.device)), 0


@_randperm.register_vmap
def _randperm_vmap(info, in_dims, ids, n):  # noqa: ANN001, ANN202
    return _draw_each(ids, _randperm_draw(n, ids.device)), 0


def randn_like(x: Tensor) -> Tensor:
    """Standard normal noise shaped like `x` (torch.randn_like)."""
    if _IDS is None:
        return torch.randn_like(x)
    return _normal(_IDS, list(x.shape), x.dtype)


def randperm(n: int, device: torch.device) -> Tensor:
    """A random permutation of 0..n-1 (torch.randperm)."""
    if _IDS is None:
        return torch.randperm(n, device=device)
    return _randperm(_IDS, n)


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Inverted dropout (F.dropout), drawing its mask as torch does on the CPU: keep with
    probability 1 - p, scaled by 1 / (1 - p), then multiplied in."""
    if _IDS is None or not training or p == 0:
        return F.dropout(x, p, training)
    keep = 1.0 - p
    mask = _bernoulli(_IDS, list(x.shape), keep, x.dtype)
    return x * mask.div_(keep)


@contextlib.contextmanager
def fork_rng(devices: Sequence[int] = ()) -> Iterator[None]:
    """Run a block, then rewind the global generators (`torch.random.fork_rng`) and the
    active seeds' generators to where they were: a second pass then draws the same numbers."""
    kept = [(g, g.get_state()) for g in generators()]
    with torch.random.fork_rng(devices=list(devices)):
        yield
    for g, state in kept:
        g.set_state(state)
