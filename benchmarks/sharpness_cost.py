"""Cost of each flatness measurement (HVPs and seconds) on a world model, and how fast Lanczos
converges to the top Hessian eigenvalue against a long reference run; print JSON.

Usage: python benchmarks/sharpness_cost.py [--agent dreamer] [--sizes tiny S] [--train 200]
The world model is first trained for --train updates on real random-action data, so the
spectrum is that of a model in training rather than of its initialisation.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import torch
from harness import filled_replay

from agents import make_agent
from agents.run import load_config
from mbrl_sam.evaluation.flatness import MeasureConfig, world_model_probe
from mbrl_sam.runtime import resolve_device, tune_allocator
from mbrl_sam.sharpness import hutchinson_trace, lanczos, power_iteration, sam_sharpness


def timed(probe: Any, fn: Callable[[], float]) -> dict:
    """Run fn(); its HVP count and seconds."""
    probe.hvp_count = 0
    start = time.perf_counter()
    value = fn()
    return {"value": value, "hvps": probe.hvp_count, "seconds": time.perf_counter() - start}


def costs(agent: Any, batch: dict, reference_steps: int) -> dict:
    """Every measurement's cost on one probe batch, and Lanczos convergence."""
    probe = world_model_probe(agent, batch, MeasureConfig())
    op = probe.operator()
    reference = timed(probe, lambda: float(lanczos(op, probe.dim, reference_steps)[0]))
    ref = reference["value"]
    convergence = {}
    for steps in (5, 10, 15, 20, 30):
        value = float(lanczos(op, probe.dim, steps)[0])
        convergence[steps] = {"value": value, "rel_error": abs(value - ref) / abs(ref)}
    within = [s for s, c in convergence.items() if c["rel_error"] <= 0.05]
    loss = timed(probe, lambda: float(probe.loss()))
    return {
        "params_measured": probe.dim,
        "loss_eval_seconds": loss["seconds"],
        "hvp_seconds": timed(probe, lambda: probe.hvp(torch.randn(probe.dim)))["seconds"],
        "lanczos_reference": {"steps": reference_steps, **reference},
        "lanczos_convergence": convergence,
        "lanczos_steps_within_5pct": min(within) if within else None,
        "power_iteration_20": timed(
            probe, lambda: power_iteration(op, probe.dim, iters=20, tol=0.0)[0]
        ),
        "lanczos_20": timed(probe, lambda: float(lanczos(op, probe.dim, 20)[0])),
        "hutchinson_trace_10": timed(probe, lambda: hutchinson_trace(op, probe.dim, samples=10)),
        "sam_sharpness_1": timed(probe, lambda: sam_sharpness(probe, 0.05)["sam_sharpness"]),
    }


def main() -> None:
    """Train briefly, then time each measurement and the Lanczos convergence."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agent", default="dreamer")
    parser.add_argument("--sizes", nargs="+", default=["tiny", "S"])
    parser.add_argument("--task", default="dmc/walker-walk")
    parser.add_argument("--train", type=int, default=200)
    parser.add_argument("--reference-steps", type=int, default=80)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    tune_allocator()
    device = resolve_device(args.device)
    replay, spec = filled_replay(args.task, 5000)
    report = {"agent": args.agent, "task": args.task, "device": str(device), "results": {}}
    for size in args.sizes:
        cfg = load_config([f"agent={args.agent}", f"size={size}", "objective=erm"])
        torch.manual_seed(0)
        agent = make_agent(cfg, spec, device)
        shape = (cfg.agent.batch_size, cfg.agent.batch_length)
        for step in range(args.train):
            agent.model_step(replay.sample(*shape), step)
        report["results"][size] = costs(agent, replay.sample(*shape), args.reference_steps)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
