"""What a run finds in its run_dir at start: the checkpoint to resume (the same run's, or an
error), and what an earlier start left behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from mbrl_sam.checkpoint import (
    CHECKPOINT,
    PREVIOUS,
    checksum_path,
    load_checkpoint,
    load_latest,
    remove_stale_temp,
)
from mbrl_sam.config import RunConfig, check_resume_matches
from mbrl_sam.errors import ConfigError

# What a run writes besides its checkpoint; a fresh start in a used run_dir moves them aside.
RUN_OUTPUTS = ("metrics.jsonl", "evals.jsonl", "resumes.jsonl", "error.log", "tb", "replay")


def resumable_state(
    run_dir: Path, run: RunConfig
) -> tuple[dict | None, dict[str, tuple[Any, Any]]]:
    """The run's newest checkpoint, checked to be of the same run as `run`, and the steering
    keys that changed since; (None, {}) when there is none. Removes stale temp files first."""
    removed = remove_stale_temp(run_dir)
    if removed:
        print(f"Removed {len(removed)} temp files left by an interrupted write.")
    state, note = load_latest(run_dir, map_location="cpu")
    if state is None:
        return None, {}
    if note:
        print(f"Warning: {note}", flush=True)
    return state, check_resume_matches(OmegaConf.structured(run), state, run_dir)


def move_aside_outputs(run_dir: Path) -> Path | None:
    """Move the outputs of an earlier start that left no checkpoint into run_dir/stale/<time>,
    so that a fresh start logs no step twice; where they went, or None."""
    old = [name for name in RUN_OUTPUTS if (run_dir / name).exists()]
    return _move_aside(run_dir, old) if old else None


def align_seed_checkpoints(run_dirs: Sequence[Path]) -> list[str]:
    """Bring a seed group's checkpoints to one step before it resumes; what moved, one line
    each. A group killed while its seeds saved one after another leaves some seeds a checkpoint
    ahead: those fall back to their previous one, the step all the seeds hold. Killed in its
    first save, it leaves some seeds with none (or with one that does not load): all start
    over. The checkpoints set aside go to run_dir/stale/<time>. Any other mismatch is left for
    the group to refuse."""
    found = [_checkpoints_by_step(d) for d in run_dirs]
    current = [_current(f) for f in found]
    if len(set(current)) <= 1:
        return []
    common = set.intersection(*(set(f) for f in found))
    notes = []
    if common:
        target = max(common)
        for run_dir, held, now in zip(run_dirs, found, current, strict=True):
            if now != target:
                aside = _move_aside(run_dir, [CHECKPOINT])
                os.replace(held[target], run_dir / CHECKPOINT)
                notes.append(
                    f"{run_dir.name}: back to its previous checkpoint, at {target[0]} agent "
                    f"steps like the other seeds (the one at {now[0]} moved to {aside})"
                )
        return notes
    if None in current and all(len(f) <= 1 for f in found):
        names = [CHECKPOINT, PREVIOUS, checksum_path(Path(CHECKPOINT)).name]
        for run_dir, now in zip(run_dirs, current, strict=True):
            # Every seed's files go, loadable or not: one left behind would be resumed from.
            if not any((run_dir / name).exists() for name in names):
                continue
            aside = _move_aside(run_dir, names)
            notes.append(
                f"{run_dir.name}: starts over with the seeds that have no checkpoint (its "
                f"checkpoint at {now[0]} agent steps moved to {aside})"
                if now is not None
                else f"{run_dir.name}: its checkpoint does not load; starts over (moved to {aside})"
            )
    return notes


def _checkpoints_by_step(run_dir: Path) -> dict[tuple[int, int], Path]:
    """A run's loadable checkpoints, latest first, by (agent steps, updates)."""
    found: dict[tuple[int, int], Path] = {}
    for path in (run_dir / CHECKPOINT, run_dir / PREVIOUS):
        if path.exists():
            with contextlib.suppress(ConfigError):
                counters = load_checkpoint(path)["counters"]
                found.setdefault((int(counters["agent_steps"]), int(counters["updates"])), path)
    return found


def _current(found: dict[tuple[int, int], Path]) -> tuple[int, int] | None:
    """The step a resume would start from (load_latest's pick): the latest loadable one."""
    return next(iter(found), None)


def _move_aside(run_dir: Path, names: Sequence[str]) -> Path:
    """Move these files of run_dir into run_dir/stale/<time>; that folder."""
    aside = run_dir / "stale" / time.strftime("%Y%m%d-%H%M%S")
    aside.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (run_dir / name).exists():
            shutil.move(str(run_dir / name), str(aside / name))
    return aside
