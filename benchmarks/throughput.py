"""Env steps per second of the real training loop (`train.py`: env step, act or plan, updates,
replay writes and sampling; evaluation off), per case and objective, one thread; print JSON.

Usage:
    python benchmarks/throughput.py [--cases default tdmpc_1M dreamer_tiny] [--objectives erm sam]
    python benchmarks/throughput.py --against 80b365a            # another commit, alternating
    python benchmarks/throughput.py --against agent.compile=true  # other overrides, alternating
    python benchmarks/throughput.py --ours agent.compile=true --against 80b365a
    python benchmarks/throughput.py --cases default --ours seeds=5 --against seeds=1  # per seed
    python benchmarks/throughput.py --cases tdmpc_1M --official ~/official/tdmpc2 \
        --official-python ~/venvs/tdmpc2/bin/python             # official TD-MPC2 beside ours

Each measurement is one `train.py` process in a temp run dir. It runs a short prefill, then
`warm` env steps (their updates included) that are not timed, then `window` env steps timed
between two train-log records (the records' wall-clock stamps), and is stopped as soon as the
last record is written. Variants of one case alternate, so load on this noisy machine hits them
alike, and `--repeats` runs take the median. `--against REF` is a commit (checked out into a
temp worktree; its own code runs) or `key=value` overrides; ratios are ours over REF.
The official TD-MPC2 (nicklashansen/tdmpc2 e9f5932, patched only to run on CPU as
`official_tdmpc2.py` does, plus a one-episode seed phase and no evaluation) runs the tdmpc_1M
case's task with model_size=1; its rate is read from its train lines (one per 500-step
episode). Its interpreter needs tensordict 0.13, torchrl 0.13, pandas and gymnasium 0.29
(docs/speed.md says how to make that venv).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


@dataclass(frozen=True)
class Case:
    """One training config and the env steps to run: prefill, untimed warm-up, timed window."""

    overrides: tuple[str, ...]
    prefill: int  # env steps of random actions (short: the burst of updates after it is untimed)
    warm: int  # env steps after the prefill before timing starts
    window: int  # env steps timed
    log_every: int  # env steps between the train records that stamp the window's ends


CASES = {
    # The default run: TD-MPC tiny on Pendulum (4 updates per env step).
    "default": Case((), prefill=100, warm=200, window=800, log_every=100),
    "tdmpc_1M": Case(
        ("agent=tdmpc", "size=1M", "task=dmc/cartpole-swingup"),
        prefill=100,
        warm=200,
        window=400,
        log_every=100,
    ),
    "dreamer_tiny": Case(
        ("agent=dreamer", "size=tiny", "task=dmc/cartpole-swingup", "train_ratio=32"),
        prefill=500,
        warm=1000,
        window=4000,
        log_every=500,
    ),
}
# Agent steps: its replay holds nothing before the first episode ends (500 steps on DMC).
OFFICIAL_SEED_STEPS = 500
OFFICIAL_TRAIN_LINE = re.compile(r"^\s*train\s+E:\s*[\d,]+\s+I:\s*([\d,]+)\s.*?T:\s*(\S+)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def train_record_times(metrics: Path) -> dict[int, float]:
    """Env step -> wall-clock stamp of each train record written so far."""
    stamps = {}
    if metrics.exists():
        for line in metrics.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # the line being written
            if any(k.startswith("train/") for k in record):
                stamps[record["step"]] = record["time"]
    return stamps


def override(cmd: list[str], key: str, default: str) -> str:
    """The last `key=value` in a command line, or `default`."""
    values = [a.split("=", 1)[1] for a in cmd if a.startswith(f"{key}=")]
    return values[-1] if values else default


def run_ours(checkout: Path, case: Case, objective: str, extra: list[str]) -> float:
    """One train.py process of `checkout`; env steps/s over the case's window (of each seed,
    with `seeds=K`: the seeds step in lockstep, so the process makes K times as many)."""
    start = -(-(case.prefill + case.warm) // case.log_every) * case.log_every
    end = start + case.window
    with tempfile.TemporaryDirectory(prefix="throughput_") as tmp:
        run_dir = Path(tmp) / "run"
        cmd = [sys.executable, str(checkout / "train.py"), *case.overrides]
        cmd += [f"objective={objective}"]
        cmd += ["threads=1", "eval_every=0", "tensorboard=false", "progress=false"]
        cmd += [f"prefill={case.prefill}", f"log_every={case.log_every}", f"steps={end}"]
        cmd += [f"run_dir={run_dir}", *extra]
        metrics = run_dir / "metrics.jsonl"
        if override(cmd, "seeds", "1") != "1":  # a seed group: its first seed's records
            metrics = run_dir / f"seed-{override(cmd, 'seed', '0')}" / "metrics.jsonl"
        # Its own code: the checkout first on the path, whichever clone pip installed.
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(checkout))
        # Its output to a file, not a pipe: an undrained pipe would block a talkative run.
        log = open(Path(tmp) / "train.log", "w")  # noqa: SIM115 (closed in finally)
        proc = subprocess.Popen(cmd, cwd=checkout, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            while proc.poll() is None:
                time.sleep(0.5)
                stamps = train_record_times(metrics)
                if start in stamps and end in stamps:  # the final evaluation is not timed
                    return case.window / (stamps[end] - stamps[start])
            stamps = train_record_times(metrics)
            if start in stamps and end in stamps:
                return case.window / (stamps[end] - stamps[start])
            output = (Path(tmp) / "train.log").read_text(errors="replace")
            raise SystemExit(f"{' '.join(cmd)}\nexited with {proc.returncode}:\n{output[-3000:]}")
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            log.close()


# On top of official_tdmpc2.PATCHES (CPU only): a one-episode seed phase, and no evaluation.
OFFICIAL_EXTRA_PATCHES = [
    (
        "envs/__init__.py",
        "cfg.seed_steps = max(1000, 5*cfg.episode_length)",
        f"cfg.seed_steps = {OFFICIAL_SEED_STEPS}",
    ),
    (
        "trainer/online_trainer.py",
        "if self._step % self.cfg.eval_freq == 0:",
        "if False:",
    ),
    # gymnasium 1.x has no logger.set_level (the call only quiets warnings).
    ("envs/__init__.py", "gym.logger.set_level(40)", "pass"),
]


def run_official(checkout: Path, python: str, task: str) -> float:
    """Official TD-MPC2 model_size=1 on `task`: env steps/s between its 2nd and 3rd train line
    (agent steps 1000 and 1500, after its seed phase and burst), from its elapsed time."""
    from official_tdmpc2 import ACTION_REPEAT, prepare_source

    with tempfile.TemporaryDirectory(prefix="throughput_official_") as tmp:
        src, _ = prepare_source(checkout, Path(tmp))
        for rel, old, new in OFFICIAL_EXTRA_PATCHES:
            text = (src / rel).read_text()
            if text.count(old) != 1:
                raise SystemExit(f"official patch {rel}: {old!r} not found once")
            (src / rel).write_text(text.replace(old, new))
        cmd = [python, "train.py", f"task={task.removeprefix('dmc/')}", "model_size=1"]
        cmd += ["steps=1500", "seed=1", "exp_name=throughput"]
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MUJOCO_GL="egl")
        env["PYTHONUNBUFFERED"] = "1"
        proc = subprocess.run(
            cmd, cwd=src, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        stamps = {}
        for line in proc.stdout.splitlines():
            m = OFFICIAL_TRAIN_LINE.match(ANSI.sub("", line))
            if m:
                hms = [int(x) for x in m.group(2).split(":")]
                stamps[int(m.group(1).replace(",", ""))] = hms[0] * 3600 + hms[1] * 60 + hms[2]
        if 1000 not in stamps or 1500 not in stamps:
            raise SystemExit(f"official TD-MPC2 failed ({proc.returncode}):\n{proc.stdout[-3000:]}")
        return 500 * ACTION_REPEAT / (stamps[1500] - stamps[1000])


def worktree_for(ref: str) -> tuple[Path, str]:
    """A detached worktree of this repo at commit `ref` (its own code), and its short hash."""
    sha = subprocess.check_output(["git", "rev-parse", "--short", ref], cwd=ROOT, text=True)
    sha = sha.strip()
    path = Path(tempfile.gettempdir()) / f"mbrl_sam_{sha}"
    if not (path / "train.py").exists():
        subprocess.run(
            ["git", "worktree", "add", "--detach", "-f", str(path), sha],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
    return path, sha


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM as Ctrl-C, so the running train.py is stopped too (run_ours' finally)."""
    raise KeyboardInterrupt


