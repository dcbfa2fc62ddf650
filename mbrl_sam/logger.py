"""Scalar metrics written both to TensorBoard and to `metrics.jsonl`, rewound on resume."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import TextIO

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

_RESERVED = ("step", "time")


def _to_scalar(name: str, value: object) -> float | int:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"metric {name!r} is not a scalar: shape {tuple(value.shape)}")
        return float(value.detach().item())
    if isinstance(value, np.ndarray | np.generic):
        if value.size != 1:
            raise ValueError(f"metric {name!r} is not a scalar: shape {np.shape(value)}")
        return float(value.item())
    # bool is an int subclass; logging it as 0/1 keeps every value numeric.
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return value
    raise TypeError(f"metric {name!r} has type {type(value).__name__}; expected a number")


def _step_of(line: str) -> float:
    """The record's step; a torn last line (a crash mid-write) counts as after everything."""
    try:
        return json.loads(line).get("step", -math.inf)
    except json.JSONDecodeError:
        return math.inf


class Logger:
    """Logs scalar metrics to `run_dir/tb` (TensorBoard) and `run_dir/metrics.jsonl`."""

    def __init__(self, run_dir: str | os.PathLike, use_tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.tensorboard = use_tensorboard
        # Opened at the first record, so a start that logs nothing leaves no empty event file.
        self._jsonl: TextIO | None = None
        self._writer: SummaryWriter | None = None
        self._purge_step: int | None = None
        self._closed = False

    def _open(self) -> None:
        """The jsonl file and TensorBoard writer; a rewind's purge step drops the events that
        older files hold from there on."""
        # Append so a resumed run keeps its history; line buffering hands each record to the OS.
        self._jsonl = open(self.run_dir / "metrics.jsonl", "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        if self.tensorboard:
            tb = str(self.run_dir / "tb")
            self._writer = SummaryWriter(log_dir=tb, purge_step=self._purge_step)

    def log(
        self,
        step: int,
        metrics: dict[str, float | int | torch.Tensor | np.ndarray],
        prefix: str = "",
    ) -> None:
        """Write one JSON line and one TensorBoard scalar per metric, named `prefix/key`."""
        if self._closed:
            raise RuntimeError("Logger.log called after close()")
        if self._jsonl is None:
            self._open()
        step = int(step)
        record: dict[str, float | int | None] = {"step": step, "time": time.time()}
        for key, value in metrics.items():
            name = f"{prefix}/{key}" if prefix else str(key)
            if name in _RESERVED:
                raise ValueError(f"metric name {name!r} is reserved; use a prefix")
            scalar = _to_scalar(name, value)
            finite = math.isfinite(scalar)
            # JSON has no NaN/inf; null keeps every line parseable by strict readers.
            record[name] = scalar if finite else None
            if finite and self._writer is not None:
                self._writer.add_scalar(name, scalar, global_step=step)
        self._jsonl.write(json.dumps(record, allow_nan=False) + "\n")
        self._jsonl.flush()

    def record(self, filename: str, data: dict) -> None:
        """Append one free-form JSON record (lists allowed) to `run_dir/filename`."""
        with open(self.run_dir / filename, "a", encoding="utf-8") as f:
            f.write(json.dumps(data) + "\n")

    def rewind(self, step: int) -> None:
        """Forget everything logged after `step`: a run resumed from a checkpoint at `step`
        redoes that stretch, and its curves must not hold the lost attempt twice."""
        self._close_files()
        for path in sorted(self.run_dir.glob("*.jsonl")):
            lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
            kept = [line for line in lines if _step_of(line) <= step]
            if len(kept) < len(lines):
                tmp = path.with_suffix(".jsonl.tmp")
                tmp.write_text("".join(kept), encoding="utf-8")
                os.replace(tmp, path)
        self._purge_step = step + 1

    def _close_files(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None

    def flush(self) -> None:
        """Push pending TensorBoard events and JSON lines to disk."""
        if self._jsonl is not None:
            self._jsonl.flush()
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush and close both outputs; further calls are no-ops."""
        self._close_files()
        self._closed = True

    def __enter__(self) -> Logger:
        """Return self so the logger can be used in a `with` block."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close on leaving the `with` block."""
        self.close()
