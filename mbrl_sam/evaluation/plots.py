"""The report's PNG plots: learning curves with seed bands, aggregate intervals."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mbrl_sam.evaluation.aggregate import AGGREGATES

if TYPE_CHECKING:
    from mbrl_sam.evaluation.runs import Run


def plot_curves(runs: list[Run], path: Path) -> None:
    """Eval return against env steps per task: mean over seeds with a min-max band per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    tasks = sorted({r.task for r in runs})
    cols = min(3, len(tasks))
    rows = (len(tasks) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        groups = defaultdict(list)
        for r in runs:
            if r.task == task:
                groups[r.method].append(dict(r.curve))
        for method, curves in sorted(groups.items()):
            steps = sorted(set.intersection(*[set(c) for c in curves]))
            values = np.array([[c[s] for s in steps] for c in curves])
            seeds = f"{len(curves)} seed" + ("s" if len(curves) > 1 else "")
            ax.plot(steps, values.mean(0), label=f"{method} ({seeds})")
            ax.fill_between(steps, values.min(0), values.max(0), alpha=0.2)
        ax.set_title(task)
        ax.set_xlabel("env steps")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:g}k" if x else "0"))
        ax.set_ylabel("eval return")
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_aggregates(report: dict, path: Path) -> None:
    """Point estimates and 95% intervals of each aggregate metric, one row per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(report["aggregates"])
    fig, axes = plt.subplots(
        1, len(AGGREGATES), figsize=(4 * len(AGGREGATES), 1 + 0.6 * len(methods))
    )
    for ax, name in zip(axes, AGGREGATES):
        for i, m in enumerate(methods):
            p, lo, hi = report["aggregates"][m][name]
            ax.plot([lo, hi], [i, i], linewidth=6, alpha=0.5)
            ax.plot([p], [i], "k|", markersize=14)
        ax.set_yticks(range(len(methods)), methods if ax is axes[0] else [""] * len(methods))
        ax.set_ylim(-0.5, len(methods) - 0.5)
        ax.set_title(name)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


STUDY_MEASURES = {
    "sharpness/top_eigenvalue": "top eigenvalue",
    "sharpness/trace": "trace",
    "value_gap/abs_gap": "value gap",
}


def plot_study(report: dict, path: Path) -> None:
    """SAM against ERM at a glance, one row per task: the IQM of the final return per method
    with its 95% interval, and each method's flatness over ERM's (ratio, 95% interval)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(report["task_iqm"])
    methods = report["methods"]
    colors = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    height = 1.5 + 0.32 * len(methods) * len(tasks)
    fig, axes = plt.subplots(len(tasks), 2, figsize=(13, height), squeeze=False)
    for (left, right), task in zip(axes, tasks):
        iqms = report["task_iqm"][task]
        for i, (m, (p, lo, hi)) in enumerate(iqms.items()):
            left.plot([lo, hi], [i, i], linewidth=6, alpha=0.6, color=colors[m])
            left.plot([p], [i], "k|", markersize=14)
            if m.split(" ", 1)[0].endswith("-erm"):
                left.axvline(p, color=colors[m], linestyle="--", linewidth=1)
        left.set_yticks(range(len(iqms)), list(iqms), fontsize=7)
        left.set_title(f"{task}: final return, IQM over seeds (95% CI)", fontsize=9)
        ratios = report.get("measure_ratios", {}).get(task, {})
        labels, y = [], 0
        for key, name in STUDY_MEASURES.items():
            for pair, values in ratios.items():
                if key in values:
                    m = pair.split(" / ")[0]
                    p, lo, hi = values[key]
                    right.plot([lo, hi], [y, y], linewidth=6, alpha=0.6, color=colors[m])
                    right.plot([p], [y], "k|", markersize=14)
                    labels.append(f"{name}: {m}")  # the agent too: two may share a task
                    y += 1
        right.axvline(1.0, color="grey", linestyle="--", linewidth=1)
        right.set_xscale("log")
        right.set_yticks(range(len(labels)), labels, fontsize=6)
        right.set_title("over ERM's: ratio of means (95% CI); < 1 is flatter", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
