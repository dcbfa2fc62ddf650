"""A named study's results, kept in the repository as TD-MPC2 keeps `results/tdmpc2/<task>.csv`:
each finished run appends its evaluation curve to `<results>/<study>/<task>.csv` and its final
flatness measurement to `<task>.measure.csv`, and a rerun of the study finds them and skips it.

A run is known by its identity: task, agent, size, objective, rho, perturb, budget, seed, and
every other setting that differs from the defaults (`settings`). The commit it ran at is kept
but is not part of it, so a study spread over machines and days adds up.
"""

from __future__ import annotations

import csv
import fcntl
import json
import math
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from mbrl_sam.config import flat_keys

# Keys that change neither what a run learns nor what it reports: never part of an identity.
# (agent.compile and device change speed; numerics only within float rounding.)
INFRASTRUCTURE = (
    "run_dir",
    "resume",
    "progress",
    "tensorboard",
    "threads",
    "device",
    "agent.compile",
    "checkpoint_minutes",
    "time_limit_minutes",
    "log_every",
    "study",
    "results_dir",
)
# Keys of how a run is evaluated and measured, not of what it trains: left out of method names.
PROTOCOL = ("eval_", "measure.")
# Keys with columns of their own, and `seeds` (each seed of a group is a run of its own).
COLUMNS_OF_THEIR_OWN = (
    "task",
    "seed",
    "seeds",
    "steps",
    "agent.name",
    "size.name",
    "objective.name",
    "objective.rho",
    "objective.perturb",
)


@dataclass(frozen=True)
class StudyRun:
    """What makes two runs the same run of a study; every field as it is written in the CSV."""

    task: str
    agent: str
    size: str
    objective: str
    rho: str  # "" for erm
    perturb: str  # "" for erm
    steps: str  # the run's budget in env steps
    settings: str  # every other setting that differs from the defaults: 'k=v k=v', sorted
    seed: str

    @property
    def method(self) -> str:
        """What is compared, without seed, budget and how it was evaluated or measured:
        'tdmpc-sam rho=0.001 perturb=all objective.every=5'."""
        return self.label()

    def label(self, omit: frozenset[str] = frozenset()) -> str:
        """`method` without the settings in `omit` (those every compared run shares)."""
        parts = [f"{self.agent}-{self.objective}"]
        if self.objective != "erm":
            parts += [f"rho={self.rho}", f"perturb={self.perturb}"]
        parts += [p for p in self.learning_settings() if p not in omit]
        return " ".join(parts)

    def learning_settings(self) -> list[str]:
        """The `settings` that change what is learned ('k=v'), not how it is evaluated."""
        return [p for p in self.settings.split() if not p.startswith(PROTOCOL)]


IDENTITY = tuple(f.name for f in fields(StudyRun))
CURVE_COLUMNS = ("step", "return", *IDENTITY, "commit")
MEASURE_FIRST = ("step", *IDENTITY, "commit")


def _text(value: Any) -> str:
    """A config value as the command line writes it: true, null, 0.001, [1, 2]."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list | tuple):
        return json.dumps(list(value), separators=(",", ":"))  # no spaces: settings split on them
    return str(value)


def study_run(config: dict, defaults: dict) -> StudyRun:
    """The identity of a run with resolved config `config`, next to `defaults`: the resolved
    config of the same agent, size and task with nothing else set."""
    ours, base = flat_keys(config), flat_keys(defaults)
    sam = ours["objective.name"] != "erm"
    skipped = INFRASTRUCTURE + COLUMNS_OF_THEIR_OWN
    changed = []
    for key in sorted(ours):
        if any(key == s or key.startswith(s + ".") for s in skipped):
            continue
        if not sam and key.startswith("objective."):
            continue  # erm ignores SAM's knobs
        if key not in base or ours[key] != base[key]:
            changed.append(f"{key}={_text(ours[key])}")
    return StudyRun(
        task=str(ours["task"]),
        agent=str(ours["agent.name"]),
        size=str(ours["size.name"]),
        objective=str(ours["objective.name"]),
        rho=_text(ours["objective.rho"]) if sam else "",
        perturb=str(ours["objective.perturb"]) if sam else "",
        steps=str(ours["steps"]),
        settings=" ".join(changed),
        seed=str(ours["seed"]),
    )


def is_study_folder(path: Path) -> bool:
    """Whether `path` is a study's results folder (it holds a <task>.measure.csv)."""
    return any(path.glob("*.measure.csv"))


