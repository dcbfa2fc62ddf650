"""Checkpoint save and load cost against the number of stored pixel steps: prints JSON.

Usage: python benchmarks/checkpoint_cost.py [--steps 10000 200000] [--root /tmp/ckpt_cost]

For each size, two layouts, each in a fresh process so peak memory is its own:
- `in_checkpoint`: the replay's records inside checkpoint.pt (as before chunk files);
- `chunks`: records in append-only chunk files written as they arrive (the trainer's way), the
  checkpoint holding only their count.
Reported: save seconds, peak RSS during the save over the RSS before it, checkpoint MB, and the
same for loading into a fresh buffer. The "model" is a 5M-parameter state with Adam moments.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OBS = (3, 64, 64)


def rss_mb() -> float:
    """The process's resident memory now, MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    """The process's peak resident memory so far, MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(steps: int, layout: str, root: Path) -> dict:
    """Fill a replay with `steps` pixel records, save a checkpoint, load it back."""
    import numpy as np
    import torch

    from mbrl_sam.checkpoint import save_checkpoint
    from mbrl_sam.replay import SequenceReplay
    from mbrl_sam.replay_chunks import ReplayChunks
    from mbrl_sam.replay_store import ChunkStore

    run_dir = root / f"{layout}_{steps}"
    shutil.rmtree(run_dir, ignore_errors=True)
    replay = SequenceReplay(steps, OBS, np.uint8, 6, 0)
    store = ChunkStore(ReplayChunks(run_dir / "replay"), replay) if layout == "chunks" else None
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (256, *OBS), dtype=np.uint8)  # cycled: filling stays cheap
    action = np.zeros(6, np.float32)
    fill_start = time.monotonic()
    for i in range(steps):
        replay.add(frames[i % 256], action, 0.0, i % 500 == 0, False)
        if store is not None:
            store.write_due()
    fill_s = time.monotonic() - fill_start
    model = {f"w{i}": torch.randn(1000, 1000) for i in range(5)}
    adam = {k: (torch.zeros_like(v), torch.zeros_like(v)) for k, v in model.items()}
    before = rss_mb()
    start = time.monotonic()
    # As the trainer's checkpointer does: the pending records go to a chunk first.
    if store is not None:
        store.flush()
    records = store.state_dict() if store is not None else replay.state_dict()
    save_checkpoint(run_dir / "checkpoint.pt", {"model": model, "adam": adam, "replay": records})
    save_s = time.monotonic() - start
    peak_save = peak_mb()
    size = (run_dir / "checkpoint.pt").stat().st_size / 2**20
    return {
        "layout": layout,
        "stored_steps": steps,
        "fill_s": round(fill_s, 1),
        "rss_before_save_mb": round(before),
        "peak_rss_at_save_mb": round(peak_save),
        "save_peak_over_running": round(peak_save / before, 3),
        "save_s": round(save_s, 2),
        "checkpoint_mb": round(size, 1),
    }


def measure_load(steps: int, layout: str, root: Path) -> dict:
    """Load the checkpoint `measure` wrote into a fresh buffer (a fresh process)."""
    import numpy as np

    from mbrl_sam.checkpoint import load_checkpoint
    from mbrl_sam.replay import SequenceReplay
    from mbrl_sam.replay_chunks import ReplayChunks
    from mbrl_sam.replay_store import ChunkStore

    run_dir = root / f"{layout}_{steps}"
    replay = SequenceReplay(steps, OBS, np.uint8, 6, 0)
    start = time.monotonic()
    state = load_checkpoint(run_dir / "checkpoint.pt")
    if layout == "chunks":
        ChunkStore(ReplayChunks(run_dir / "replay"), replay).load_state_dict(state["replay"])
    else:
        replay.load_state_dict(state["replay"])
    del state
    load_s = time.monotonic() - start
    buffer_mb = sum(a.nbytes for a in replay._data.values()) / 2**20
    return {
        "load_s": round(load_s, 2),
        "peak_rss_at_load_mb": round(peak_mb()),
        "replay_buffer_mb": round(buffer_mb),
    }


def main() -> None:
    """Measure each size and layout in its own process; print one JSON list."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[10_000, 200_000])
    parser.add_argument("--root", type=Path, default=Path("/tmp/ckpt_cost"))
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)  # steps layout save|load
    args = parser.parse_args()
    if args.one:
        steps, layout, what = int(args.one[0]), args.one[1], args.one[2]
        fn = measure if what == "save" else measure_load
        print(json.dumps(fn(steps, layout, args.root)))
        return
    results = []
    for steps in args.steps:
        for layout in ("in_checkpoint", "chunks"):
            row = {}
            for what in ("save", "load"):
                cmd = [sys.executable, __file__, "--root", str(args.root), "--one"]
                out = subprocess.run(
                    [*cmd, str(steps), layout, what], capture_output=True, text=True, check=True
                )
                row.update(json.loads(out.stdout.splitlines()[-1]))
            results.append(row)
            shutil.rmtree(args.root / f"{layout}_{steps}", ignore_errors=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
