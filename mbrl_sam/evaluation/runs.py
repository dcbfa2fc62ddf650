"""Training runs as the report reads them: run directories (config.yaml, metrics.jsonl, evals)
and the runs a study folder holds (results/<study>/<task>.csv and .measure.csv)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from mbrl_sam.evaluation.study import StudyRun, is_study_folder, read_rows, row_identity
from mbrl_sam.evaluation.suites import suite_of
from mbrl_sam.progress import bar


@dataclass
class Run:
    """One training run: what it trained, its eval curve and its final evaluation."""

    path: Path
    task: str
    method: str
    seed: int
    curve: list[tuple[int, float]]  # (env steps, mean eval return)
    final_returns: list[float]  # per-episode returns of the last evaluation
    measures: dict[str, float]  # the last flatness measurement's scalars (may be empty)
    hours: float | None = None  # wall-clock training hours at the last evaluation, if logged
    curve_hours: dict[int, float] = field(default_factory=dict)  # env steps -> training hours

    @property
    def score(self) -> float:
        """The suite's normalised score of the final evaluation (raw mean outside suites)."""
        suite = suite_of(self.task)
        if suite is not None:
            return suite.normalize(self.task, self.final_returns)
        return float(np.mean(self.final_returns)) / _scale_outside_suites(self.task)


def _scale_outside_suites(task: str) -> float:
    """DMC returns lie in [0, 1000]; other tasks that no suite lists keep their raw return."""
    return 1000.0 if task.startswith("dmc/") else 1.0


def score_rule(task: str) -> str:
    """How `Run.score` normalises a task's returns, in words for the report."""
    suite = suite_of(task)
    if suite is not None:
        return suite.rule(task)
    scale = _scale_outside_suites(task)
    return f"return / {scale:g}" if scale != 1.0 else "raw return"


def _eval_records(path: Path) -> list[dict]:
    """The lines of evals.jsonl (step, returns, hours), oldest first; [] without the file."""
    if not (path / "evals.jsonl").exists():
        return []
    return [json.loads(line) for line in (path / "evals.jsonl").read_text().splitlines()]


def _final_returns(path: Path, record: dict, curve: list[tuple[int, float]]) -> list[float]:
    """Per-episode returns of the latest evaluation: eval/*.json, else evals.jsonl, else curve."""
    files = sorted(path.glob("eval/step_*.json"), key=lambda p: int(p.stem.split("_")[1]))
    if files:
        return list(json.loads(files[-1].read_text())["returns"])
    return list(record.get("returns", [curve[-1][1]]))


def eval_curve(path: Path) -> list[tuple[int, float]]:
    """A run directory's (env steps, mean eval return) pairs, oldest first."""
    by_step: dict[int, float] = {}
    for line in (path / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("eval/return") is not None:
            # The latest record for a step wins: logs written before resumes rewound them
            # (Logger.rewind) may hold a stretch twice.
            by_step[int(record["step"])] = float(record["eval/return"])
    return sorted(by_step.items())


def load_run(path: Path) -> Run | None:
    """A Run from a run directory, or None if it has no evaluation yet."""
    cfg = OmegaConf.load(path / "config.yaml")
    curve = eval_curve(path)
    if not curve:
        return None
    method = f"{cfg.agent.name}-{cfg.objective.name}"
    records = _eval_records(path)
    record = records[-1] if records else {}
    finals = _final_returns(path, record, curve)
    measures = _final_measures(path)
    hours = {int(r["step"]): r["hours"] for r in records if r.get("hours") is not None}
    last_hours = record.get("hours")
    return Run(path, cfg.task, method, int(cfg.seed), curve, finals, measures, last_hours, hours)


def _final_measures(path: Path) -> dict[str, float]:
    """Scalars of the latest flatness measurement: measure/*.json, else measure.jsonl."""
    files = sorted(path.glob("measure/step_*.json"), key=lambda p: int(p.stem.split("_")[1]))
    if files:
        return json.loads(files[-1].read_text())["flat"]
    if (path / "measure.jsonl").exists():
        lines = (path / "measure.jsonl").read_text().splitlines()
        if lines:
            return json.loads(lines[-1])["flat"]
    return {}


def study_runs(folder: Path) -> list[Run]:
    """The runs a study folder (results/<study>: <task>.csv, <task>.measure.csv) holds in
    full; a run's final return is its last evaluation's mean (the CSVs keep no episodes)."""
    found: list[tuple[StudyRun, Path, list[tuple[int, float]], dict[str, float]]] = []
    for measure_csv in sorted(folder.glob("*.measure.csv")):
        curve_csv = measure_csv.with_name(measure_csv.name.replace(".measure.csv", ".csv"))
        curves: dict[tuple, dict[int, float]] = {}
        for row in read_rows(curve_csv):
            curves.setdefault(row_identity(row), {})[int(row["step"])] = float(row["return"])
        for row in read_rows(measure_csv):
            ident = StudyRun(*row_identity(row))
            curve = sorted(curves.get(row_identity(row), {}).items())
            if not curve or curve[-1][0] != int(row["step"]):
                continue  # not recorded in full (study.recorded_runs)
            measures = {k: float(v) for k, v in row.items() if "/" in k and v not in ("", None)}
            found.append((ident, curve_csv, curve, measures))
    # Settings every run of an agent shares say nothing about the difference: not in names.
    shared: dict[str, set[str]] = {}
    for ident, *_ in found:
        mine = set(ident.learning_settings())
        shared[ident.agent] = shared.get(ident.agent, mine) & mine
    return [
        Run(
            path,
            i.task,
            i.label(frozenset(shared[i.agent])),
            int(i.seed),
            curve,
            [curve[-1][1]],
            measures,
        )
        for i, path, curve, measures in found
    ]


def find_runs(roots: list[Path], progress: bool = False) -> list[Run]:
    """Every run directory (config.yaml + metrics.jsonl) under `roots` with an evaluation, and
    every run a study folder among `roots` holds; `progress` shows the runs read."""
    studies = [r for r in roots if is_study_folder(r)]
    roots = [r for r in roots if r not in studies]
    dirs = set()
    for root in roots:
        for cfg in [root / "config.yaml", *root.rglob("config.yaml")]:
            if cfg.exists() and (cfg.parent / "metrics.jsonl").exists():
                dirs.add(cfg.parent)
    with bar(len(dirs), "runs read", "run", progress) as read:
        runs = []
        for d in sorted(dirs):
            read.set_postfix(run=str(d), refresh=False)
            runs.append(load_run(d))
            read.update()
    return [r for r in runs if r is not None] + [r for f in studies for r in study_runs(f)]
