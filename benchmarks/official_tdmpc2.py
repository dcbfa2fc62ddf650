"""Run the official TD-MPC2 code on this CPU, to set its learning curve beside our tdmpc agent.

Usage (a venv holding its dependencies: tensordict, torchrl, termcolor, pandas):
    python benchmarks/official_tdmpc2.py --checkout ~/official/tdmpc2 --out RUN_DIR \
        --task cartpole-swingup --steps 30000 --eval-every 5000 --eval-episodes 2 --seed 1 \
        [--python VENV_PYTHON] [-- extra=hydra overrides]
    python benchmarks/official_tdmpc2.py --out RUN_DIR --convert-only

The checkout (nicklashansen/tdmpc2 at e9f5932) is copied to RUN_DIR/official_src and patched
there to run on CPU (PATCHES; each substitution must match a known number of times, so a changed
upstream fails loudly); its learning code is otherwise untouched and never enters this repo.
Steps are env steps (DMC action repeat 2, as ours); the official code counts agent steps.
Afterwards (and on --convert-only, e.g. for a killed run) its eval log becomes RUN_DIR/evals.jsonl,
metrics.jsonl and config.yaml, so `python report.py <root>` shows it as "tdmpc2-official-erm".
Each eval's return is the official mean over its eval episodes; hours are its elapsed_time
(wall time since its trainer started, evals included) read from the eval lines of official.log.
The official code cannot resume: a killed run can only be converted, or started anew elsewhere.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import yaml

UPSTREAM = "https://github.com/nicklashansen/tdmpc2"
COMMIT = "e9f5932"
ACTION_REPEAT = 2
SUBMITIT = "hydra/launcher: submitit_local"
# (file under tdmpc2/, text, replacement, expected matches, why)
PATCHES: list[tuple[str, str, str, int, str]] = [
    ("train.py", "assert torch.cuda.is_available()", "pass  # CPU patch", 1, "no CUDA needed"),
    ("tdmpc2.py", "'cuda:0'", "'cpu'", 2, "agent device"),
    ("tdmpc2.py", "capturable=True", "capturable=False", 2, "capturable Adam needs CUDA"),
    ("common/buffer.py", "'cuda:0'", "'cpu'", 2, "batch and storage device"),
    ("common/buffer.py", "torch.cuda.mem_get_info()", "(1 << 40, 0)", 1, "no CUDA memory query"),
    ("common/scale.py", "'cuda:0'", "'cpu'", 2, "running-scale buffers"),
    ("config.yaml", f"defaults:\n    - override {SUBMITIT}\n", "", 1, "hydra's own launcher"),
    ("config.yaml", "compile: true", "compile: false", 1, "no CPU gain"),
    ("config.yaml", "enable_wandb: true", "enable_wandb: false", 1, "no wandb"),
    ("config.yaml", "save_video: true", "save_video: false", 1, "no videos"),
    ("config.yaml", "save_agent: true", "save_agent: false", 1, "no checkpoint"),
]
# Texts that must be in envs/dmcontrol.py: 2 physics steps per action, 500 actions per episode.
CHECKS = ["for _ in range(2):", "max_episode_steps=500"]
EVAL_LINE = re.compile(
    r"^\s*eval\s+E:\s*[\d,]+\s+I:\s*([\d,]+)\s.*?T:\s*(?:(\d+) days?, )?(\d+):(\d+):(\d+)"
)
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def parse_args() -> tuple[argparse.Namespace, list[str]]:
    """The options, and the hydra overrides given after `--`."""
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkout", type=Path, default=Path.home() / "official/tdmpc2")
    p.add_argument("--out", type=Path, required=True, help="RUN_DIR")
    p.add_argument(
        "--task",
        default="cartpole-swingup",
        type=lambda t: t.removeprefix("dmc/"),
        help="a DMC task, as ours names it (dmc/cartpole-swingup) or as TD-MPC2 does",
    )
    p.add_argument("--steps", type=int, default=30000, help="env steps (action repeat 2)")
    p.add_argument("--eval-every", type=int, default=5000, help="env steps")
    p.add_argument("--eval-episodes", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--model-size", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--python", default=sys.executable, help="interpreter with its dependencies")
    p.add_argument("--convert-only", action="store_true", help="only convert RUN_DIR's logs")
    return p.parse_args(argv), extra


def prepare_source(checkout: Path, run_dir: Path) -> tuple[Path, list[str]]:
    """Copy the checkout's tdmpc2/ under RUN_DIR/official_src and apply PATCHES there."""
    if not (checkout / "tdmpc2" / "train.py").exists():
        hint = f"git clone {UPSTREAM} {checkout} && git -C {checkout} checkout {COMMIT}"
        print(f"error: no checkout at {checkout}; get it with: {hint}")
        sys.exit(2)
    src = run_dir / "official_src" / "tdmpc2"
    shutil.copytree(checkout / "tdmpc2", src, ignore=shutil.ignore_patterns("__pycache__"))
    applied = []
    for rel, old, new, expected, why in PATCHES:
        text = (src / rel).read_text()
        found = text.count(old)
        if found != expected:
            raise SystemExit(f"patch {rel}: {old!r} found {found} times, expected {expected}")
        (src / rel).write_text(text.replace(old, new))
        applied.append(f"{rel}: {old!r} -> {new!r} x{expected} ({why})")
    env_code = (src / "envs" / "dmcontrol.py").read_text()
    for text in CHECKS:
        if env_code.count(text) != 1:
            raise SystemExit(f"envs/dmcontrol.py no longer has {text!r} once: check its steps")
    return src, applied


