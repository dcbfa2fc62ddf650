"""Tables, aggregate statistics and plots over training runs (task x seed x method)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mbrl_sam.evaluation.aggregate import (
    AGGREGATES,
    improvement_interval,
    interval,
    ratio_interval,
)
from mbrl_sam.evaluation.plots import plot_aggregates, plot_curves, plot_study
from mbrl_sam.evaluation.runs import Run, find_runs
from mbrl_sam.evaluation.study import is_study_folder, random_references
from mbrl_sam.evaluation.suites import suite_of
from mbrl_sam.progress import bar

# A task where every ERM baseline's IQM final return stays within this multiple of uniform
# random actions' return has not been learned: it cannot tell objectives apart (docs/studies.md).
LEARNED_OVER_RANDOM = 2.0

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


def score_matrix(runs: list[Run], tasks: list[str]) -> np.ndarray:
    """Scores shaped (seeds, tasks); tasks with more seeds are cut to the smallest count."""
    per_task = [[r.score for r in sorted(runs, key=lambda r: r.seed) if r.task == t] for t in tasks]
    n = min(len(s) for s in per_task)
    return np.array([s[:n] for s in per_task]).T


def build_report(runs: list[Run], reps: int = 2000, random: dict[str, float] | None = None) -> dict:
    """Per-task tables, aggregates with bootstrap intervals, and pairwise improvement odds;
    `random` (task -> return of uniform random actions) leaves unlearned tasks out of the
    aggregates."""
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
    finals_of = {task: _task_finals(runs, task, table[task]) for task in tasks}
    iqm_of = {
        task: {m: interval(AGGREGATES["iqm"], f, reps=reps) for m, f in finals.items()}
        for task, finals in finals_of.items()
    }
    unlearned = _unlearned(iqm_of, random or {})
    # Aggregates per agent, over the tasks all its methods ran and its baselines learned.
    aggregates, matrices, aggregate_tasks = {}, {}, {}
    for agent, mine in _by_agent(methods).items():
        common = [t for t in tasks if t not in unlearned and all(m in table[t] for m in mine)]
        if not common:
            continue
        aggregate_tasks[agent] = common
        for m in mine:
            matrices[m] = score_matrix([r for r in runs if r.method == m], common)
            aggregates[m] = {
                name: interval(fn, matrices[m], reps=reps) for name, fn in AGGREGATES.items()
            }
    # Per suite too when an agent's tasks span several: each has its own normalisation.
    suite_aggregates: dict[str, dict] = {}
    for agent, common in aggregate_tasks.items():
        by_suite: dict[str, list[str]] = {}
        for task in common:
            suite = suite_of(task)
            by_suite.setdefault(suite.name if suite else "no suite", []).append(task)
        if len(by_suite) < 2:
            continue
        for name, suite_tasks in by_suite.items():
            suite_aggregates.setdefault(name, {}).update(
                {
                    m: {
                        k: interval(
                            fn,
                            score_matrix([r for r in runs if r.method == m], suite_tasks),
                            reps=reps,
                        )
                        for k, fn in AGGREGATES.items()
                    }
                    for m in _by_agent(methods)[agent]
                }
            )
    improvement = {}
    for a, b in _pairs(methods):
        if a in matrices and b in matrices:
            improvement[f"P({a} > {b})"] = improvement_interval(matrices[a], matrices[b], reps=reps)
    # Per task: the chance that a run of one method beats a run of another.
    task_improvement = {
        task: {
            f"P({a} > {b})": improvement_interval(finals[a], finals[b], reps=reps)
            for a, b in _pairs(list(finals))
        }
        for task, finals in finals_of.items()
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
            if not is_erm(b):
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
        "caveats": caveats(table, listing, unlearned, random),
        "curves": {task: curve_table([r for r in runs if r.task == task]) for task in tasks},
        "runs": listing,
        "measures": measures,
        "aggregate_tasks": aggregate_tasks,
        "table": table,
        "aggregates": aggregates,
        "suite_aggregates": suite_aggregates,
        "improvement": improvement,
        "task_iqm": iqm_of,
        "random": {t: random[t] for t in tasks if random and t in random},
        "unlearned": unlearned,
        "task_improvement": task_improvement,
        "measure_intervals": measure_intervals,
        "measure_ratios": measure_ratios,
    }


def is_erm(method: str) -> bool:
    """Whether a method is an ERM baseline: 'tdmpc-erm', 'tdmpc-erm train_ratio=256'."""
    return method.split(" ", 1)[0].endswith("-erm")


def agent_of(method: str) -> str:
    """The agent a method trains: 'tdmpc-sam rho=0.005' -> 'tdmpc'."""
    return method.split(" ", 1)[0].rsplit("-", 1)[0]


def _by_agent(methods: list[str]) -> dict[str, list[str]]:
    """The methods grouped by their agent, in order."""
    groups: dict[str, list[str]] = {}
    for m in methods:
        groups.setdefault(agent_of(m), []).append(m)
    return groups


def _pairs(methods: list[str]) -> list[tuple[str, str]]:
    """The (a, b) pairs whose P(a > b) the report gives, within each agent: each method against
    the agent's ERM methods when it has some (a study's baselines), else every ordered pair."""
    pairs = []
    for mine in _by_agent(methods).values():
        against = [m for m in mine if is_erm(m)] or mine
        pairs += [(a, b) for b in against for a in mine if a != b]
    return pairs


def _task_finals(runs: list[Run], task: str, row: dict) -> dict[str, np.ndarray]:
    """Per method that ran `task`: its runs' final mean returns, shaped (runs, 1)."""
    return {
        m: np.array([[np.mean(r.final_returns)] for r in runs if (r.task, r.method) == (task, m)])
        for m in row
    }


