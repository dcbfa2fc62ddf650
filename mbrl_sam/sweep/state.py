"""Where each run of a sweep stands, read from its run_dir, and the lock that keeps two sweeps
from running one run_dir at once."""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from mbrl_sam.progress import write_json

LOCK = "sweep.lock"  # in a run_dir while a sweep runs it
ATTEMPTS = "sweep.json"  # in a run_dir: how the sweep's attempts at it ended


@dataclass
class RunState:
    """One row of the status table."""

    name: str
    state: str  # pending | running | finished | failed | stopped
    env_steps: int
    steps: int | None
    last_eval: float | None
    hours: float | None
    failures: int

    @property
    def eta_hours(self) -> float | None:
        """Hours left at the run's pace so far."""
        if not self.hours or not self.env_steps or self.steps is None or self.state == "finished":
            return None
        return self.hours * (self.steps - self.env_steps) / self.env_steps


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_holder(run_dir: Path) -> dict | None:
    """Who holds the run's lock: {"pid", "host", "since"}, or None when nobody does (a lock
    left by a dead process on this host is not held)."""
    try:
        holder = json.loads((run_dir / LOCK).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if holder.get("host") == socket.gethostname() and not _pid_alive(int(holder["pid"])):
        return None
    return holder


def acquire(run_dir: Path, pid: int) -> bool:
    """Take the run's lock for process `pid`; False when a live process holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK
    record = json.dumps({"pid": pid, "host": socket.gethostname(), "since": time.time()})
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if lock_holder(run_dir) is not None:
                return False
            path.unlink(missing_ok=True)  # a dead process's: take it over
            continue
        with os.fdopen(fd, "w") as f:
            f.write(record)
        return True
    return False


def hand_over(run_dir: Path, pid: int) -> None:
    """Make process `pid` (the run a sweep started) the lock's holder, so the lock stays held
    while the run lives even if the sweep that started it dies."""
    write_json(run_dir / LOCK, {"pid": pid, "host": socket.gethostname(), "since": time.time()})


def release(run_dir: Path) -> None:
    """Drop the run's lock."""
    (run_dir / LOCK).unlink(missing_ok=True)


def attempts(run_dir: Path) -> dict:
    """How the sweep's attempts at this run ended: {"failures": n, "last_exit": code}."""
    try:
        return json.loads((run_dir / ATTEMPTS).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {"failures": 0, "last_exit": None}


def record_exit(run_dir: Path, code: int) -> dict:
    """Note how an attempt ended (0 done, 130 stopped, else failed); the updated record."""
    record = attempts(run_dir)
    record["last_exit"] = code
    record["failures"] += int(code not in (0, 130))
    write_json(run_dir / ATTEMPTS, record)
    return record


def _logged_since(run_dir: Path, progress: dict) -> dict:
    """`progress` brought up to the run's last log line (written more often than checkpoints):
    its env steps, hours and budget."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return progress
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 65536))
        lines = f.read().decode("utf-8", "replace").splitlines()
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written, or cut by the seek
        if record.get("step", 0) > progress.get("env_steps", 0):
            progress = {**progress, "env_steps": record["step"]}
            progress["hours"] = record.get("train/hours", progress.get("hours"))
        break
    evals = run_dir / "evals.jsonl"
    if evals.exists():
        last = evals.read_text().splitlines()[-1:]
        record = json.loads(last[0]) if last and last[0].endswith("}") else {}
        if record:
            progress = {**progress, "last_eval": sum(record["returns"]) / len(record["returns"])}
    if "steps" not in progress and (run_dir / "config.yaml").exists():
        for line in (run_dir / "config.yaml").read_text().splitlines():
            if line.startswith("steps: "):
                progress = {**progress, "steps": int(line.split()[1])}
    return progress


def _progress(run_dir: Path) -> dict:
    """A run's progress.json brought up to its logs; {} before it has any."""
    try:
        progress = json.loads((run_dir / "progress.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        progress = {}
    return _logged_since(run_dir, progress)


def _group_progress(run_dir: Path) -> dict:
    """A seed group's progress (train.py seeds=K: a run per seed-<s> directory): the slowest
    seed's steps, the mean of the last evaluations, finished when every seed is."""
    seeds = [_progress(d) for d in sorted(run_dir.glob("seed-*")) if d.is_dir()]
    seeds = [p for p in seeds if p]
    if not seeds:
        return {}
    evals = [p["last_eval"] for p in seeds if p.get("last_eval") is not None]
    return {
        "env_steps": min(int(p.get("env_steps", 0)) for p in seeds),
        "steps": seeds[0].get("steps"),
        "finished": all(p.get("finished") for p in seeds),
        "last_eval": sum(evals) / len(evals) if evals else None,
        "hours": max((p.get("hours") or 0.0) for p in seeds),
    }


def run_state(name: str, run_dir: Path, recorded: bool = False) -> RunState:
    """The run's row, from its progress.json (or its logs, when newer), lock and attempts;
    `recorded`: its study holds it (it may have run elsewhere), and the sweep skips it."""
    progress = _progress(run_dir) or _group_progress(run_dir)
    record = attempts(run_dir)
    if recorded:
        state = "recorded"
    elif progress.get("finished"):
        state = "finished"
    elif lock_holder(run_dir) is not None:
        state = "running"
    elif record["last_exit"] == 130:
        state = "stopped"
    elif record["failures"]:
        state = "failed"
    else:
        state = "pending" if not progress else "stopped"
    return RunState(
        name,
        state,
        int(progress.get("env_steps", 0)),
        progress.get("steps"),
        progress.get("last_eval"),
        progress.get("hours"),
        record["failures"],
    )


def status_table(states: list[RunState]) -> str:
    """The status of every run as an aligned text table, with totals."""
    header = ("run", "state", "env steps", "last eval", "hours", "ETA h", "failures")
    rows = [header]
    for s in states:
        budget = f"{s.env_steps}/{s.steps}" if s.steps else str(s.env_steps)
        rows.append(
            (
                s.name,
                s.state,
                budget,
                "-" if s.last_eval is None else f"{s.last_eval:.1f}",
                "-" if s.hours is None else f"{s.hours:.2f}",
                "-" if s.eta_hours is None else f"{s.eta_hours:.2f}",
                str(s.failures),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    kinds = ("finished", "running", "failed") + (
        ("recorded",) if any(s.state == "recorded" for s in states) else ()
    )
    counts = {k: sum(s.state == k for s in states) for k in kinds}
    lines.append(f"{len(states)} runs: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return "\n".join(lines)
