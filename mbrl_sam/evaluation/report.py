"""Gather training runs (task x seed x objective) into tables, aggregate statistics and plots."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from mbrl_sam.evaluation.aggregate import (
    AGGREGATES,
    improvement_interval,
    interval,
    ratio_interval,
)
from mbrl_sam.evaluation.plots import plot_aggregates, plot_curves, plot_study
from mbrl_sam.evaluation.study import StudyRun, read_rows, row_identity
from mbrl_sam.evaluation.suites import suite_of
from mbrl_sam.progress import bar

# Flatness scalars shown in the report when runs measured them (measure.every or measure.py).
MEASURE_COLUMNS = (
    "sharpness/top_eigenvalue",
    "sharpness/trace",
    "sharpness/sam_sharpness",
    "sharpness/adam_ratio",
    "value_gap/abs_gap",
    "value_gap/bias",
    "model_error/reward_abs_1",
    "model_error/latent_mse_15",
    "performance_gap/abs_gap",
)


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
    # Settings every run of the study shares say nothing about the difference: not in names.
    shared = [set(ident.learning_settings()) for ident, *_ in found]
    omit = frozenset(set.intersection(*shared)) if shared else frozenset()
    return [
        Run(path, i.task, i.label(omit), int(i.seed), curve, [curve[-1][1]], measures)
        for i, path, curve, measures in found
    ]


def find_runs(roots: list[Path], progress: bool = False) -> list[Run]:
    """Every run directory (config.yaml + metrics.jsonl) under `roots` with an evaluation, and
    every run a study folder among `roots` holds; `progress` shows the runs read."""
    studies = [r for r in roots if any(r.glob("*.measure.csv"))]
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


def score_matrix(runs: list[Run], tasks: list[str]) -> np.ndarray:
    """Scores shaped (seeds, tasks); tasks with more seeds are cut to the smallest count."""
    per_task = [[r.score for r in sorted(runs, key=lambda r: r.seed) if r.task == t] for t in tasks]
    n = min(len(s) for s in per_task)
    return np.array([s[:n] for s in per_task]).T


def build_report(runs: list[Run], reps: int = 2000) -> dict:
    """Per-task tables, aggregates with bootstrap intervals, and pairwise improvement odds."""
    methods = sorted({r.method for r in runs})
    tasks = sorted({r.task for r in runs})
    table = {}
    for task in tasks:
        row = {}
        for m in methods:
            mine = [r for r in runs if (r.task, r.method) == (task, m)]
            finals = [float(np.mean(r.final_returns)) for r in mine]
            scores = [r.score for r in mine]
            if finals:
                row[m] = {
                    "mean": float(np.mean(finals)),
                    "std": float(np.std(finals)),
                    "n": len(finals),
                    "score": float(np.mean(scores)),
                    "score_std": float(np.std(scores)),
                }
        table[task] = row
    # Aggregates over the tasks every method has run.
    common = [t for t in tasks if all(m in table[t] for m in methods)]
    aggregates, matrices = {}, {}
    if common:
        for m in methods:
            matrices[m] = score_matrix([r for r in runs if r.method == m], common)
            aggregates[m] = {
                name: interval(fn, matrices[m], reps=reps) for name, fn in AGGREGATES.items()
            }
    # Per suite too when the runs span several: each has its own normalisation and task set.
    by_suite: dict[str, list[str]] = {}
    for task in common:
        suite = suite_of(task)
        by_suite.setdefault(suite.name if suite else "no suite", []).append(task)
    suite_aggregates = {}
    if len(by_suite) > 1:
        for name, suite_tasks in by_suite.items():
            suite_aggregates[name] = {
                m: {
                    k: interval(
                        fn, score_matrix([r for r in runs if r.method == m], suite_tasks), reps=reps
                    )
                    for k, fn in AGGREGATES.items()
                }
                for m in methods
            }
    improvement = {}
    for a, b in _pairs(methods):
        if a in matrices:
            improvement[f"P({a} > {b})"] = improvement_interval(matrices[a], matrices[b], reps=reps)
    # Per task: the IQM of the final return over seeds, and the chance of improvement.
    task_iqm: dict[str, dict[str, tuple[float, float, float]]] = {}
    task_improvement: dict[str, dict[str, tuple[float, float, float]]] = {}
    for task in tasks:
        finals = {
            m: np.array(
                [[np.mean(r.final_returns)] for r in runs if (r.task, r.method) == (task, m)]
            )
            for m in methods
            if m in table[task]
        }
        task_iqm[task] = {m: interval(AGGREGATES["iqm"], f, reps=reps) for m, f in finals.items()}
        task_improvement[task] = {
            f"P({a} > {b})": improvement_interval(finals[a], finals[b], reps=reps)
            for a, b in _pairs(list(finals))
        }
    measures: dict[str, dict[str, dict[str, float]]] = {}
    measure_intervals: dict[str, dict[str, dict[str, tuple[float, float, float]]]] = {}
    for task in tasks:
        for m in methods:
            mine = [r.measures for r in runs if (r.task, r.method) == (task, m) and r.measures]
            for key in MEASURE_COLUMNS:
                values = [x[key] for x in mine if x.get(key) is not None]
                if values:
                    measures.setdefault(task, {}).setdefault(m, {})[key] = float(np.mean(values))
                    mean_of = interval(AGGREGATES["mean"], np.array(values)[:, None], reps=reps)
                    measure_intervals.setdefault(task, {}).setdefault(m, {})[key] = mean_of
    # The mechanism: each method's measurements over an ERM method's, per task.
    measure_ratios: dict[str, dict[str, dict[str, tuple[float, float, float]]]] = {}
    for task in tasks:
        for a, b in _pairs(methods):
            if not _is_erm(b):
                continue
            for key in MEASURE_COLUMNS:
                xs, ys = (
                    [
                        r.measures[key]
                        for r in runs
                        if (r.task, r.method) == (task, m) and key in r.measures
                    ]
                    for m in (a, b)
                )
                if xs and ys and np.mean(ys) != 0:
                    pair = measure_ratios.setdefault(task, {}).setdefault(f"{a} / {b}", {})
                    pair[key] = ratio_interval(np.array(xs), np.array(ys), reps=reps)
    listing = [
        {
            "run": r.path.name,
            "task": r.task,
            "method": r.method,
            "seed": r.seed,
            "steps": r.curve[-1][0],
            "return": float(np.mean(r.final_returns)),
            "hours": r.hours,
        }
        for r in sorted(runs, key=lambda r: (r.task, r.method, r.seed))
    ]
    return {
        "methods": methods,
        "tasks": tasks,
        "caveats": caveats(table, listing),
        "curves": {task: curve_table([r for r in runs if r.task == task]) for task in tasks},
        "runs": listing,
        "measures": measures,
        "aggregate_tasks": common,
        "table": table,
        "aggregates": aggregates,
        "suite_aggregates": suite_aggregates,
        "improvement": improvement,
        "task_iqm": task_iqm,
        "task_improvement": task_improvement,
        "measure_intervals": measure_intervals,
        "measure_ratios": measure_ratios,
    }


def _is_erm(method: str) -> bool:
    """Whether a method is an ERM baseline: 'tdmpc-erm', 'tdmpc-erm train_ratio=256'."""
    return method.split(" ", 1)[0].endswith("-erm")


def _pairs(methods: list[str]) -> list[tuple[str, str]]:
    """The (a, b) pairs whose P(a > b) the report gives: each method against each ERM method
    when there is one (a study's baselines), else every ordered pair."""
    baselines = [m for m in methods if _is_erm(m)]
    against = baselines or methods
    return [(a, b) for b in against for a in methods if a != b]


def curve_table(runs: list[Run]) -> dict[str, dict[str, list[float | None]]]:
    """Per method: env steps, mean eval return over seeds and mean training hours there."""
    out = {}
    for m in sorted({r.method for r in runs}):
        mine = [(dict(r.curve), r.curve_hours) for r in runs if r.method == m]
        steps = sorted({s for curve, _ in mine for s in curve})
        returns, hours = [], []
        for step in steps:
            values = [curve[step] for curve, _ in mine if step in curve]
            times = [hrs[step] for _, hrs in mine if step in hrs]
            returns.append(float(np.mean(values)))
            hours.append(float(np.mean(times)) if times else None)
        out[m] = {"steps": steps, "return": returns, "hours": hours}
    return out


def caveats(table: dict, listing: list[dict]) -> list[str]:
    """Warnings a reader needs before trusting the comparison: single seeds, unequal budgets."""
    notes = []
    single = sorted({m for row in table.values() for m, cell in row.items() if cell["n"] < 2})
    if single:
        notes.append(
            f"One seed on some task for {', '.join(single)}: the stratified bootstrap has no "
            "seeds to resample there, so intervals narrow to the point estimate and do not "
            "show seed-to-seed spread."
        )
    for task in table:
        steps = sorted({r["steps"] for r in listing if r["task"] == task})
        if len(steps) > 1:
            notes.append(
                f"Runs on {task} end at different env steps ({steps[0]} to {steps[-1]}): "
                "their returns compare unequal budgets."
            )
    return notes


def write_report(roots: list[Path], out: Path, reps: int = 2000, progress: bool = False) -> dict:
    """Gather the runs under `roots`; write report.md, report.json and PNGs into `out`
    (`progress`: show the runs read and the files written)."""
    runs = find_runs(roots, progress)
    if not runs:
        raise FileNotFoundError(f"no evaluated runs under {[str(r) for r in roots]}")
    out.mkdir(parents=True, exist_ok=True)
    from mbrl_sam.evaluation.report_markdown import markdown

    with bar(None, "report", "file", progress) as written:
        written.set_postfix(now=f"statistics ({reps} bootstrap reps)", refresh=False)
        report = build_report(runs, reps)
        plots = ["curves.png"] + (["aggregates.png"] if report["aggregates"] else [])
        plots += ["study.png"] if report["measure_ratios"] else []
        written.reset(len(plots) + 2)
        written.set_postfix(now="plots", refresh=False)
        plot_curves(runs, out / "curves.png")
        written.update()
        if report["aggregates"]:
            plot_aggregates(report, out / "aggregates.png")
            written.update()
        if report["measure_ratios"]:
            plot_study(report, out / "study.png")
            written.update()
        (out / "report.json").write_text(json.dumps(report, indent=1))
        (out / "report.md").write_text(markdown(report, plots))
        written.update(2)
    return report