def run_official(src: Path, args: argparse.Namespace, extra: list[str]) -> int:
    """Run its train.py in a subprocess, teeing its output to RUN_DIR/official.log."""
    overrides = [
        f"task={args.task}",
        f"model_size={args.model_size}",
        f"steps={args.steps // ACTION_REPEAT}",
        f"seed={args.seed}",
        f"eval_freq={args.eval_every // ACTION_REPEAT}",
        f"eval_episodes={args.eval_episodes}",
        "exp_name=cpu",
        *extra,
    ]
    threads = str(args.threads)
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    env.update(MUJOCO_GL="egl", PYTHONUNBUFFERED="1")
    cmd = [args.python, "train.py", *overrides]
    print("running:", " ".join(cmd), flush=True)
    with open(args.out / "official.log", "a") as log:
        out, err = subprocess.PIPE, subprocess.STDOUT
        proc = subprocess.Popen(cmd, cwd=src, env=env, stdout=out, stderr=err, text=True)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                log.flush()
                sys.stdout.write(line)
                sys.stdout.flush()
        except KeyboardInterrupt:
            proc.terminate()
        return proc.wait()


def _interrupt(signum: int, frame: object) -> None:
    """Turn SIGTERM into KeyboardInterrupt, so a killed run still stops its child and converts."""
    raise KeyboardInterrupt


def convert(run_dir: Path) -> list[dict]:
    """Turn its eval.csv and eval log lines into evals.jsonl and metrics.jsonl in RUN_DIR."""
    csvs = sorted((run_dir / "official_src" / "tdmpc2" / "logs").glob("*/*/*/eval.csv"))
    if len(csvs) > 1:
        raise SystemExit(f"several eval.csv files under {run_dir}: {csvs}")
    rows = csvs[0].read_text().splitlines()[1:] if csvs else []
    log = run_dir / "official.log"
    seconds: dict[int, int] = {}
    for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
        m = EVAL_LINE.match(ANSI.sub("", line))
        if m:
            days, h, mins, s = (int(g or 0) for g in m.groups()[1:])
            seconds[int(m.group(1).replace(",", ""))] = ((days * 24 + h) * 60 + mins) * 60 + s
    evals = []
    for row in rows:
        step, reward = (float(x) for x in row.split(",")[:2])
        agent_step = int(step)
        hours = seconds[agent_step] / 3600 if agent_step in seconds else None
        evals.append({"step": agent_step * ACTION_REPEAT, "returns": [reward], "hours": hours})
    with open(run_dir / "evals.jsonl", "w") as f:
        f.writelines(json.dumps(e) + "\n" for e in evals)
    with open(run_dir / "metrics.jsonl", "w") as f:
        for e in evals:
            f.write(json.dumps({"step": e["step"], "eval/return": e["returns"][0]}) + "\n")
    return evals


def write_config(args: argparse.Namespace, extra: list[str], patches: list[str]) -> None:
    """RUN_DIR/config.yaml in the shape report.py reads (task, agent.name, objective, seed)."""
    cfg = {
        "task": f"dmc/{args.task}",
        "agent": {"name": "tdmpc2-official", "model_size": args.model_size},
        "objective": {"name": "erm"},
        "seed": args.seed,
        "obs": "state",
        "steps": args.steps,
        "eval_every": args.eval_every,
        "eval_episodes": args.eval_episodes,
        "threads": args.threads,
        "source": f"{UPSTREAM} at {COMMIT}, patched for CPU",
        "checkout": str(args.checkout),
        "overrides": extra,
        "patches": patches,
    }
    (args.out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def main() -> None:
    """Prepare, run and convert, or only convert with --convert-only."""
    args, extra = parse_args()
    args.out = args.out.expanduser().resolve()
    if not args.convert_only:
        if args.steps % ACTION_REPEAT or args.eval_every % ACTION_REPEAT:
            raise SystemExit(f"--steps and --eval-every must be multiples of {ACTION_REPEAT}")
        if (args.out / "official_src").exists():
            raise SystemExit(f"{args.out} already holds a run (no resume): --convert-only")
        args.out.mkdir(parents=True, exist_ok=True)
        src, patches = prepare_source(args.checkout.expanduser().resolve(), args.out)
        print("CPU patches applied:", *patches, sep="\n  ")
        write_config(args, extra, patches)
        signal.signal(signal.SIGTERM, _interrupt)
        rc = run_official(src, args, extra)
        print(f"official train.py exited with {rc}")
    evals = convert(args.out)
    last = f", last {evals[-1]}" if evals else ""
    print(f"{len(evals)} evaluations -> {args.out / 'evals.jsonl'}{last}")


if __name__ == "__main__":
    main()
