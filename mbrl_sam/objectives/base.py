"""The objective interface: turn a loss closure into gradients on a parameter set."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mbrl_sam.errors import ConfigError

# A closure evaluates the loss afresh on the current weights; it returns (loss, aux).
LossClosure = Callable[[], tuple[Tensor, Any]]


class Objective(ABC):
    """Fills `.grad` of `params` from a loss closure; the optimizer then steps."""

    name = "objective"
    # Parameters stacked along a leading seed axis (`seeds=K`): every norm, ascent step and
    # metric is per seed, as K separate runs would compute them. Set by the optimizer.
    per_seed = False

    @abstractmethod
    def backward(
        self,
        closure: LossClosure,
        params: Sequence[nn.Parameter],
        perturbed: Sequence[nn.Parameter],
        step: int,
    ) -> tuple[Tensor, Any, dict[str, float]]:
        """Evaluate the closure, write gradients into `.grad`; return (loss, aux, metrics).

        `perturbed` is the subset of `params` that a sharpness-aware objective perturbs; the
        others receive the gradient at the unperturbed weights. `aux` is the closure's aux from
        the unperturbed weights.
        """

    def state_dict(self) -> dict[str, Any]:
        """What the objective carries from one update to the next (saved with the optimizer)."""
        return {}

    def load_state_dict(self, state: dict[str, Any], perturbed: Sequence[nn.Parameter]) -> None:
        """Restore from `state_dict()`, tensors onto the devices of `perturbed`."""
        del state, perturbed  # stateless: nothing to restore


def grad_norm(grads: Sequence[Tensor | None], per_seed: bool = False) -> Tensor:
    """Global L2 norm of a list of gradients (None counts as zero); `per_seed`: of each slice
    along the leading (seed) axis, shape (K,)."""
    present = [g.detach() for g in grads if g is not None]
    if not present:
        return torch.zeros(())
    if per_seed:
        norms = [torch.linalg.vector_norm(g.flatten(1), dim=1) for g in present]
        return torch.linalg.vector_norm(torch.stack(norms), dim=0)
    # One fused kernel for all the norms (as clip_grad_norm_ does), not one op per tensor.
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(present)))


def per_slice(scale: Tensor, like: Tensor) -> Tensor:
    """A scalar, or one value per seed (K,) shaped to multiply `like` (K, ...) slice by slice."""
    return scale if scale.dim() == 0 else scale.view(-1, *[1] * (like.dim() - 1))


def total(loss: Tensor) -> Tensor:
    """The loss to differentiate: a per-seed closure's (K,) losses summed (each seed's weights
    get its own loss's gradient), a single loss as it is."""
    return loss if loss.dim() == 0 else loss.sum()


def scalar(x: Tensor) -> float | list[float]:
    """A metric's value: a float, or one float per seed."""
    return x.detach().tolist()


def select_params(groups: dict[str, list[nn.Parameter]], spec: str) -> list[nn.Parameter]:
    """Parameters named by `spec`: "all" or group names joined by "+" (e.g. encoder+dynamics)."""
    if spec == "all":
        return [p for params in groups.values() for p in params]
    names = spec.split("+")
    unknown = [n for n in names if n not in groups]
    if unknown or not names:
        valid = ", ".join(["all", *groups])
        raise ConfigError(
            f"objective.perturb={spec!r}: unknown group {', '.join(map(repr, unknown))}; "
            f"use 'all' or '+'-joined names from: {valid}"
        )
    return [p for n in names for p in groups[n]]