def main() -> None:
    """Run the cases, alternating variants, and print the JSON."""
    signal.signal(signal.SIGTERM, _terminate)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--objectives", nargs="+", default=["erm", "sam"])
    parser.add_argument("--repeats", type=int, default=1, help="runs per variant (median)")
    parser.add_argument(
        "--against", nargs="+", default=[], help="a commit, or key=value overrides, as REF"
    )
    parser.add_argument("--official", type=Path, default=None, help="a TD-MPC2 e9f5932 checkout")
    parser.add_argument("--official-python", default=sys.executable, help="its interpreter")
    parser.add_argument(
        "--ours", nargs="+", default=[], help="key=value overrides for our runs only"
    )
    parser.add_argument("overrides", nargs="*", help="overrides for our runs and REF's")
    args = parser.parse_args()
    variants: dict[str, tuple[Path, list[str]]] = {"ours": (ROOT, list(args.ours))}
    if args.against:
        if all("=" in a for a in args.against):
            variants["ref"] = (ROOT, list(args.against))
            ref = " ".join(args.against)
        elif len(args.against) == 1:
            path, ref = worktree_for(args.against[0])
            variants["ref"] = (path, [])
        else:
            parser.error("--against takes one commit or key=value overrides")
    head = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True)
    report = {
        "commit": head.strip(),
        "against": ref if args.against else None,
        "cpu": platform.processor() or platform.machine(),
        "threads": 1,
        "overrides": args.overrides,
        "ours_overrides": args.ours,
        "results": {},
    }
    for name in args.cases:
        case = CASES[name]
        rates: dict[str, dict[str, list[float]]] = {}
        for _ in range(args.repeats):
            for objective in args.objectives:
                for variant, (checkout, extra) in variants.items():
                    rate = run_ours(checkout, case, objective, [*args.overrides, *extra])
                    rates.setdefault(objective, {}).setdefault(variant, []).append(rate)
                    print(f"{name} {objective} {variant}: {rate:.2f} env steps/s", file=sys.stderr)
        result: dict = {"overrides": list(case.overrides), "window_env_steps": case.window}
        for objective, by_variant in rates.items():
            med = {v: statistics.median(r) for v, r in by_variant.items()}
            entry = {f"{v}_steps_per_s": round(r, 2) for v, r in med.items()}
            if "ref" in med:
                entry["ours_over_ref"] = round(med["ours"] / med["ref"], 2)
            result[objective] = entry
        if "erm" in rates and "sam" in rates:
            erm, sam = (statistics.median(rates[o]["ours"]) for o in ("erm", "sam"))
            result["sam_time_over_erm"] = round(erm / sam, 2)
        if name == "tdmpc_1M" and args.official is not None:
            task = next(o.split("=", 1)[1] for o in case.overrides if o.startswith("task="))
            try:
                official = run_official(args.official.expanduser(), args.official_python, task)
            except SystemExit as err:  # keep the cases measured so far
                result["official_tdmpc2_error"] = str(err)[-2000:]
                report["results"][name] = result
                continue
            print(f"{name} official erm: {official:.2f} env steps/s", file=sys.stderr)
            result["official_tdmpc2_erm_steps_per_s"] = round(official, 2)
            if "erm" in rates:
                ours = statistics.median(rates["erm"]["ours"])
                result["ours_over_official_erm"] = round(ours / official, 2)
        report["results"][name] = result
        print(json.dumps(result), file=sys.stderr)  # each case as it finishes
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
