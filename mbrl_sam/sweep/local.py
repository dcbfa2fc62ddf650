"""The local launcher: a sweep's runs as `train.py` subprocesses on this machine, at most
`max_parallel` at once, each holding its run_dir's lock; a failed run is retried (resuming from
its checkpoint), a stop request is passed on to every run, which checkpoints and exits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from mbrl_sam.sweep.grid import SweepRun
from mbrl_sam.sweep.state import (
    acquire,
    attempts,
    hand_over,
    record_exit,
    release,
    run_state,
)
from mbrl_sam.sweep.worker import STOPPED


@dataclass
class LocalLauncher:
    """Runs `train.py` for each run (each with the run default of one CPU thread, unless its
    overrides say otherwise: never more threads than cores at max_parallel runs)."""

    train_py: Path
    max_parallel: int
    retries: int = 1
    log: list[str] = field(default_factory=list)  # what happened, line by line

    def _say(self, line: str) -> None:
        self.log.append(line)
        print(line, flush=True)

    def _start(self, run: SweepRun) -> subprocess.Popen:
        cmd = [sys.executable, str(self.train_py), *run.overrides]
        cmd += [f"run_dir={run.run_dir}", "progress=false"]
        with open(run.run_dir / "train.log", "a", encoding="utf-8") as out:
            # Its own process group: a Ctrl-C reaches the sweep, which passes it on once.
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        hand_over(run.run_dir, proc.pid)
        return proc

    def run(self, runs: list[SweepRun], stop: threading.Event) -> dict[str, int]:
        """Run every unfinished run; returns the last exit code per run started."""
        queue = [
            r
            for r in runs
            if run_state(r.name, r.run_dir).state != "finished"
            and attempts(r.run_dir)["failures"] <= self.retries
        ]
        active: dict[str, tuple[subprocess.Popen, SweepRun]] = {}
        codes: dict[str, int] = {}
        signalled: set[int] = set()
        while queue or active:
            if stop.is_set():
                queue.clear()
                for proc, _ in active.values():
                    if proc.pid not in signalled:  # once: the run then stops at a safe point
                        proc.send_signal(signal.SIGTERM)
                        signalled.add(proc.pid)
            while not stop.is_set() and queue and len(active) < self.max_parallel:
                run = queue.pop(0)
                if not acquire(run.run_dir, os.getpid()):
                    self._say(f"skip {run.name}: another sweep is running it")
                    continue
                active[run.name] = (self._start(run), run)
                self._say(f"start {run.name}")
            for name, (proc, run) in list(active.items()):
                code = proc.poll()
                if code is None:
                    continue
                del active[name]
                release(run.run_dir)
                codes[name] = code
                if code == -signal.SIGTERM and proc.pid in signalled:
                    code = STOPPED  # ended by our signal before it could say so
                record = record_exit(run.run_dir, code)
                if code == 0:
                    self._say(f"done {name}")
                elif code == STOPPED or stop.is_set():
                    self._say(f"stopped {name} (checkpointed; rerun the sweep to resume)")
                elif record["failures"] <= self.retries:
                    self._say(f"failed {name} (exit {code}); retrying from its checkpoint")
                    queue.append(run)
                else:
                    self._say(f"failed {name} (exit {code}); see {run.run_dir / 'train.log'}")
            time.sleep(0.2)
        return codes
