"""Run train.py with each bad value a user has been seen to pass, and print what happened: JSON
rows of (case, exit code, first line of stderr, traceback or not, seconds).

Usage: python benchmarks/bad_input.py [--root /tmp/bad_input]

The read-only and full-disk cases mount small tmpfs file systems (root only; without
permission those rows say "skipped"). Goal: exit code 2 (1 for a full disk, found while
training), one line, no traceback, within 15 s for start-up errors.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TINY = ["agent=tdmpc", "size=tiny", "task=gym/Pendulum-v1", "planner=none", "progress=false"]
TINY += ["prefill=50", "eval_every=0", "steps=60"]


def train(*args: str) -> dict:
    """One train.py run: its exit code, first stderr line, traceback flag and seconds."""
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, capture_output=True, text=True
    )
    lines = proc.stderr.strip().splitlines()
    return {
        "exit": proc.returncode,
        "first_line": lines[0] if lines else "",
        "stderr_lines": len(lines),
        "traceback": "Traceback" in proc.stderr,
        "seconds": round(time.monotonic() - start, 1),
    }


def mount(where: Path, options: str) -> bool:
    """A tmpfs at `where` with mount `options`; False without permission."""
    where.mkdir(parents=True, exist_ok=True)
    cmd = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)]
    return subprocess.run(cmd, capture_output=True).returncode == 0


def main() -> None:
    """Run every case; print one JSON list."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/bad_input"))
    root = parser.parse_args().root
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    afile = root / "afile"
    afile.write_text("not a directory")
    run = f"run_dir={root / 'run'}"
    cases: list[tuple[str, list[str]]] = [
        ("agent.model_opt.lr=abc", ["agent.model_opt.lr=abc", run]),
        ("agent.model_opt.lr=-1", ["agent.model_opt.lr=-1", run]),
        ("objective.start_step=abc", ["objective.start_step=abc", run]),
        ("measure.groups=foo", ["measure.groups=foo", run]),
        ("device=cpu:1", ["device=cpu:1", run]),
        ("run_dir= (empty)", ["run_dir="]),
        ("run_dir=<a file>", [f"run_dir={afile}"]),
        ("run_dir=<a file>/sub", [f"run_dir={afile}/sub"]),
    ]
    rows = [{"case": name, **train(*TINY, *args)} for name, args in cases]
    # A SAM run resumed as ERM (and with another seed).
    sam_dir = root / "sam_run"
    first = train(*TINY, "objective=sam", f"run_dir={sam_dir}")
    assert first["exit"] == 0, first
    for name, override in (("objective=erm", "objective=erm"), ("seed=1", "seed=1")):
        rows.append(
            {
                "case": f"{name} into a SAM run's run_dir",
                **train(*TINY, override, f"run_dir={sam_dir}"),
            }
        )
    readonly = root / "readonly"
    if mount(readonly, "ro,size=1m"):
        try:
            rows.append(
                {"case": "run_dir=<read-only fs>/sub", **train(*TINY, f"run_dir={readonly}/sub")}
            )
            rows.append({"case": "run_dir=<read-only fs>", **train(*TINY, f"run_dir={readonly}")})
        finally:
            subprocess.run(["umount", str(readonly)], check=True)
    else:
        rows.append({"case": "run_dir=<read-only fs>", "skipped": "no permission to mount"})
    small = root / "small"
    if mount(small, "size=1500k"):  # room for one ~1 MB checkpoint, not two
        try:
            args = [*TINY, "steps=200", "checkpoint_minutes=1e-6", f"run_dir={small}/run"]
            rows.append({"case": "a full disk while training", **train(*args)})
        finally:
            subprocess.run(["umount", str(small)], check=True)
    else:
        rows.append({"case": "a full disk while training", "skipped": "no permission to mount"})
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
