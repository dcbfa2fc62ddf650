"""An optimizer that takes a loss closure: objective -> gradients -> clip -> Adam step."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from omegaconf import MISSING
from torch import Tensor, nn

from mbrl_sam.errors import check_positive
from mbrl_sam.objectives import (
    ERM,
    LossClosure,
    Objective,
    ObjectiveConfig,
    build_objective,
    select_params,
)
from mbrl_sam.objectives.base import grad_norm, per_slice


@dataclass
class OptimizerConfig:
    """Adam with global-norm gradient clipping (`agent.model_opt`, `agent.pi_opt`)."""

    where: ClassVar[str] = "agent.model_opt"  # its key in the run config, for error messages

    # Each agent's config sets all three: no value suits every agent.
    lr: float = MISSING
    eps: float = MISSING
    clip: float = MISSING  # the global gradient norm is clipped to this

    def __post_init__(self) -> None:
        for key in ("lr", "eps", "clip"):
            check_positive(f"{self.where}.{key}", getattr(self, key))


class ClosureOptimizer:
    """Adam over `params`, driven by an objective; skips steps whose gradient is not finite."""

    def __init__(
        self,
        params: Iterable[nn.Parameter] | Iterable[dict[str, Any]],
        lr: float,
        eps: float,
        clip: float,
        weight_decay: float = 0.0,
        objective: Objective | None = None,
        perturbed: Sequence[nn.Parameter] | None = None,
        per_seed: bool = False,
    ) -> None:
        """`per_seed`: every parameter holds K seeds' along its first axis (`seeds=K`); the
        closure returns one loss per seed, and norms, clipping and skips are each seed's."""
        # Parameters, or torch-style groups ({"params": [...], "lr": ...}) for per-group rates.
        groups = list(params)
        if not groups or not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in groups]
        self.params = [p for g in groups for p in g["params"]]
        self.objective = objective or ERM()
        self.objective.per_seed = self.per_seed = per_seed
        self.perturbed = list(self.params if perturbed is None else perturbed)
        self.clip = clip
        # fused: one kernel over all tensors instead of a loop of small ops per tensor (tiny
        # models: clip + Adam 1.40 -> 0.57 ms, docs/speed.md).
        self.adam = torch.optim.Adam(groups, lr=lr, eps=eps, weight_decay=weight_decay, fused=True)
        self.skipped: int | list[int] = 0
        # Per seed: which seeds' last step was taken (a `commit` keeps the others' state).
        self.stepped: Tensor | None = None

    def step(
        self,
        closure: LossClosure,
        step: int = 0,
        commit: Callable[[Any], None] | None = None,
    ) -> tuple[Any, dict[str, float]]:
        """One update; returns the closure's aux (unperturbed pass) and metrics.

        An objective may evaluate the closure more than once (SAM: twice), so the closure must
        not change state. State it computes (a scale's EMA, say) goes into its aux, and
        `commit(aux)` applies it: once per step, after the parameter update, with the aux of the
        unperturbed pass; not at all when the step is skipped for a non-finite gradient.
        """
        self.adam.zero_grad(set_to_none=True)
        loss, aux, metrics = self.objective.backward(closure, self.params, self.perturbed, step)
        for p in self.params:
            # Fused Adam (torch 2.13, CPU) reads a strided gradient as if it were contiguous,
            # and gradients a vmap or autograd.grad returns may be strided (e.g. transposed).
            if p.grad is not None and not p.grad.is_contiguous():
                p.grad = p.grad.contiguous()
        if self.per_seed:
            return aux, self._step_per_seed(aux, metrics, commit)
        # Clipping applies to the final gradient, after the objective has built it.
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        metrics["final_grad_norm"] = float(norm)
        if torch.isfinite(norm):
            self.adam.step()
            if commit is not None:
                commit(aux)
            metrics["skipped_step"] = 0.0
        else:
            self.skipped += 1
            metrics["skipped_step"] = 1.0
        metrics["skipped_total"] = float(self.skipped)
        self.adam.zero_grad(set_to_none=True)
        return aux, metrics

    def _step_per_seed(
        self, aux: Any, metrics: dict, commit: Callable[[Any], None] | None
    ) -> dict[str, Any]:
        """Clip each seed's gradient to its own norm and step; a seed whose gradient is not
        finite keeps its weights and Adam moments (its step count moves with the stack's)."""
        grads = [p.grad for p in self.params if p.grad is not None]
        norm = grad_norm(grads, per_seed=True)
        # clip_grad_norm_'s formula, one coefficient per seed.
        coef = (self.clip / (norm + 1e-6)).clamp(max=1.0)
        torch._foreach_mul_(grads, [per_slice(coef, g) for g in grads])
        finite = torch.isfinite(norm)
        self.stepped = finite
        kept = None
        if not bool(finite.all()):
            kept = [(t, t.detach().clone()) for t in self._stepped_tensors()]
            for g in grads:
                g.nan_to_num_(0.0, 0.0, 0.0)  # a non-finite seed's step is undone below
        self.adam.step()
        if kept is not None:
            with torch.no_grad():
                for t, before in kept:
                    t.copy_(torch.where(per_slice(finite, t), t, before))
        if commit is not None:
            commit(aux)
        skipped = (~finite).long().tolist()
        if isinstance(self.skipped, int):
            self.skipped = [self.skipped] * len(skipped)
        self.skipped = [a + b for a, b in zip(self.skipped, skipped)]
        metrics["final_grad_norm"] = norm.tolist()
        metrics["skipped_step"] = [float(x) for x in skipped]
        metrics["skipped_total"] = [float(x) for x in self.skipped]
        self.adam.zero_grad(set_to_none=True)
        return metrics

    def _stepped_tensors(self) -> list[Tensor]:
        """The parameters and their Adam moments (what a step changes per seed)."""
        out = []
        for p in self.params:
            state = self.adam.state.get(p, {})
            out += [p, *(state[k] for k in ("exp_avg", "exp_avg_sq") if k in state)]
        return out

    def learning_rate(self) -> float:
        """The largest step size any parameter takes (the stability limits are stated in it)."""
        return max(float(g["lr"]) for g in self.adam.param_groups)

    def preconditioner(self, params: list[nn.Parameter]) -> tuple[Tensor, float] | None:
        """Adam's P^-1/2 over `params` in units of `learning_rate()`, and beta1; None before the
        first step."""
        return adam_preconditioner(self.adam, params, self.learning_rate())

    def state_dict(self) -> dict:
        """Adam state, the count of skipped steps and the objective's state (LookSAM's g_v)."""
        state = {"adam": self.adam.state_dict(), "skipped": self.skipped}
        return {**state, "objective": self.objective.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restore from `state_dict()`; a checkpoint from before the objective had state
        restores none (a scheduled SAM then refreshes at its next update)."""
        self.adam.load_state_dict(state["adam"])
        self.skipped = state["skipped"]
        self.objective.load_state_dict(state.get("objective", {}), self.perturbed)


def adam_preconditioner(
    adam: torch.optim.Adam, params: list[nn.Parameter], lr: float
) -> tuple[Tensor, float] | None:
    """P^-1/2 from Adam's state (P = sqrt(v_hat) + eps) over `params` as a flat vector, each
    parameter's scaled by sqrt(its group's lr / lr) so that lr * P^-1 is the step it takes; and
    beta1. None while a parameter has no second-moment state yet."""
    groups = {id(p): g for g in adam.param_groups for p in g["params"]}
    scales = []
    for p in params:
        state, group = adam.state.get(p, {}), groups[id(p)]
        if "exp_avg_sq" not in state:
            return None
        beta2 = group["betas"][1]
        v_hat = state["exp_avg_sq"] / (1 - beta2 ** float(state["step"]))
        relative = (group["lr"] / lr) ** 0.5
        scales.append(((v_hat.sqrt() + group["eps"]).rsqrt() * relative).flatten())
    return torch.cat(scales), float(adam.param_groups[0]["betas"][0])


def world_model_optimizer(
    model: nn.Module,
    opt: OptimizerConfig,
    objective: ObjectiveConfig,
    lr_scales: dict[str, float] | None = None,
) -> ClosureOptimizer:
    """Adam over a world model's parameters, stepped through `objective`, which perturbs the
    groups `objective.perturb` names (`auto` already resolved). `lr_scales` gives some groups
    lr x scale (TD-MPC2's slower encoder); the rest share one group."""
    groups = model.param_groups()
    params: Any = model.parameters()
    if lr_scales:
        params = [{"params": groups[name], "lr": opt.lr * s} for name, s in lr_scales.items()]
        rest = [p for name, ps in groups.items() if name not in lr_scales for p in ps]
        params.append({"params": rest})
    return ClosureOptimizer(
        params,
        opt.lr,
        opt.eps,
        opt.clip,
        objective=build_objective(objective),
        perturbed=select_params(groups, objective.perturb),
    )
