"""A sweep's grid: a suite's tasks (or given ones) x every comma-listed override x seeds, each
run with its suite's protocol and a stable run_dir named by its settings."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from mbrl_sam.errors import ConfigError
from mbrl_sam.evaluation.suites import Suite


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: its name, run_dir and train.py overrides (run_dir excluded)."""

    name: str
    run_dir: Path
    overrides: tuple[str, ...]


def parse_axes(args: list[str]) -> dict[str, list[str]]:
    """`key=a,b` arguments as key -> values (one value for a plain `key=v`); a bare word or a
    repeated key is a ConfigError."""
    axes: dict[str, list[str]] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise ConfigError(f"{arg!r} is not valid; sweep arguments are key=value (or key=a,b)")
        if key in axes:
            raise ConfigError(f"{key} is given twice; list its values once: {key}=a,b")
        values = [v for v in value.split(",")] if value else [""]
        if any(v == "" for v in values) and value:
            raise ConfigError(f"{arg!r} has an empty value in its list")
        axes[key] = values
    return axes


def _part(key: str, value: str) -> str:
    """A run name's piece for one setting: `objective-sam`, `agent.model.lr-0.001`."""
    safe = value.replace("/", "_").replace(" ", "_").replace("=", "-")
    return f"{key}-{safe}"


def seed_groups(seeds: list[int], per_process: int) -> list[list[int]]:
    """The seeds in groups of consecutive ones (train.py's seeds=K trains seed .. seed+K-1),
    at most `per_process` to a group."""
    groups: list[list[int]] = []
    for seed in sorted(set(seeds)):
        if groups and groups[-1][-1] == seed - 1 and len(groups[-1]) < per_process:
            groups[-1].append(seed)
        else:
            groups.append([seed])
    return groups


def expand(
    suite: Suite | None,
    axes: dict[str, list[str]],
    seeds: list[int],
    root: Path,
    seeds_per_process: int = 1,
) -> list[SweepRun]:
    """Every run of the grid. Tasks come from `axes["task"]` if given, else the suite; the
    suite's protocol (obs, steps, action repeat, eval episodes) applies unless an axis sets it.
    Names list the task, every setting with more than one value, the objective, and the seed
    (`seeds-<first>-<last>` for a group of seeds in one process: `seeds_per_process`)."""
    axes = dict(axes)
    tasks = axes.pop("task", list(suite.tasks) if suite else [])
    if not tasks:
        raise ConfigError("a sweep needs suite=<name> or task=<a,b,...>")
    if "seed" in axes:
        seeds = [int(s) for s in axes.pop("seed")]
    if suite is not None:
        unknown = [t for t in tasks if t not in suite.tasks]
        if unknown:
            raise ConfigError(
                f"task={unknown[0]!r} is not in suite {suite.name!r}; its tasks: "
                + ", ".join(suite.tasks)
            )
    protocol = {}
    if suite is not None:
        protocol = {
            "obs": suite.obs,
            "steps": str(suite.steps),
            "action_repeat": str(suite.action_repeat),
            "eval_episodes": str(suite.eval_episodes),
        }
    named = [k for k, v in axes.items() if len(v) > 1 or k == "objective"]
    keys = list(axes)
    runs = []
    groups = seed_groups(seeds, seeds_per_process)
    for task, values, group in itertools.product(tasks, itertools.product(*axes.values()), groups):
        setting = dict(zip(keys, values, strict=True))
        which = f"seed-{group[0]}" if len(group) == 1 else f"seeds-{group[0]}-{group[-1]}"
        parts = [task.replace("/", "_"), *(_part(k, setting[k]) for k in named), which]
        name = ".".join(parts)
        overrides = {**protocol, **setting, "task": task, "seed": str(group[0])}
        if len(group) > 1:
            overrides["seeds"] = str(len(group))
        runs.append(SweepRun(name, root / name, tuple(f"{k}={v}" for k, v in overrides.items())))
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ConfigError("two runs of the sweep would share a run_dir; list each value once")
    return runs
