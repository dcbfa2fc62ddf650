"""How much a training process slows down when another CPU-bound process shares the cores, per
thread setting: prints JSON.

Usage: python benchmarks/shared_cores.py [--seconds 25] [--agent dreamer] [--objective sam]

Each setting is timed (ms per update, median) alone, beside a single-threaded busy loop, and
beside a second copy of itself (several seeds on one machine), all in fresh processes.
Settings: the run's default (RunConfig.threads), torch's own default (all cores), every thread
count up to the machine's cores, and each with OpenMP's passive wait policy too. Run it on an
otherwise idle machine: the ratios are only as clean as the cores are.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUSY_LOOP = "import time\nend = time.monotonic() + 600\nwhile time.monotonic() < end: pass\n"


def worker(agent_name: str, objective: str, threads: str, seconds: float) -> dict:
    """Time updates of a tiny agent for about `seconds` in this process."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    sys.path.insert(0, str(ROOT))
    import torch
    from harness import filled_replay

    from agents import make_agent
    from agents.run import load_config
    from mbrl_sam.config import RunConfig
    from mbrl_sam.runtime import apply_threads

    if threads == "auto":  # what a run gets without a threads= override
        default = next(f.default for f in dataclasses.fields(RunConfig) if f.name == "threads")
        used = apply_threads(default)
    else:
        used = apply_threads(None if threads == "torch" else int(threads))
    task = "dmc/cartpole-swingup"
    cfg = load_config(
        [f"agent={agent_name}", "size=tiny", f"objective={objective}", f"task={task}"]
    )
    replay, spec = filled_replay(task, 2000)
    agent = make_agent(cfg, spec, torch.device("cpu"))
    times, start, step = [], time.monotonic(), 0
    while time.monotonic() - start < seconds or len(times) < 5:
        batch = replay.sample(cfg.agent.batch_size, cfg.agent.batch_length)
        tick = time.perf_counter()
        agent.update(batch, step)
        times.append(time.perf_counter() - tick)
        step += 1
    return {"threads": used, "updates": len(times), "ms": statistics.median(times[2:]) * 1000}


def timed(setting: dict, other: str | None, args: argparse.Namespace) -> float:
    """ms per update of one worker with `setting`, beside `other` (None, busy, twin)."""
    env = {**os.environ, **setting.get("env", {})}
    env.pop("OMP_NUM_THREADS", None)  # the setting alone decides

    def command(seconds: float) -> list[str]:
        cmd = [sys.executable, __file__, "--worker", setting["threads"], "--seconds", str(seconds)]
        return [*cmd, "--agent", args.agent, "--objective", args.objective]

    cmd, side = command(args.seconds), None
    if other == "busy":
        side = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    elif other == "twin":  # outlasts the measured worker, start-up included
        side = subprocess.Popen(command(args.seconds * 3), env=env)
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    finally:
        if side is not None:
            side.kill()
            side.wait()
    return json.loads(out.splitlines()[-1])


def main() -> None:
    """Time every setting alone and shared; print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=25.0)
    parser.add_argument("--agent", default="dreamer")
    parser.add_argument("--objective", default="sam")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # threads, in a child process
    parser.add_argument("--settings", nargs="*", help="only these setting names (default: all)")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.agent, args.objective, args.worker, args.seconds)))
        return
    cores = os.cpu_count() or 1
    settings = [{"name": "default (RunConfig.threads)", "threads": "auto"}]
    settings.append({"name": "torch's default", "threads": "torch"})
    for n in range(1, cores + 1):
        settings.append({"name": f"threads={n}", "threads": str(n)})
        passive = {"OMP_WAIT_POLICY": "PASSIVE"}
        settings.append(
            {"name": f"threads={n}, OMP_WAIT_POLICY=PASSIVE", "threads": str(n), "env": passive}
        )
    if args.settings:
        settings = [s for s in settings if s["name"] in args.settings]
    rows = []
    for setting in settings:
        alone = timed(setting, None, args)
        row = {
            "setting": setting["name"],
            "threads": alone["threads"],
            "alone_ms": round(alone["ms"], 1),
        }
        for other in ("busy", "twin"):
            ms = timed(setting, other, args)["ms"]
            row[f"beside_{other}_ms"] = round(ms, 1)
            row[f"beside_{other}_over_alone"] = round(ms / alone["ms"], 2)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    print(
        json.dumps(
            {"cores": cores, "agent": args.agent, "objective": args.objective, "rows": rows},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
