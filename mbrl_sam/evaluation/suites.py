"""Benchmark suites as data (configs/suite/*.yaml) and the score each suite reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from mbrl_sam.config import config_dir
from mbrl_sam.errors import ConfigError, check_choice

SCORE_KINDS = ("scaled", "normalized", "success")


@dataclass(frozen=True)
class Suite:
    """A task list with its budget, evaluation protocol and score normalisation."""

    name: str
    tasks: tuple[str, ...]
    obs: str
    steps: int
    action_repeat: int
    eval_episodes: int
    score: dict = field(default_factory=dict)

    def normalize(self, task: str, returns: np.ndarray | list[float]) -> float:
        """The suite's score for one run: mean over its evaluation episodes' returns."""
        if task not in self.tasks:
            raise ConfigError(f"task {task!r} is not in suite {self.name!r}: {list(self.tasks)}")
        returns = np.asarray(returns, dtype=np.float64)
        game = task.split("/", 1)[1]
        kind = self.score["kind"]
        if kind == "scaled":
            return float(np.mean(returns) / self.score["scale"])
        if kind == "normalized":
            low, high = self.score["low"][game], self.score["high"][game]
            return float((np.mean(returns) - low) / (high - low))
        # success: the fraction of episodes whose return reaches the task's threshold.
        return float(np.mean(returns >= self.score["threshold"][game]))

    def rule(self, task: str) -> str:
        """`normalize`'s formula for `task`, in words for reports."""
        game = task.split("/", 1)[1]
        kind = self.score["kind"]
        if kind == "scaled":
            return f"return / {self.score['scale']:g} ({self.name})"
        if kind == "normalized":
            low, high = self.score["low"][game], self.score["high"][game]
            minus_low = f"- {low:g}" if low >= 0 else f"+ {-low:g}"
            return f"(return {minus_low}) / ({high:g} {minus_low}) ({self.name})"
        return f"success rate, return >= {self.score['threshold'][game]:g} ({self.name})"


def suite_dir() -> Path:
    """Where suite files live."""
    return config_dir() / "suite"


def suite_names() -> list[str]:
    """Every suite defined in configs/suite/."""
    return sorted(p.stem for p in suite_dir().glob("*.yaml"))


@cache
def load_suite(name: str) -> Suite:
    """Read configs/suite/<name>.yaml; ConfigError names the valid suites."""
    check_choice("suite", name, suite_names())
    data = OmegaConf.to_container(OmegaConf.load(suite_dir() / f"{name}.yaml"), resolve=True)
    suite = Suite(
        name=data["name"],
        tasks=tuple(data["tasks"]),
        obs=data["obs"],
        steps=int(data["steps"]),
        action_repeat=int(data["action_repeat"]),
        eval_episodes=int(data["eval_episodes"]),
        score=data["score"],
    )
    check_choice(f"suite {name}: score.kind", suite.score.get("kind"), SCORE_KINDS)
    return suite


def suite_of(task: str) -> Suite | None:
    """The first suite (alphabetically) that lists `task`, or None."""
    for name in suite_names():
        suite = load_suite(name)
        if task in suite.tasks:
            return suite
    return None
