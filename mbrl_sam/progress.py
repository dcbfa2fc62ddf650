"""Long commands: progress on stderr, results written as they finish, SIGTERM taken as Ctrl-C.

On a terminal a progress bar is redrawn live; off one (a log file, a pipe, CI) the same bar is
written as a whole line when it starts, then at most once every `line_seconds()` (60 by default,
`MBRL_SAM_PROGRESS_SECONDS` to change it) as it advances, and once more when it ends.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

INTERVAL_VARIABLE = "MBRL_SAM_PROGRESS_SECONDS"
LINE_SECONDS = 60.0


def on_terminal() -> bool:
    """Whether stderr is a terminal (live bars) rather than a file or a pipe (plain lines)."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def line_seconds() -> float:
    """Seconds between progress lines off a terminal: $MBRL_SAM_PROGRESS_SECONDS, else 60."""
    try:
        return max(0.0, float(os.environ.get(INTERVAL_VARIABLE, LINE_SECONDS)))
    except ValueError:
        return LINE_SECONDS


class _Lines:
    """A stream for tqdm that writes each of its carriage-return redraws as a whole line."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def bar(
    total: float | None, desc: str, unit: str = "it", enabled: bool = True, leave: bool = True
) -> tqdm:
    """A tqdm bar on stderr, live on a terminal and a line now and then off one (see above).

    Set postfixes with `set_postfix(..., refresh=False)`: a refresh off a terminal is a line.
    """
    if on_terminal():
        return tqdm(
            total=total,
            desc=desc,
            unit=unit,
            disable=not enabled,
            leave=leave,
            mininterval=0.5,
            dynamic_ncols=True,
        )
    # miniters=1: the clock is read at every update, so a slow stretch still gets its line.
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        disable=not enabled,
        leave=True,
        file=_Lines(sys.stderr),
        mininterval=line_seconds(),
        miniters=1,
    )


def write_json(path: Path, data: Any) -> None:
    """Write `data` as JSON to `path` atomically: a reader sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temp file shares the target's directory, so os.replace is an atomic rename.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def sigterm_as_interrupt() -> None:
    """Make SIGTERM (kill, Slurm, Docker, Ray) raise KeyboardInterrupt as Ctrl-C does."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
