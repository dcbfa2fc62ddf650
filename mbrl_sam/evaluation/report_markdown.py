"""The report as a markdown page (report.py's report.md)."""

from __future__ import annotations

from mbrl_sam.evaluation.aggregate import AGGREGATES
from mbrl_sam.evaluation.report import MEASURE_COLUMNS, agent_of, is_erm
from mbrl_sam.evaluation.runs import score_rule


def _curve_markdown(task: str, curves: dict, max_rows: int = 21) -> list[str]:
    """One task's curve table: a row per eval step (thinned to `max_rows`), a column per method."""
    steps = sorted({s for c in curves.values() for s in c["steps"]})
    every = -(-len(steps) // max_rows)
    shown = sorted(set(steps[::every]) | {steps[-1]})
    lines = [f"### {task}", "", "| env steps | " + " | ".join(curves) + " |"]
    lines.append("|---|" + "---|" * len(curves))
    for step in shown:
        cells = []
        for c in curves.values():
            if step not in c["steps"]:
                cells.append("-")
                continue
            i = c["steps"].index(step)
            hours = "" if c["hours"][i] is None else f" ({c['hours'][i]:.2f} h)"
            cells.append(f"{c['return'][i]:.1f}{hours}")
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return lines


def markdown(report: dict, plots: list[str]) -> str:
    """The report as a markdown page."""
    methods = report["methods"]
    lines = ["# Evaluation report", ""]
    if report["caveats"]:
        lines += ["## Caveats", "", *[f"- {note}" for note in report["caveats"]], ""]
    lines += _study_summary(report)
    lines += ["## Final return per task (mean ± std over seeds, n)", ""]
    lines.append("| task | " + " | ".join(methods) + " |")
    lines.append("|---|" + "---|" * len(methods))
    for task, row in report["table"].items():
        cells = [
            f"{row[m]['mean']:.1f} ± {row[m]['std']:.1f} ({row[m]['n']})" if m in row else "-"
            for m in methods
        ]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    lines += ["", "## Normalised score per task (mean ± std over seeds)", ""]
    lines.append("| task | " + " | ".join(methods) + " | score |")
    lines.append("|---|" + "---|" * (len(methods) + 1))
    for task, row in report["table"].items():
        cells = [
            f"{row[m]['score']:.3f} ± {row[m]['score_std']:.3f}" if m in row else "-"
            for m in methods
        ]
        lines.append(f"| {task} | " + " | ".join(cells) + f" | {score_rule(task)} |")
    lines += ["", "## IQM of the final return per task (95% stratified bootstrap CI)", ""]
    lines.append("| task | " + " | ".join(methods) + " | uniform random |")
    lines.append("|---|" + "---|" * (len(methods) + 1))
    for task, row in report["task_iqm"].items():
        cells = [_interval_text(row[m], ".1f") if m in row else "-" for m in methods]
        floor = report["random"].get(task)
        cells.append("-" if floor is None else f"{floor:.1f}")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    if any(report["task_improvement"].values()):
        lines += ["", "## Probability of improvement per task (95% CI)", ""]
        for task, pairs in report["task_improvement"].items():
            for name, value in pairs.items():
                lines.append(f"- {task}: {name} = {_interval_text(value, '.3f')}")
    lines += ["", "## Runs (at their last evaluation)", ""]
    lines += ["| run | task | method | seed | env steps | return | wall hours |"]
    lines.append("|---|---|---|---|---|---|---|")
    for r in report["runs"]:
        hours = "-" if r["hours"] is None else f"{r['hours']:.2f}"
        cells = [r["run"], r["task"], r["method"], r["seed"], r["steps"], f"{r['return']:.1f}"]
        lines.append("| " + " | ".join(map(str, cells)) + f" | {hours} |")
    lines += ["", "## Eval return against env steps (mean over seeds; training hours)", ""]
    for i, (task, curves) in enumerate(report["curves"].items()):
        lines += ([""] if i else []) + _curve_markdown(task, curves)
    if report["aggregates"]:
        lines += ["", "## Aggregate normalised score (95% stratified bootstrap CI)", ""]
        per_agent = [f"{a}: {', '.join(ts)}" for a, ts in report["aggregate_tasks"].items()]
        lines.append(f"Tasks, per agent: {'; '.join(per_agent)}.")
        lines += ["", "| method | " + " | ".join(AGGREGATES) + " |"]
        lines.append("|---|" + "---|" * len(AGGREGATES))
        for m, aggs in report["aggregates"].items():
            cells = [f"{p:.3f} [{lo:.3f}, {hi:.3f}]" for p, lo, hi in aggs.values()]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    for suite, per_method in report.get("suite_aggregates", {}).items():
        lines += ["", f"### Suite {suite}", ""]
        lines += ["| method | " + " | ".join(AGGREGATES) + " |", "|---|" + "---|" * len(AGGREGATES)]
        for m, aggs in per_method.items():
            cells = [f"{p:.3f} [{lo:.3f}, {hi:.3f}]" for p, lo, hi in aggs.values()]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    if report["measures"]:
        lines += ["", "## Flatness at the last measurement (mean over seeds)", ""]
        lines.append("| task | method | " + " | ".join(MEASURE_COLUMNS) + " |")
        lines.append("|---|---|" + "---|" * len(MEASURE_COLUMNS))
        for task, per_method in report["measures"].items():
            for m, values in per_method.items():
                cells = [f"{values[k]:.4g}" if k in values else "-" for k in MEASURE_COLUMNS]
                lines.append(f"| {task} | {m} | " + " | ".join(cells) + " |")
    if report["measure_intervals"]:
        lines += ["", "## Flatness at the last measurement (mean over seeds, 95% CI)", ""]
        for task, per_method in report["measure_intervals"].items():
            for m, values in per_method.items():
                cells = [f"{k} {_interval_text(v, '.4g')}" for k, v in values.items()]
                lines.append(f"- {task}, {m}: " + "; ".join(cells))
    if report.get("measure_ratios"):
        lines += ["", "## Flatness against ERM (ratio of means over seeds, 95% CI)", ""]
        for task, pairs in report["measure_ratios"].items():
            for pair, values in pairs.items():
                cells = [f"{k} {_interval_text(v, '.3g')}" for k, v in values.items()]
                lines.append(f"- {task}, {pair}: " + "; ".join(cells))
    if report["improvement"]:
        lines += ["", "## Probability of improvement (95% CI)", ""]
        for name, (p, lo, hi) in report["improvement"].items():
            lines.append(f"- {name} = {p:.3f} [{lo:.3f}, {hi:.3f}]")
    lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


# The flatness columns of the study summary, each a ratio to the ERM baseline's mean.
SUMMARY_RATIOS = {
    "sharpness/top_eigenvalue": "top eigenvalue",
    "sharpness/trace": "trace",
    "value_gap/abs_gap": "value gap",
    "model_error/latent_mse_15": "15-step latent error",
}


def _study_summary(report: dict) -> list[str]:
    """Each method against its agent's ERM baseline, a row per task and one over the agent's
    tasks: IQM of the final return (of the normalised score over tasks), the probability of
    improvement, and the flatness ratios; [] when no run measured flatness."""
    if not report.get("measure_ratios"):
        return []
    head = ["task", "method", "IQM", "ERM's IQM", "P(> ERM)"]
    head += [f"{name} / ERM" for name in SUMMARY_RATIOS.values()]
    lines = ["## Study summary: each method against its ERM baseline (95% CIs)", ""]
    lines += ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    rows = []
    for task, pairs in report["task_improvement"].items():
        iqm, ratios = report["task_iqm"][task], report["measure_ratios"].get(task, {})
        for pair, chance in pairs.items():
            method, base = pair[2:-1].split(" > ")
            if base not in iqm or not is_erm(base):
                continue
            flat = ratios.get(f"{method} / {base}", {})
            cells = [task, method, _interval_text(iqm[method], ".1f")]
            cells += [_interval_text(iqm[base], ".1f"), _interval_text(chance, ".2f")]
            cells += [_interval_text(flat[k], ".2f") if k in flat else "-" for k in SUMMARY_RATIOS]
            rows.append(cells)
    for pair, chance in report["improvement"].items():
        method, base = pair[2:-1].split(" > ")
        n = len(report["aggregate_tasks"].get(agent_of(base), []))
        if method in report["aggregates"] and base in report["aggregates"] and is_erm(base):
            cells = [f"**over {n} task{'s' * (n > 1)}** (normalised score)", method]
            cells += [_interval_text(report["aggregates"][m]["iqm"], ".3f") for m in (method, base)]
            cells += [_interval_text(chance, ".2f")] + ["-"] * len(SUMMARY_RATIOS)
            rows.append(cells)
    return lines + ["| " + " | ".join(cells) + " |" for cells in rows] + [""]


def _interval_text(value: tuple[float, float, float], fmt: str) -> str:
    """(point, low, high) as 'point [low, high]'."""
    point, low, high = value
    return f"{point:{fmt}} [{low:{fmt}}, {high:{fmt}}]"
