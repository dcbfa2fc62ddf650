"""All flatness measurements of an agent at once: world-model sharpness on a fixed probe batch,
value-estimation gap, model error and performance gap on fresh real episodes."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mbrl_sam.agent import WorldModelAgent
from mbrl_sam.environment import Env
from mbrl_sam.errors import ConfigError, check_int, check_positive
from mbrl_sam.evaluation.model_error import measure_model_error
from mbrl_sam.evaluation.value_gap import measure_value_gap
from mbrl_sam.objectives import select_params
from mbrl_sam.progress import bar
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
    """What to measure and how hard (configs/config.yaml `measure:`).

    The cost, bounded by these settings: Hessian-vector products, lanczos_steps (top
    eigenvalue) + trace_samples + lanczos_steps again (Adam's preconditioned sharpness), and
    ascent_steps gradients, all on one probe batch; then `episodes` real episodes for the value
    gap and as many again for the model error, each of at most `max_episode_steps` env steps.
    """

    every: int = 0  # updates between measurements during training; 0: off
    groups: str = "all"  # world-model parameters measured: all, or '+'-joined group names
    lanczos_steps: int = 20  # Hessian-vector products per eigenvalue
    trace_samples: int = 10  # Hessian-vector products for the trace
    sam_radius: float = 0.05  # radius of the ball SAM-sharpness maximises over
    ascent_steps: int = 1
    episodes: int = 1  # real episodes for value gap, model error and performance gap
    # Env steps after which those episodes are cut (rounded down to whole action repeats; the
    # value gap bootstraps the cut like a time limit); None: as long as the env's own episodes.
    max_episode_steps: int | None = None
    horizon: int = 15  # open-loop steps for the model error
    seed: int = 0  # fixes the probe's random draws

    def __post_init__(self) -> None:
        check_int("measure.every", self.every, 0)
        for key in ("lanczos_steps", "trace_samples", "ascent_steps", "episodes", "horizon"):
            check_int(f"measure.{key}", getattr(self, key), 1)
        check_positive("measure.sam_radius", self.sam_radius)
        check_int("measure.seed", self.seed, 0)
        if self.max_episode_steps is not None:
            # The model error needs episodes longer than its open-loop horizon.
            check_int("measure.max_episode_steps", self.max_episode_steps, self.horizon + 1)

    def episode_limit(self, action_repeat: int) -> int | None:
        """`max_episode_steps` in agent steps for an env that repeats each action so often."""
        if self.max_episode_steps is None:
            return None
        limit = self.max_episode_steps // action_repeat
        if limit <= self.horizon:
            raise ConfigError(
                f"measure.max_episode_steps={self.max_episode_steps} leaves {limit} agent steps "
                f"at action_repeat={action_repeat}; the model error needs more than "
                f"horizon={self.horizon}"
            )
        return limit


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
    agent: WorldModelAgent, batch: dict[str, Tensor], cfg: MeasureConfig, progress: bool = False
) -> dict:
    """Top eigenvalue (vs 2/lr), trace, SAM sharpness, Adam-preconditioned sharpness;
    `progress` shows the Hessian-vector products."""
    # In float32 whatever the run trains with: L(w + eps) - L(w) and the Lanczos recurrence
    # are differences of nearby values that bfloat16 products would drown in rounding.
    with matmul_precision("highest"):
        return _sharpness_measures(agent, batch, cfg, progress)


def _sharpness_measures(
    agent: WorldModelAgent, batch: dict[str, Tensor], cfg: MeasureConfig, progress: bool
) -> dict:
    probe = world_model_probe(agent, batch, cfg)
    lr = agent.model_optimizer.learning_rate()
    preconditioner = agent.model_optimizer.preconditioner(probe.params)
    lanczos_hvps = min(cfg.lanczos_steps, probe.dim)
    total = lanczos_hvps * (2 if preconditioner else 1) + cfg.trace_samples
    out: dict[str, float] = {"params_measured": float(probe.dim)}
    start = time.perf_counter()
    with bar(total, "sharpness", "hvp", progress) as hvps:
        probe.on_hvp = hvps.update
        hvps.set_postfix(now="top eigenvalue", refresh=False)
        out.update(top_eigenvalue(probe, lr, cfg.lanczos_steps))
        hvps.set_postfix(now="trace", refresh=False)
        trace, stderr = hutchinson_trace(probe.operator(), probe.dim, cfg.trace_samples, cfg.seed)
        out.update(trace=trace, trace_stderr=stderr)
        hvps.set_postfix(now="sam sharpness", refresh=False)
        out.update(sam_sharpness(probe, cfg.sam_radius, cfg.ascent_steps))
        if preconditioner is not None:
            hvps.set_postfix(now="adam sharpness", refresh=False)
            scale, beta1 = preconditioner
            out.update(preconditioned_sharpness(probe, scale, lr, beta1, cfg.lanczos_steps))
        hvps.set_postfix(top_eigenvalue=f"{out['top_eigenvalue']:.4g}", refresh=False)
        hvps.total = hvps.n  # Lanczos stops early on an exactly invariant subspace
    out["hvps"] = float(probe.hvp_count)
    out["seconds"] = time.perf_counter() - start
    return out


STAGES = ("sharpness", "value_gap", "model_error")  # measure_all's parts, in the order it runs


def measure_all(
    agent: WorldModelAgent,
    batch: dict[str, Tensor],
    env: Env,
    cfg: MeasureConfig,
    seed: int,
    progress: bool = False,
    on_part: Callable[[dict[str, dict]], None] | None = None,
) -> dict[str, Any]:
    """Every measurement; `flat` holds the scalars to log, the rest the per-step details.

    `progress` shows each stage's Hessian-vector products or env steps; `on_part(parts)` gets
    what is finished so far (STAGES -> result; the episode stages partial until their last
    episode), after each stage and episode, so a caller can keep it (`summarize(parts)`).
    """
    limit = cfg.episode_limit(env.spec.action_repeat)
    parts: dict[str, dict] = {}

    def keeper(stage: str) -> Callable[[dict], None]:
        def keep(result: dict) -> None:
            parts[stage] = result
            if on_part is not None:
                on_part(parts)

        return keep

    episodes = dict(max_steps=limit, progress=progress)
    with torch.random.fork_rng():  # measuring must not shift the training run's random draws
        keeper("sharpness")(sharpness_measures(agent, batch, cfg, progress))
        parts["value_gap"] = measure_value_gap(
            agent, env, cfg.episodes, seed, on_episode=keeper("value_gap"), **episodes
        )
        parts["model_error"] = measure_model_error(
            agent,
            env,
            cfg.episodes,
            seed,
            cfg.horizon,
            on_episode=keeper("model_error"),
            **episodes,
        )
    return summarize(parts)


def summarize(parts: dict[str, dict]) -> dict[str, Any]:
    """measure_all's result from the parts finished (`flat`: the scalars of those present)."""
    flat: dict[str, float] = {}
    if "sharpness" in parts:
        flat.update({f"sharpness/{k}": v for k, v in parts["sharpness"].items()})
    if "value_gap" in parts:
        flat.update({f"value_gap/{k}": v for k, v in parts["value_gap"]["overall"].items()})
    if "model_error" in parts:
        model = parts["model_error"]
        for key, errors in model["open_loop"].items():
            flat[f"model_error/{key}_1"] = errors[0]
            flat[f"model_error/{key}_{len(errors)}"] = errors[-1]
        gap = model["performance_gap"]
        flat["performance_gap/gap"] = gap["gap"]
        flat["performance_gap/abs_gap"] = gap["abs_gap"]
    return {"flat": flat, **{stage: parts[stage] for stage in STAGES if stage in parts}}
