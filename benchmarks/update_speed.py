"""Time one Dreamer update (world model alone, and full) for erm and sam, side by side; print JSON.

Usage: python benchmarks/update_speed.py [--sizes tiny S] [--repeats 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch

from agents import make_agent
from envs import make_env
from mbrl_sam.config import load_config
from mbrl_sam.replay import SequenceReplay
from mbrl_sam.runtime import resolve_device, tune_allocator
from mbrl_sam.trainer import random_action


def filled_replay(task: str, steps: int, seed: int = 0) -> tuple[SequenceReplay, object]:
    """A replay filled with `steps` random-action steps of the real environment."""
    env = make_env(task, seed=seed)
    spec = env.spec
    replay = SequenceReplay(steps + 1, spec.obs_shape, spec.obs_dtype, spec.action_dim, seed)
    rng = np.random.default_rng(seed)
    obs = env.reset(seed=seed)
    replay.add(obs, np.zeros(spec.action_dim, np.float32), 0.0, True, False)
    for _ in range(steps):
        action = random_action(spec, rng)
        obs, reward, terminated, truncated = env.step(action)
        replay.add(obs, action, reward, False, terminated)
        if terminated or truncated:
            obs = env.reset()
            replay.add(obs, np.zeros(spec.action_dim, np.float32), 0.0, True, False)
    env.close()
    return replay, spec


def sync(device: torch.device) -> None:
    """Wait for queued device work so wall-clock times are real."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn, device: torch.device) -> float:
    """Seconds taken by fn()."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def main() -> None:
    """Build erm and sam agents per size and alternate their updates, so load hits both alike."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "S"])
    parser.add_argument("--task", default="dmc/walker-walk")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "overrides", nargs="*", help="config overrides, e.g. agent.behavior.horizon=15"
    )
    args = parser.parse_args()
    tune_allocator()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    replay, spec = filled_replay(args.task, 3000)
    report = {
        "task": args.task,
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "overrides": args.overrides,
        "results": {},
    }
    for size in args.sizes:
        agents, times = {}, {}
        for objective in ("erm", "sam"):
            overrides = [f"size={size}", f"objective={objective}", f"task={args.task}"]
            cfg = load_config([*overrides, *args.overrides])
            torch.manual_seed(0)
            agents[objective] = make_agent(cfg, spec, device)
            times[objective] = {"model": [], "full": []}
        batch_shape = (cfg.agent.batch_size, cfg.agent.batch_length)
        for i in range(args.warmup + args.repeats):
            for objective, agent in agents.items():
                batch = {k: v.to(device) for k, v in replay.sample(*batch_shape).items()}
                model_s = time_call(
                    lambda a=agent, b=batch: a.wm_opt.step(lambda: a.wm.loss(b)), device
                )
                full_s = time_call(lambda a=agent, b=batch, s=i + 1: a.update(b, s), device)
                if i >= args.warmup:
                    times[objective]["model"].append(model_s)
                    times[objective]["full"].append(full_s)
        med = {o: {k: statistics.median(v) * 1000 for k, v in t.items()} for o, t in times.items()}
        n_params = sum(p.numel() for p in agents["erm"].wm.parameters())
        report["results"][size] = {
            "batch": list(batch_shape),
            "world_model_params": n_params,
            "erm_model_ms": round(med["erm"]["model"], 1),
            "sam_model_ms": round(med["sam"]["model"], 1),
            "sam_over_erm_model": round(med["sam"]["model"] / med["erm"]["model"], 2),
            "erm_full_update_ms": round(med["erm"]["full"], 1),
            "sam_full_update_ms": round(med["sam"]["full"], 1),
            "sam_over_erm_full": round(med["sam"]["full"] / med["erm"]["full"], 2),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