def task_file(task: str) -> str:
    """A task's file stem: dmc/walker-walk -> dmc_walker-walk."""
    return task.replace("/", "_")


def commit_of(repo: Path) -> str:
    """The repository's short commit, '-dirty' if tracked files changed; 'unknown' without git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True
        )
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=repo).returncode != 0
    except OSError:
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty else "")


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """The study folder's lock: one writer (or reader-then-writer) at a time, across processes."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_rows(path: Path) -> list[dict[str, str]]:
    """A CSV's rows as dicts; [] without the file."""
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _append(path: Path, rows: list[dict[str, Any]], first: tuple[str, ...]) -> None:
    """Append `rows`; when they bring columns the file lacks, rewrite it with the union (old
    rows get empty cells), atomically."""
    old, header = read_rows(path), []
    if path.exists():
        with open(path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
    wanted = list(dict.fromkeys([*first, *header, *(k for r in rows for k in r)]))
    if path.exists() and wanted == header:
        with open(path, "a", newline="", encoding="utf-8") as f:
            csv.DictWriter(f, header).writerows(rows)
        return
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, wanted, restval="")
        writer.writeheader()
        writer.writerows([*old, *rows])
    os.replace(tmp, path)


def row_identity(row: dict[str, str]) -> tuple[str, ...]:
    """A CSV row's identity fields, in StudyRun's order."""
    return tuple(row.get(name, "") for name in IDENTITY)


def recorded_runs(folder: Path, task: str) -> set[StudyRun]:
    """The runs of `task` the study holds in full: a measure row (written last, by a finished
    run only) and a curve that reaches that row's step."""
    curves: dict[tuple[str, ...], set[str]] = {}
    for row in read_rows(folder / f"{task_file(task)}.csv"):
        curves.setdefault(row_identity(row), set()).add(row["step"])
    done = set()
    for row in read_rows(folder / f"{task_file(task)}.measure.csv"):
        if row["step"] in curves.get(row_identity(row), set()):
            done.add(StudyRun(*row_identity(row)))
    return done


def is_recorded(folder: Path, run: StudyRun) -> bool:
    """Whether the study holds `run` in full (recorded_runs)."""
    return run in recorded_runs(folder, run.task)


def record(
    folder: Path,
    run: StudyRun,
    curve: list[tuple[int, float]],
    measures: dict[str, float],
    commit: str,
) -> bool:
    """Append a finished run's curve (env steps, mean eval return) and final measurement to
    the study in `folder`; False (and nothing written) when it is there already."""
    if not curve:
        raise ValueError("a finished run has at least its final evaluation")
    with _locked(folder):
        if is_recorded(folder, run):
            return False
        ident = asdict(run)
        base = str(folder / task_file(run.task))
        rows = [{"step": s, "return": _number(r), **ident, "commit": commit} for s, r in curve]
        _append(Path(f"{base}.csv"), rows, CURVE_COLUMNS)
        final = {"step": curve[-1][0], **ident, "commit": commit}
        final.update({k: _number(v) for k, v in sorted(measures.items())})
        _append(Path(f"{base}.measure.csv"), [final], MEASURE_FIRST)
    return True


def _number(value: float) -> str:
    """A float as written in the CSVs: shortest round-trip text, 'nan' kept."""
    value = float(value)
    return "nan" if math.isnan(value) else repr(value)


RANDOM_FILE = "random.csv"
RANDOM_COLUMNS = ("task", "return", "episodes", "seed", "commit")


def random_references(folder: Path) -> dict[str, float]:
    """Per task, the mean return of uniform random actions the study holds (random.csv)."""
    return {row["task"]: float(row["return"]) for row in read_rows(folder / RANDOM_FILE)}


def record_random(folder: Path, task: str, returns: list[float], seed: int, commit: str) -> bool:
    """Keep `task`'s random-action reference (the mean of `returns`, episodes reset from
    `seed`); False (and nothing written) when the study holds one already."""
    if not returns:
        raise ValueError("a random-action reference needs at least one episode")
    with _locked(folder):
        if task in random_references(folder):
            return False
        mean = sum(returns) / len(returns)
        row = {"task": task, "return": _number(mean), "episodes": len(returns), "seed": seed}
        _append(folder / RANDOM_FILE, [{**row, "commit": commit}], RANDOM_COLUMNS)
    return True
