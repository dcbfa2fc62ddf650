"""All flatness measurements of an agent at once: world-model sharpness on a fixed probe batch,
value-estimation gap, model error and performance gap on fresh real episodes."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mbrl_sam.agent import WorldModelAgent
from mbrl_sam.environment import Env
from mbrl_sam.errors import check_int, check_positive
from mbrl_sam.evaluation.model_error import measure_model_error
from mbrl_sam.evaluation.value_gap import measure_value_gap
from mbrl_sam.objectives import select_params
from mbrl_sam.runtime import matmul_precision
from mbrl_sam.sharpness import (
    LossProbe,
    hutchinson_trace,
    preconditioned_sharpness,
    sam_sharpness,
    top_eigenvalue,
)


@dataclass
class MeasureConfig:
    """What to measure and how hard (configs/config.yaml `measure:`)."""

    every: int = 0  # updates between measurements during training; 0: off
    groups: str = "all"  # world-model parameters measured: all, or '+'-joined group names
    lanczos_steps: int = 20
    trace_samples: int = 10
    sam_radius: float = 0.05  # radius of the ball SAM-sharpness maximises over
    ascent_steps: int = 1
    episodes: int = 1  # real episodes for value gap, model error and performance gap
    horizon: int = 15  # open-loop steps for the model error
    seed: int = 0  # fixes the probe's random draws

    def __post_init__(self) -> None:
        check_int("measure.every", self.every, 0)
        for key in ("lanczos_steps", "trace_samples", "ascent_steps", "episodes", "horizon"):
            check_int(f"measure.{key}", getattr(self, key), 1)
        check_positive("measure.sam_radius", self.sam_radius)
        check_int("measure.seed", self.seed, 0)


def world_model_probe(
    agent: WorldModelAgent, batch: dict[str, Tensor], cfg: MeasureConfig
) -> LossProbe:
    """The world-model loss on `batch` over the chosen parameter groups, draws fixed."""
    params = select_params(agent.world_model.param_groups(), cfg.groups)
    closure = agent.model_loss(batch)

    def eager_loss() -> tuple[Tensor, dict]:
        # Compiled modules (agent.compile=true) have backward graphs that cannot be
        # differentiated again; Hessian-vector products need the eager ones (torch >= 2.6).
        set_stance = getattr(torch.compiler, "set_stance", None)
        with set_stance("force_eager") if set_stance else contextlib.nullcontext():
            return closure()

    return LossProbe(eager_loss, params, cfg.seed)


def sharpness_measures(
    agent: WorldModelAgent, batch: dict[str, Tensor], cfg: MeasureConfig
) -> dict:
    """Top eigenvalue (vs 2/lr), trace, SAM sharpness, Adam-preconditioned sharpness."""
    # In float32 whatever the run trains with: L(w + eps) - L(w) and the Lanczos recurrence
    # are differences of nearby values that bfloat16 products would drown in rounding.
    with matmul_precision("highest"):
        return _sharpness_measures(agent, batch, cfg)


def _sharpness_measures(
    agent: WorldModelAgent, batch: dict[str, Tensor], cfg: MeasureConfig
) -> dict:
    probe = world_model_probe(agent, batch, cfg)
    adam = agent.model_optimizer.adam
    lr = float(adam.param_groups[-1]["lr"])
    out: dict[str, float] = {"params_measured": float(probe.dim)}
    start = time.perf_counter()
    out.update(top_eigenvalue(probe, lr, cfg.lanczos_steps))
    trace, stderr = hutchinson_trace(probe.operator(), probe.dim, cfg.trace_samples, cfg.seed)
    out.update(trace=trace, trace_stderr=stderr)
    out.update(sam_sharpness(probe, cfg.sam_radius, cfg.ascent_steps))
    if all("exp_avg_sq" in adam.state.get(p, {}) for p in probe.params):
        out.update(preconditioned_sharpness(probe, adam, cfg.lanczos_steps))
    out["hvps"] = float(probe.hvp_count)
    out["seconds"] = time.perf_counter() - start
    return out


def measure_all(
    agent: WorldModelAgent, batch: dict[str, Tensor], env: Env, cfg: MeasureConfig, seed: int
) -> dict[str, Any]:
    """Every measurement; `flat` holds the scalars to log, the rest the per-step details."""
    with torch.random.fork_rng():  # measuring must not shift the training run's random draws
        sharp = sharpness_measures(agent, batch, cfg)
        value = measure_value_gap(agent, env, cfg.episodes, seed)
        model = measure_model_error(agent, env, cfg.episodes, seed, cfg.horizon)
    flat = {f"sharpness/{k}": v for k, v in sharp.items()}
    flat.update({f"value_gap/{k}": v for k, v in value["overall"].items()})
    for key, errors in model["open_loop"].items():
        flat[f"model_error/{key}_1"] = errors[0]
        flat[f"model_error/{key}_{len(errors)}"] = errors[-1]
    gap = model["performance_gap"]
    flat["performance_gap/gap"] = gap["gap"]
    flat["performance_gap/abs_gap"] = gap["abs_gap"]
    return {"flat": flat, "value_gap": value, "model_error": model, "sharpness": sharp}
