"""Run a grid of training runs: `python sweep.py suite=dmc_easy objective=erm,sam seeds=3`.

Every `key=a,b` that is not a sweep option below is a train.py setting; comma lists multiply
the grid (task x each list x seeds). The suite's protocol (obs, steps, action repeat, eval
episodes) applies to every run unless set here. Each run gets a stable run_dir under `root`,
named by its settings, so rerunning the same command skips finished runs, resumes interrupted
ones from their checkpoints and retries failed ones; at the end report.py's report is written
to `root/report`.

Sweep options:
  experiment     a named sweep in configs/sweep/ (its arguments, which the command line's own
                 override key by key; root defaults to runs/sweeps/<experiment>)
  suite          a suite in configs/suite/ (or give task=a,b instead)
  seeds          number of seeds, 0..N-1 (default 1; or seed=a,b for given ones)
  seeds_per_process
                 train up to this many consecutive seeds in one process (train.py seeds=K,
                 agents with stacked seeds: tdmpc); default 1
  root           where the run_dirs go (default runs/sweeps/<suite>)
  launcher       local (default): subprocesses on this machine; ray: a Ray task per run (one
                 CPU, or one GPU with device=cuda) on the cluster at ray.address (auto,
                 host:port; unset: a local Ray); slurm: a Slurm job per run through submitit
                 (slurm.partition, slurm.time_minutes, slurm.cpus, slurm.gpus, slurm.mem_gb,
                 slurm.account, slurm.requeues); run_dirs must be on storage every node sees
  max_parallel   runs at once (default: this machine's cores); each run uses one CPU thread
                 (train.py's default, robust beside other runs), or threads=N if given
  retries        extra attempts for a failed run (default 1)
  status         true: print every run's state, env steps, last eval, hours and ETA, then exit
  report         false: skip the report at the end
  print_job      true (with launcher=slurm): print a job's batch script and exit
Ctrl-C or SIGTERM stops every run at its next safe point (each writes its checkpoint).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import MISSING, OmegaConf

from mbrl_sam.config import answer_help, config_dir, parse_options
from mbrl_sam.errors import ConfigError, check_choice, check_int
from mbrl_sam.sweep.slurm_launcher import SlurmOptions

ROOT = Path(__file__).resolve().parent
LAUNCHERS = ("local", "ray", "slurm")


@dataclass
class RayOptions:
    """Where launcher=ray sends its tasks."""

    address: str | None = None  # auto, host:port, or None: start a local Ray


@dataclass
class SweepOptions:
    """sweep.py's own options; every other key=value goes to train.py."""

    suite: str | None = None
    seeds: int = 1
    seeds_per_process: int = 1
    root: str = MISSING
    launcher: str = "local"
    max_parallel: int = os.cpu_count() or 1
    retries: int = 1
    status: bool = False
    report: bool = True
    print_job: bool = False  # launcher=slurm: print the batch script of a job, then exit
    ray: RayOptions = field(default_factory=RayOptions)
    slurm: SlurmOptions = field(default_factory=SlurmOptions)

    def __post_init__(self) -> None:
        check_int("seeds", self.seeds, 1)
        check_int("seeds_per_process", self.seeds_per_process, 1)
        check_choice("launcher", self.launcher, LAUNCHERS)
        check_int("max_parallel", self.max_parallel, 1)
        check_int("retries", self.retries, 0)


def split_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """(sweep options, train.py settings) from `key=value` arguments."""
    own = {f"{name}=" for name in SweepOptions.__dataclass_fields__} | {"ray.", "slurm."}
    mine = [a for a in argv if any(a.startswith(k) for k in own)]
    return mine, [a for a in argv if a not in mine]


def experiments() -> list[str]:
    """The named sweeps in configs/sweep/."""
    return sorted(p.stem for p in (config_dir() / "sweep").glob("*.yaml"))


def with_experiment(argv: list[str]) -> list[str]:
    """`experiment=<name>` replaced by the arguments of configs/sweep/<name>.yaml, which the
    command line's own override key by key; a default root named after it."""
    named = [a.split("=", 1)[1] for a in argv if a.startswith("experiment=")]
    if not named:
        return argv
    check_choice("experiment", named[0], experiments())
    saved = list(OmegaConf.load(config_dir() / "sweep" / f"{named[0]}.yaml").args)
    given = {a.split("=", 1)[0] for a in argv}
    kept = [a for a in saved if a.split("=", 1)[0] not in given]
    rest = [a for a in argv if not a.startswith("experiment=")]
    return [*kept, *rest] + ([] if "root" in given else [f"root=runs/sweeps/{named[0]}"])


