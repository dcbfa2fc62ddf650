"""What a run finds in its run_dir at start: the checkpoint to resume (the same run's, or an
error), and what an earlier start left behind."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from mbrl_sam.checkpoint import load_latest, remove_stale_temp
from mbrl_sam.config import RunConfig, check_resume_matches

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
    old = [run_dir / name for name in RUN_OUTPUTS if (run_dir / name).exists()]
    if not old:
        return None
    aside = run_dir / "stale" / time.strftime("%Y%m%d-%H%M%S")
    aside.mkdir(parents=True, exist_ok=True)
    for path in old:
        shutil.move(str(path), str(aside / path.name))
    return aside
