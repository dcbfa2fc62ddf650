"""The Slurm launcher, through submitit: one job per run, running train.py beside the job's
process. A job that times out or is preempted is requeued by submitit (up to `requeues`
times) and resumes from the run's last checkpoint, so `checkpoint_minutes` bounds the work lost;
run_dirs must sit on storage that every node sees."""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mbrl_sam.errors import ConfigError, check_int, check_positive
from mbrl_sam.sweep.grid import SweepRun
from mbrl_sam.sweep.state import run_state
from mbrl_sam.sweep.worker import train_in_worker


@dataclass
class SlurmOptions:
    """The job settings of launcher=slurm (`slurm.<key>=value`)."""

    partition: str | None = None
    time_minutes: int = 240  # per job; a longer run is requeued and resumes
    cpus: int = 1
    gpus: int = 0
    mem_gb: float = 8.0
    account: str | None = None
    requeues: int = 3  # after a timeout or preemption
    folder: str | None = None  # submitit's job files and logs; None: <root>/slurm

    def __post_init__(self) -> None:
        check_int("slurm.time_minutes", self.time_minutes, 1)
        check_int("slurm.cpus", self.cpus, 1)
        check_int("slurm.gpus", self.gpus, 0)
        check_positive("slurm.mem_gb", self.mem_gb)
        check_int("slurm.requeues", self.requeues, 0)


class _TrainJob:
    """A run as a submitit job that asks to be requeued at a timeout or preemption."""

    def __call__(self, train_py: str, overrides: tuple[str, ...], run_dir: str) -> int:
        return train_in_worker(train_py, overrides, run_dir)

    def checkpoint(self, *args: Any) -> Any:
        """submitit calls this before the job is stopped: submit the same call again, which
        resumes from the run's checkpoint."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args)


def job_parameters(options: SlurmOptions) -> dict[str, Any]:
    """submitit's Slurm parameters for `options` (what the batch script's #SBATCH lines say)."""
    params: dict[str, Any] = {
        "time": options.time_minutes,
        "cpus_per_task": options.cpus,
        "mem": f"{int(options.mem_gb * 1024)}M",
        "job_name": "mbrl_sam",
    }
    if options.partition:
        params["partition"] = options.partition
    if options.gpus:
        params["gpus_per_node"] = options.gpus
    if options.account:
        params["account"] = options.account
    return params


def job_folder(options: SlurmOptions, root: Path) -> Path:
    """Where submitit keeps each job's files and logs (%j: the job id)."""
    return (Path(options.folder) if options.folder else root / "slurm") / "%j"


def sbatch_script(options: SlurmOptions, root: Path) -> str:
    """The batch script submitit writes for a run with these settings (its command elided)."""
    from submitit.slurm.slurm import _make_sbatch_string

    command = "python -u -m submitit.core._submit <job folder>"
    return _make_sbatch_string(command, job_folder(options, root), **job_parameters(options))


class SlurmLauncher:
    """Submits one job per unfinished run and waits for them all."""

    def __init__(self, train_py: Path, options: SlurmOptions, root: Path) -> None:
        if shutil.which("sbatch") is None:
            raise ConfigError("launcher=slurm needs Slurm's sbatch on PATH; it is not found here")
        self.train_py, self.options, self.root = train_py, options, root

    def run(self, runs: list[SweepRun], stop: threading.Event) -> dict[str, int]:
        """The exit code per run submitted (-1: failed); a stop cancels the jobs (each run
        keeps its last periodic checkpoint)."""
        import submitit

        folder = job_folder(self.options, self.root)
        ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=self.options.requeues)
        ex.update_parameters(**job_parameters(self.options))
        jobs = {}
        for run in runs:
            if run_state(run.name, run.run_dir).state != "finished":
                args = (str(self.train_py), run.overrides, str(run.run_dir))
                jobs[run.name] = ex.submit(_TrainJob(), *args)
                print(f"submitted {run.name} as Slurm job {jobs[run.name].job_id}", flush=True)
        codes: dict[str, int] = {}
        while len(codes) < len(jobs):
            if stop.is_set():
                for name, job in jobs.items():
                    if name not in codes:
                        job.cancel()
                        codes[name] = 130
                break
            for name, job in jobs.items():
                if name not in codes and job.done():
                    try:
                        codes[name] = job.result()
                    except Exception as err:  # submitit's FailedJobError and the like
                        codes[name] = -1
                        print(f"failed {name}: {str(err).splitlines()[0]}", flush=True)
            time.sleep(5.0)
        return codes