def plan(argv: list[str]) -> tuple[SweepOptions, list]:
    """The options and the grid's runs, every run's settings checked; ConfigError if not."""
    from agents.run import load_config, validate_config
    from mbrl_sam.evaluation.suites import load_suite
    from mbrl_sam.sweep.grid import expand, parse_axes

    mine, settings = split_args(with_experiment(argv))
    if not any(a.startswith("root=") for a in mine):
        suite_name = next((a.split("=", 1)[1] for a in mine if a.startswith("suite=")), "tasks")
        mine.append(f"root=runs/sweeps/{suite_name}")
    options = parse_options(SweepOptions, mine)
    options.root = str(Path(options.root).expanduser())
    suite = load_suite(options.suite) if options.suite else None
    seeds = list(range(options.seeds))
    runs = expand(suite, parse_axes(settings), seeds, Path(options.root), options.seeds_per_process)
    checked = set()
    for run in runs:
        # Seeds do not change what is valid: one check per task x setting.
        key = tuple(o for o in run.overrides if not o.startswith(("seed=", "seeds=")))
        if key not in checked:
            checked.add(key)
            validate_config(load_config(list(run.overrides)), run.run_dir)
    return options, runs


def recorded(runs: list) -> set[str]:
    """The runs a study (`study=<name>` among their settings) holds for every seed: a rerun of
    the study's sweep, here or on another machine, skips them (mbrl_sam/evaluation/study.py)."""
    import dataclasses

    from agents.run import load_config, study_folder, study_identity, validate_config
    from mbrl_sam.evaluation.study import recorded_runs

    names, known, held = set(), {}, {}
    for run in runs:
        settings = dict(o.split("=", 1) for o in run.overrides)
        if not settings.get("study"):
            continue
        first, count = int(settings["seed"]), int(settings.get("seeds", 1))
        key = tuple(o for o in run.overrides if not o.startswith(("seed=", "seeds=")))
        if key not in known:  # one config per task x setting: seeds only change the seed
            cfg = load_config([*key, f"seed={first}"])
            folder = study_folder(validate_config(cfg, run.run_dir))
            known[key] = (folder, study_identity(cfg))
        folder, identity = known[key]
        if (folder, identity.task) not in held:
            held[folder, identity.task] = recorded_runs(folder, identity.task)
        seeds = range(first, first + count)
        if all(
            dataclasses.replace(identity, seed=str(s)) in held[folder, identity.task] for s in seeds
        ):
            names.add(run.name)
    return names


def main() -> None:
    """Plan the sweep, then print its status or run it and write its report."""
    from mbrl_sam.sweep.state import run_state, status_table

    answer_help(sys.argv[1:], __doc__)
    try:
        options, runs = plan(sys.argv[1:])
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    done = recorded(runs)
    if options.status:
        print(status_table([run_state(r.name, r.run_dir, r.name in done) for r in runs]))
        return
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        if not stop.is_set():
            print(f"\n{signal.Signals(signum).name}: stopping every run at its next safe point.")
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    parallel = min(options.max_parallel, len(runs))
    if options.launcher == "slurm" and options.print_job:
        from mbrl_sam.sweep.slurm_launcher import sbatch_script

        print(sbatch_script(options.slurm, Path(options.root)))
        return
    if options.launcher == "slurm":
        from mbrl_sam.sweep.slurm_launcher import SlurmLauncher

        try:
            launcher = SlurmLauncher(ROOT / "train.py", options.slurm, Path(options.root))
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        where = "Slurm, a job per run"
    elif options.launcher == "ray":
        from mbrl_sam.sweep.ray_launcher import RayLauncher

        launcher = RayLauncher(ROOT / "train.py", options.ray.address, parallel, options.retries)
        where = f"Ray at {options.ray.address or 'a local Ray'}"
    else:
        from mbrl_sam.sweep.local import LocalLauncher

        launcher = LocalLauncher(ROOT / "train.py", parallel, options.retries)
        where = f"{parallel} at once on this machine"
    print(f"Sweep of {len(runs)} runs in {options.root}: {where}", flush=True)
    if done:
        print(f"{len(done)} of them are recorded in their study already: skipped.", flush=True)
    launcher.run([r for r in runs if r.name not in done], stop)
    states = [run_state(r.name, r.run_dir, r.name in done) for r in runs]
    print(status_table(states))
    if stop.is_set():
        sys.exit(130)
    if options.report and any(s.state == "finished" for s in states):
        from mbrl_sam.evaluation.report import write_report

        out = Path(options.root) / "report"
        write_report([Path(options.root)], out)
        print(f"Report: {out / 'report.md'}")
    sys.exit(0 if all(s.state in ("finished", "recorded") for s in states) else 1)


if __name__ == "__main__":
    main()
