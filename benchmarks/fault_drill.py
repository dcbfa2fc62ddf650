"""Kill a tiny training run with SIGKILL at random moments, resume it each time, and check
that nothing was lost or doubled: prints JSON.

Usage: python benchmarks/fault_drill.py [--kills 20] [--seed 0] [--root /tmp/fault_drill]

The run checkpoints after every step, so many kills land inside a checkpoint write. After the
last kill the run finishes; its final weights are compared, bit for bit, with an uninterrupted
run of the same config. Goal: every resume works, no corrupt checkpoint, no temp file left,
no log step twice, and the same final weights.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mbrl_sam.checkpoint import CHECKPOINT, load_latest  # noqa: E402
from mbrl_sam.errors import ConfigError  # noqa: E402

RUN = [
    "agent=tdmpc",
    "size=tiny",
    "task=gym/Pendulum-v1",
    "objective=sam",
    "planner=none",
    "agent.batch_size=16",
    "train_ratio=16",
    "prefill=100",
    "steps=700",
    "eval_every=200",
    "eval_episodes=1",
    "log_every=50",
    "progress=false",
    "threads=1",
]


def train(run_dir: Path, checkpoint_minutes: float) -> subprocess.Popen:
    """Start the run (or its resume) in a subprocess."""
    args = [*RUN, f"run_dir={run_dir}", f"checkpoint_minutes={checkpoint_minutes}"]
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def equal_trees(a: object, b: object) -> bool:
    """Nested dicts/lists of tensors and plain values are exactly equal."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(equal_trees(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(equal_trees(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    return a == b


def duplicated_steps(run_dir: Path) -> int:
    """Log records whose (file, metric, step) appeared before."""
    seen, dups = set(), 0
    for path in run_dir.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            for key in record.keys() - {"step", "time", "hours"}:
                item = (path.name, key, record["step"])
                dups += item in seen
                seen.add(item)
    return dups


def temp_files(run_dir: Path) -> list[Path]:
    """Temp files of interrupted writes anywhere in the run_dir."""
    return [p for p in run_dir.rglob("*.tmp")]


def drill(root: Path, kills: int, seed: int) -> dict:
    """Run the reference, then the killed-and-resumed run; the tallies as a dict."""
    rng = np.random.default_rng(seed)
    shutil.rmtree(root, ignore_errors=True)
    reference, killed = root / "uninterrupted", root / "killed"
    start = time.monotonic()
    proc = train(reference, checkpoint_minutes=60)
    first_line = proc.stdout.readline()  # printed once start-up is over
    startup = time.monotonic() - start
    out = first_line + proc.communicate()[0]
    if proc.returncode != 0:
        raise SystemExit(f"the uninterrupted run failed:\n{out}")
    training = time.monotonic() - start - startup
    tally = {"kills": 0, "kills_in_startup": 0, "kills_during_checkpoint_write": 0}
    tally.update(resumes=0, resumes_ok=0, corrupt_checkpoints=0, fallbacks_to_previous=0)
    tally.update(restarts_from_scratch=0)
    saved_steps = None  # env steps of the checkpoint the next start should resume from

    def account(out: str) -> None:
        """Tally what one start did with the checkpoint it found."""
        resumed = re.search(r"^Resuming .* from step (\d+)$", out, re.MULTILINE)
        if resumed:
            tally["resumes"] += 1
            tally["resumes_ok"] += int(resumed.group(1)) == saved_steps
        elif re.search(r"^Training ", out, re.MULTILINE) and saved_steps is not None:
            tally["restarts_from_scratch"] += 1

    for _ in range(kills):
        stale = set(killed.glob(".checkpoint.pt.*.tmp"))  # left by an earlier kill
        proc = train(killed, checkpoint_minutes=1e-6)  # a checkpoint after every step
        # On average three quarters of the run is covered by the kills; some land in start-up.
        time.sleep(startup * rng.uniform(0.8, 1.2) + rng.uniform(0, 1.5 * training / kills))
        if proc.poll() is not None:
            break  # finished before this kill
        proc.kill()
        out, _ = proc.communicate()
        tally["kills"] += 1
        tally["kills_in_startup"] += not re.search(r"^(Training|Resuming) ", out, re.MULTILINE)
        tally["kills_during_checkpoint_write"] += bool(
            set(killed.glob(".checkpoint.pt.*.tmp")) - stale
        )
        account(out)
        try:
            state, note = load_latest(killed)
        except ConfigError:
            tally["corrupt_checkpoints"] += 1
            continue
        tally["fallbacks_to_previous"] += bool(note)
        saved_steps = state["counters"]["agent_steps"] if state else None
    proc = train(killed, checkpoint_minutes=1e-6)
    out, _ = proc.communicate()
    account(out)
    finished = proc.returncode == 0
    same = finished and equal_trees(
        torch.load(reference / CHECKPOINT, weights_only=False)["agent"],
        torch.load(killed / CHECKPOINT, weights_only=False)["agent"],
    )
    return {
        **tally,
        "final_run_finished": finished,
        "leftover_temp_files": len(temp_files(killed)),
        "duplicated_log_steps": duplicated_steps(killed),
        "final_weights_equal_uninterrupted": bool(same),
        "startup_s": round(startup, 1),
        "uninterrupted_training_s": round(training, 1),
        "wall_s": round(time.monotonic() - start, 1),
    }


def main() -> None:
    """Parse the arguments, run the drill, print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", type=Path, default=Path("/tmp/fault_drill"))
    args = parser.parse_args()
    print(json.dumps(drill(args.root, args.kills, args.seed), indent=2))


if __name__ == "__main__":
    main()
