"""When the run loop does what: updates for a train ratio, work every N env steps, and clocks.

Small objects in the manner of DreamerV3's `embodied` `Ratio`, `Every` and `Clock`, each a rule
over counts the run keeps elsewhere (its checkpoint), so a resumed run keeps its schedule.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Ratio:
    """How many updates a train ratio (replayed steps per agent step) asks for in total.

    Learning starts after `prefill` agent steps. With `catch_up` the prefill's steps count too,
    so learning starts with one burst of the updates they would have had (TD-MPC2's pretraining
    on its seed data).
    """

    train_ratio: float
    batch_steps: int  # replayed steps per update: batch size x sequence length
    prefill: int  # agent steps
    catch_up: bool = False

    def total(self, agent_steps: int) -> int:
        """Updates due in total once `agent_steps` agent steps are collected."""
        if self.catch_up and agent_steps >= self.prefill:
            learned = agent_steps
        else:
            learned = agent_steps - self.prefill
        if learned <= 0:
            return 0
        return int(learned * self.train_ratio / self.batch_steps)


@dataclass(frozen=True)
class Every:
    """Work due each time the step count crosses a multiple of `every` (never when 0)."""

    every: int

    def due(self, step: int, last: int | None) -> bool:
        """Whether a multiple of `every` lies in (last, step]; always when it never ran
        (`last` None), so evaluation curves start at the untrained agent."""
        if self.every <= 0:
            return False
        return last is None or step // self.every > last // self.every


class Clock:
    """Due once `seconds` of wall-clock time have passed since it was last reset."""

    def __init__(self, seconds: float, now: Callable[[], float] = time.monotonic) -> None:
        """`now` reads the time (a fake one in tests); the clock starts at construction."""
        self.seconds, self._now = float(seconds), now
        self._since = now()

    def reset(self) -> None:
        """Start counting again from now."""
        self._since = self._now()

    def due(self) -> bool:
        """Whether `seconds` have passed since the last reset."""
        return self._now() - self._since >= self.seconds


class Stopwatch:
    """Seconds a run has spent training over all its resumes: those of earlier starts, carried
    in its checkpoint, plus those since this start."""

    def __init__(self, carried: float = 0.0, now: Callable[[], float] = time.monotonic) -> None:
        """Starts at construction, from the `carried` seconds of earlier starts."""
        self.carried, self._now = float(carried), now
        self._start = now()

    def seconds(self) -> float:
        """Seconds in total so far."""
        return self.carried + self._now() - self._start
