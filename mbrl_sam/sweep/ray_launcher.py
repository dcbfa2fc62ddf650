"""The Ray launcher: each run of a sweep is a Ray task (one CPU, or one GPU with device=cuda)
that runs `train.py` beside it. A worker that dies takes its run with it, and Ray retries the
task, which resumes from the run's last checkpoint, so run_dirs must sit on storage that every
node sees. A failed run is retried too."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from mbrl_sam.sweep.grid import SweepRun
from mbrl_sam.sweep.state import acquire, hand_over, record_exit, release, run_state

STOPPED = 130


def _die_with_parent() -> None:
    # Linux: the run gets SIGKILL when the worker that started it dies, so a retry never
    # finds the old attempt still training in its run_dir.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def train_in_worker(train_py: str, overrides: tuple[str, ...], run_dir: str) -> int:
    """The Ray task: run train.py for one run; its exit code (RuntimeError if it failed, so
    that Ray retries it)."""
    path = Path(run_dir)
    path.mkdir(parents=True, exist_ok=True)
    (path / "worker.pid").write_text(str(os.getpid()))  # which process is doing it
    while not acquire(path, os.getpid()):  # a retry can find a dying attempt's lock
        time.sleep(1.0)
    cmd = [sys.executable, train_py, *overrides, f"run_dir={run_dir}", "progress=false"]
    with open(path / "train.log", "a", encoding="utf-8") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
        )
    hand_over(path, proc.pid)
    try:
        code = proc.wait()
    except KeyboardInterrupt:  # ray.cancel: stop the run at its next safe point
        proc.send_signal(signal.SIGTERM)
        code = proc.wait()
        code = STOPPED if code in (STOPPED, -signal.SIGTERM) else code
    finally:
        release(path)
    record_exit(path, code)
    if code not in (0, STOPPED):
        raise RuntimeError(f"train.py exited with {code}; see {path / 'train.log'}")
    return code


class RayLauncher:
    """Runs each unfinished run as a Ray task on the cluster at `address` (None: a local Ray
    with `max_parallel` CPUs)."""

    def __init__(self, train_py: Path, address: str | None, max_parallel: int, retries: int):
        self.train_py, self.address = train_py, address
        self.max_parallel, self.retries = max_parallel, retries

    def run(self, runs: list[SweepRun], stop: threading.Event) -> dict[str, int]:
        """Submit every unfinished run, wait for all; the exit code per run (-1: failed)."""
        import ray

        if self.address:
            ray.init(address=self.address, log_to_driver=False)
        else:
            ray.init(num_cpus=self.max_parallel, include_dashboard=False, log_to_driver=False)
        try:
            return self._run(ray, runs, stop)
        finally:
            ray.shutdown()

    def _run(self, ray, runs: list[SweepRun], stop: threading.Event) -> dict[str, int]:
        task = ray.remote(train_in_worker)
        refs = {}
        for run in runs:
            if run_state(run.name, run.run_dir).state == "finished":
                continue
            gpus = 1 if any(o.startswith("device=cuda") for o in run.overrides) else 0
            options = dict(num_cpus=1, num_gpus=gpus, max_retries=self.retries)
            ref = task.options(**options, retry_exceptions=True).remote(
                str(self.train_py), run.overrides, str(run.run_dir)
            )
            refs[ref] = run
            print(f"submitted {run.name}", flush=True)
        codes, pending = {}, list(refs)
        cancelled = False
        while pending:
            if stop.is_set() and not cancelled:
                for ref in pending:
                    ray.cancel(ref)  # a KeyboardInterrupt in the task: the run checkpoints
                cancelled = True
            done, pending = ray.wait(pending, num_returns=1, timeout=0.5)
            for ref in done:
                name = refs[ref].name
                try:
                    codes[name] = ray.get(ref)
                    print(f"{'done' if codes[name] == 0 else 'stopped'} {name}", flush=True)
                except (ray.exceptions.RayError, RuntimeError) as err:
                    codes[name] = -1
                    print(f"failed {name}: {str(err).splitlines()[0]}", flush=True)
        return codes
