"""Time updates (world model alone, and full) for erm and sam side by side, and, for agents
that plan, the planning latency per action; print JSON.

Usage: python benchmarks/update_speed.py [--agent dreamer] [--sizes tiny S] [--repeats 10]
       python benchmarks/update_speed.py --agent tdmpc --sizes 1M 5M --task dmc/dog-run
       python benchmarks/update_speed.py --agent tdmpc --sizes 1M --against agent.compile=true
       python benchmarks/update_speed.py --agent storm --sizes tiny M --task atari/Pong --obs pixels
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import time

import torch
from harness import filled_replay, gflop, matmul_gflops, sync, time_call

from agents import AGENTS, make_agent
from agents.run import agent_sizes, load_config
from mbrl_sam.runtime import matmul_precision, resolve_device, tune_allocator

RATIO_KEYS = ("erm_model_ms", "sam_model_ms", "erm_full_update_ms", "sam_full_update_ms", "act_ms")


def summarise(
    agents: dict, times: dict, batch: dict[str, torch.Tensor], device: torch.device
) -> dict:
    """Median milliseconds of an erm/sam pair, sam/erm ratios (of medians, and of means), and
    one erm update's GFLOP."""
    med = {o: {k: statistics.median(v) * 1000 for k, v in t.items()} for o, t in times.items()}
    # The mean too: with objective.every=k > 1 only one update in k is full SAM, so the median
    # is the cost of a reuse update alone, and the mean the cost per update over the schedule.
    mean = {o: {k: statistics.mean(v) * 1000 for k, v in t.items()} for o, t in times.items()}
    # Work per update, to compare implementations by the GFLOP/s they reach rather than by
    # wall time alone (this host's matmul speed itself varies from minute to minute).
    work = gflop(lambda: agents["erm"].update(batch, 10**6))
    groups = agents["erm"].world_model.param_groups()
    result = {
        "batch": list(batch["reward"].shape),
        "world_model_params": sum(p.numel() for ps in groups.values() for p in ps),
        "erm_model_ms": round(med["erm"]["model"], 1),
        "sam_model_ms": round(med["sam"]["model"], 1),
        "sam_over_erm_model": round(med["sam"]["model"] / med["erm"]["model"], 2),
        "erm_full_update_ms": round(med["erm"]["full"], 1),
        "sam_full_update_ms": round(med["sam"]["full"], 1),
        "sam_over_erm_full": round(med["sam"]["full"] / med["erm"]["full"], 2),
        "sam_over_erm_model_mean": round(mean["sam"]["model"] / mean["erm"]["model"], 2),
        "sam_over_erm_full_mean": round(mean["sam"]["full"] / mean["erm"]["full"], 2),
        "act_ms": round(statistics.median(times["erm"]["act"] + times["sam"]["act"]) * 1000, 1),
        "erm_full_update_gflop": round(work, 1),
        "erm_full_update_gflops_per_s": round(work / med["erm"]["full"] * 1000, 1),
        "matmul_1024_gflops_per_s": round(matmul_gflops(device), 1),
    }
    if getattr(agents["erm"], "planner", None) is not None:
        result["planner"] = type(agents["erm"].planner).__name__
    return result


def main() -> None:
    """Build erm and sam agents per size and alternate their calls, so load hits both alike."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agent", default="dreamer", choices=sorted(AGENTS))
    parser.add_argument(
        "--sizes",
        nargs="+",
        default=None,
        help="the agent's sizes to time (default: its two smallest)",
    )
    parser.add_argument("--task", default="dmc/walker-walk")
    parser.add_argument("--obs", default="state", choices=["state", "pixels"])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--against",
        nargs="+",
        default=[],
        help="overrides to time side by side with the base config, e.g. agent.compile=true",
    )
    parser.add_argument(
        "overrides", nargs="*", help="config overrides, e.g. agent.behavior.horizon=15"
    )
    args = parser.parse_args()
    tune_allocator()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    replay, spec = filled_replay(args.task, 3000, obs=args.obs)
    report = {
        "agent": args.agent,
        "task": args.task,
        "obs": args.obs,
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "overrides": args.overrides,
        "results": {},
    }
    variants = {"base": [], **{v: [v] for v in args.against}}
    for size in args.sizes or agent_sizes(args.agent)[:2]:
        agents, times, precision = {}, {}, {}
        for (name, extra), objective in itertools.product(variants.items(), ("erm", "sam")):
            overrides = [f"agent={args.agent}", f"size={size}", f"objective={objective}"]
            task = [f"task={args.task}", f"obs={args.obs}"]
            cfg = load_config([*overrides, *task, *args.overrides, *extra])
            torch.manual_seed(0)
            agents[name, objective] = make_agent(cfg, spec, device)
            precision[name] = cfg.matmul_precision  # process-wide, so set around each call
            times[name, objective] = {"model": [], "full": [], "act": []}
        batch_shape = (cfg.agent.batch_size, cfg.agent.batch_length)
        act_state = {key: None for key in agents}
        for i in range(args.warmup + args.repeats):
            for key, agent in agents.items():
                with matmul_precision(precision[key[0]]):
                    batch = {k: v.to(device) for k, v in replay.sample(*batch_shape).items()}
                    obs = replay.sample(1, 1)["obs"][0, 0].numpy()  # a real observation
                    step = i + 1
                    model_s = time_call(lambda: agent.model_step(batch, step), device)  # noqa: B023
                    full_s = time_call(lambda: agent.update(batch, step), device)  # noqa: B023
                    state = act_state[key]
                    start = time.perf_counter()
                    _, act_state[key] = agent.act(obs, state, state is None, explore=True)
                    sync(device)
                    act_s = time.perf_counter() - start
                if i >= args.warmup:
                    times[key]["model"].append(model_s)
                    times[key]["full"].append(full_s)
                    times[key]["act"].append(act_s)
        results = {}
        for name in variants:
            pair = {o: agents[name, o] for o in ("erm", "sam")}
            batch = {k: v.to(device) for k, v in replay.sample(*batch_shape).items()}
            with matmul_precision(precision[name]):
                results[name] = summarise(pair, {o: times[name, o] for o in pair}, batch, device)
        for name in args.against:
            ratios = {k: results[name][k] / results["base"][k] for k in RATIO_KEYS}
            results[name]["over_base"] = {k: round(v, 2) for k, v in ratios.items()}
        report["results"][size] = results["base"] if not args.against else results
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
