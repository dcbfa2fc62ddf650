"""What a cluster worker runs for one run of a sweep (a Ray task, a Slurm job): train.py beside
it, tied to it, holding the run's lock."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mbrl_sam.sweep.state import acquire, hand_over, record_exit, release

STOPPED = 130  # train.py's exit code after a signal (it has written its checkpoint)


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
