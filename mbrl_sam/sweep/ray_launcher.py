"""The Ray launcher: each run of a sweep is a Ray task (one CPU, or one GPU with device=cuda)
that runs `train.py` beside it. A worker that dies takes its run with it, and Ray retries the
task, which resumes from the run's last checkpoint, so run_dirs must sit on storage that every
node sees. A failed run is retried too."""

from __future__ import annotations

import threading
from pathlib import Path

from mbrl_sam.sweep.grid import SweepRun
from mbrl_sam.sweep.state import run_state
from mbrl_sam.sweep.worker import train_in_worker


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
