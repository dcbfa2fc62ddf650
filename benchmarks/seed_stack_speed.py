"""Milliseconds per update of K TD-MPC seeds stacked into one update (`train.py seeds=K`)
against K separate updates, erm and sam; print JSON.

Usage:
    python benchmarks/seed_stack_speed.py [--sizes tiny 1M] [--seeds 1 3 5] [--threads 1]
    python benchmarks/seed_stack_speed.py --device cuda --sizes tiny 1M 5M --seeds 1 4 16

Per size and objective it builds K agents (seeds 0..K-1) on real replayed steps of `--task`,
times one stacked update of all K and, alternating with it, one update of each agent alone
(the K separate runs' cost), and reports medians and `stacked_over_separate` (below 1: the
stack is cheaper). The separate updates are timed on the same K agents' own code path.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import filled_replay, time_call  # noqa: E402

from agents import make_agent  # noqa: E402
from agents.run import load_config  # noqa: E402
from agents.tdmpc_seeds import StackedTDMPC  # noqa: E402
from mbrl_sam.runtime import resolve_device, tune_allocator  # noqa: E402


def agents_for(size: str, objective: str, task: str, seeds: int, spec, device) -> list:  # noqa: ANN001
    """K agents built as K runs would build them."""
    cfg = load_config(["agent=tdmpc", f"size={size}", f"objective={objective}", f"task={task}"])
    out = []
    for seed in range(seeds):
        torch.manual_seed(seed)
        out.append(make_agent(cfg, spec, device))
    return out


def main() -> None:
    """Time stacked against separate updates per size, objective and K."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 3, 5])
    parser.add_argument("--objectives", nargs="+", default=["erm", "sam"])
    parser.add_argument("--task", default="gym/Pendulum-v1")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    tune_allocator()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    replay, spec = filled_replay(args.task, 3000)
    report = {
        "task": args.task,
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "results": {},
    }
    for size in args.sizes:
        for objective in args.objectives:
            for k in args.seeds:
                agents = agents_for(size, objective, args.task, k, spec, device)
                alone = agents_for(size, objective, args.task, k, spec, device)
                stacked = StackedTDMPC(agents)
                gens = [torch.Generator(device=device).manual_seed(s) for s in range(k)]
                shape = (agents[0].cfg.batch_size, agents[0].cfg.batch_length)
                times: dict[str, list[float]] = {"stacked": [], "separate": []}
                for i in range(args.warmup + args.repeats):
                    batches = [
                        {key: v.to(device) for key, v in replay.sample(*shape).items()}
                        for _ in range(k)
                    ]
                    step = i + 1
                    t_stack = time_call(lambda: stacked.update(batches, step, gens), device)  # noqa: B023
                    t_alone = sum(
                        time_call(lambda a=a, b=b: a.update(b, step), device)  # noqa: B023
                        for a, b in zip(alone, batches)
                    )
                    if i >= args.warmup:
                        times["stacked"].append(t_stack)
                        times["separate"].append(t_alone)
                med = {name: statistics.median(t) * 1000 for name, t in times.items()}
                entry = {
                    "stacked_ms": round(med["stacked"], 2),
                    "separate_ms": round(med["separate"], 2),
                    "stacked_over_separate": round(med["stacked"] / med["separate"], 3),
                }
                report["results"][f"{size}/{objective}/seeds={k}"] = entry
                print(f"{size} {objective} seeds={k}: {entry}", file=sys.stderr)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