def _unlearned(iqm_of: dict[str, dict], random: dict[str, float]) -> list[str]:
    """Tasks with a random-action reference where every ERM baseline's IQM final return stays
    under LEARNED_OVER_RANDOM times it (a return that can be negative is compared by margin)."""
    out = []
    for task, per_method in iqm_of.items():
        erm = [point for m, (point, _, _) in per_method.items() if is_erm(m)]
        if task in random and erm:
            floor = random[task] + (LEARNED_OVER_RANDOM - 1) * abs(random[task])
            if max(erm) < floor:
                out.append(task)
    return out


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


def caveats(
    table: dict, listing: list[dict], unlearned: list[str], random: dict[str, float] | None
) -> list[str]:
    """Warnings a reader needs before trusting the comparison: single seeds, unequal budgets,
    tasks the baselines did not learn or that have no random-action reference."""
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
    for task in unlearned:
        notes.append(
            f"ERM did not learn {task}: its IQM final return stays under "
            f"{LEARNED_OVER_RANDOM:g}x that of uniform random actions ({random[task]:.1f}); the "
            "task is left out of the aggregates."
        )
    if random is not None:
        missing = [t for t in table if t not in random]
        if missing:
            notes.append(
                f"No random-action reference for {', '.join(missing)}: whether ERM learned "
                "there is not checked (report.py random_episodes=N measures one)."
            )
    return notes


def write_report(roots: list[Path], out: Path, reps: int = 2000, progress: bool = False) -> dict:
    """Gather the runs under `roots`; write report.md, report.json and PNGs into `out`
    (`progress`: show the runs read and the files written). Study folders among `roots`
    bring their random-action references (random.csv)."""
    runs = find_runs(roots, progress)
    if not runs:
        raise FileNotFoundError(f"no evaluated runs under {[str(r) for r in roots]}")
    studies = [r for r in roots if is_study_folder(r)]
    random = {k: v for f in studies for k, v in random_references(f).items()} if studies else None
    out.mkdir(parents=True, exist_ok=True)
    from mbrl_sam.evaluation.report_markdown import markdown

    with bar(None, "report", "file", progress) as written:
        written.set_postfix(now=f"statistics ({reps} bootstrap reps)", refresh=False)
        report = build_report(runs, reps, random)
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
