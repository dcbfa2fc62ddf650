"""K seeds' copies of one network as one: stacked weights, one vmapped call for all seeds.

`python train.py seeds=K` builds K agents as K runs would, then stacks each parameter of
their networks into one (K, ...) tensor and makes every copy's parameter a view of its slice:
each agent still acts, evaluates and checkpoints alone, with its own weights, while an update
runs each seed's loss in one `torch.func.vmap` over the stack (batched matrix products instead
of K times the per-op overhead). Random draws inside follow each seed's own generator
(`mbrl_sam.seeded`), so seed k's weights track those of a run of its own.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mbrl_sam import seeded
from mbrl_sam.objectives import LossClosure
from mbrl_sam.optim import ClosureOptimizer


class SeedStack:
    """The parameters of K copies of one module, stacked along a leading seed axis."""

    def __init__(self, copies: Sequence[nn.Module]) -> None:
        """`copies[0]`'s code runs every seed's call (with that seed's weights swapped in)."""
        self.copies = list(copies)
        self.params: dict[str, Tensor] = {}
        for name, p in copies[0].named_parameters():
            slices = [dict(c.named_parameters())[name].detach() for c in copies]
            self.params[name] = torch.stack(slices).requires_grad_(p.requires_grad)
        for k, module in enumerate(copies):
            for name, p in module.named_parameters():
                p.data = self.params[name].detach()[k]  # the copy now reads and writes slice k
        self.ids = torch.arange(len(copies), device=next(iter(self.params.values())).device)
        # Where each parameter of copies[0] lives (its module and name there): a call swaps the
        # stacked tensors in and out directly (functional_call re-walks the module tree each
        # time, about 1 ms a call at tiny).
        self._names = {id(p): name for name, p in copies[0].named_parameters()}
        self._slots = []
        for name in self.params:
            owner, _, leaf = name.rpartition(".")
            self._slots.append((copies[0].get_submodule(owner), leaf, name))

    @property
    def seeds(self) -> int:
        """How many copies are stacked."""
        return len(self.copies)

    def stacked(self, params: Sequence[nn.Parameter]) -> list[Tensor]:
        """The stacked tensors of `copies[0]`'s parameters `params`, in their order."""
        return [self.params[self._names[id(p)]] for p in params]

    def call(
        self,
        fn: Callable[..., Any],
        *args: Any,
        frozen: Sequence[nn.Parameter] = (),
    ) -> Any:
        """`fn(*args_k)` for every seed k at once, with seed k's weights and random streams
        (the generators of the enclosing `seeded.generators_in_use`);
        `args` and the outputs carry the seed axis first. `fn` is a function of `copies[0]`
        (its methods, or its agent's). `frozen` parameters pass gradients on to their inputs
        but get none themselves."""
        frozen_names = {self._names[id(p)] for p in frozen}
        weights = [
            self.params[name].detach() if name in frozen_names else self.params[name]
            for _, _, name in self._slots
        ]

        def one(weights: list[Tensor], ids: Tensor, *args: Any) -> Any:
            kept = [module._parameters[leaf] for module, leaf, _ in self._slots]
            for (module, leaf, _), w in zip(self._slots, weights):
                module._parameters[leaf] = w  # seed k's weights, as functional_call would
            try:
                with seeded.streams(ids):
                    return fn(*args)
            finally:
                for (module, leaf, _), w in zip(self._slots, kept):
                    module._parameters[leaf] = w

        return torch.func.vmap(one)(weights, self.ids, *args)


class StackedOptimizer:
    """One ClosureOptimizer over the stacked parameters of K seeds' optimizers, with each
    seed's optimizer kept in step: its Adam moments, LookSAM direction and skip count are
    views or copies of its slice, so a seed's checkpoint is the one a run of its own writes."""

    def __init__(self, optimizers: Sequence[ClosureOptimizer], stack: SeedStack) -> None:
        self.optimizers = list(optimizers)
        first = optimizers[0]
        groups = [
            {**{k: v for k, v in g.items() if k != "params"}, "params": stack.stacked(g["params"])}
            for g in first.adam.param_groups
        ]
        self.stacked = ClosureOptimizer(
            groups,
            first.adam.defaults["lr"],
            first.adam.defaults["eps"],
            first.clip,
            first.adam.defaults["weight_decay"],
            copy.deepcopy(first.objective),
            stack.stacked(first.perturbed),
            per_seed=True,
        )
        self._moments = -1  # how many parameters had Adam state at the last scatter
        self._gather()

    def _gather(self) -> None:
        """Stack the seeds' own state (a resumed run's) into the stacked optimizer."""
        stacked, opts = self.stacked, self.optimizers
        for i, p in enumerate(stacked.params):
            states = [o.adam.state.get(o.params[i], {}) for o in opts]
            if all("exp_avg" in s for s in states):
                stacked.adam.state[p] = {
                    "step": states[0]["step"].clone(),
                    "exp_avg": torch.stack([s["exp_avg"] for s in states]),
                    "exp_avg_sq": torch.stack([s["exp_avg_sq"] for s in states]),
                }
        stacked.skipped = [int(o.skipped) for o in opts]
        objectives = [o.objective for o in opts]
        g_vs = [getattr(obj, "g_v", None) for obj in objectives]
        if all(g is not None for g in g_vs):
            stacked.objective.g_v = [torch.stack(vs) for vs in zip(*g_vs)]  # type: ignore[attr-defined]
            stacked.objective.refreshed_at = objectives[0].refreshed_at  # type: ignore[attr-defined]
        self._scatter()

    def _scatter(self) -> None:
        """Point each seed's optimizer state at its slice of the stacked state (Adam's moments
        once they exist: fused Adam updates them in place, so the views stay current)."""
        stacked = self.stacked
        moments = len(stacked.adam.state) != self._moments
        self._moments = len(stacked.adam.state)
        for k, opt in enumerate(self.optimizers):
            for i, p in enumerate(stacked.params if moments else ()):
                state = stacked.adam.state.get(p)
                if state:
                    opt.adam.state[opt.params[i]] = {
                        "step": state["step"],
                        "exp_avg": state["exp_avg"][k],
                        "exp_avg_sq": state["exp_avg_sq"][k],
                    }
            opt.skipped = stacked.skipped[k] if isinstance(stacked.skipped, list) else 0
            g_v = getattr(stacked.objective, "g_v", None)
            if g_v is not None:
                opt.objective.g_v = [v[k] for v in g_v]  # type: ignore[attr-defined]
                opt.objective.refreshed_at = stacked.objective.refreshed_at  # type: ignore[attr-defined]

    def step(
        self, closure: LossClosure, step: int = 0, commit: Callable[[Any], None] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """One stacked update (`ClosureOptimizer.step`, per seed); then the seeds' own state."""
        out = self.stacked.step(closure, step, commit)
        self._scatter()
        return out
