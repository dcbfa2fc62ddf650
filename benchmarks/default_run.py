"""Check the first run a user makes: `python train.py` with only the seed changed, for 3 seeds.

Usage: python benchmarks/default_run.py [--seeds 0 1 2] [--root /tmp/default_run] [overrides...]

Runs them one after another (each alone on the machine, as a user's first run would be), and
prints JSON: per seed the evaluation curve, the final return and the wall time, next to the
return of uniform random actions on the same evaluation episodes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agents.run import load_config  # noqa: E402
from envs import make_env  # noqa: E402
from mbrl_sam import seeds  # noqa: E402
from mbrl_sam.evaluation.episodes import random_returns  # noqa: E402


def random_return(overrides: list[str], seed: int) -> float:
    """Mean return of uniform random actions on the run's evaluation episodes."""
    cfg = load_config([*overrides, f"seed={seed}"])
    env = make_env(cfg.task, obs=cfg.obs, action_repeat=cfg.action_repeat, seed=seed)
    returns = random_returns(env, cfg.eval_episodes, seeds.training_evaluation(seed), seed)
    env.close()
    return float(np.mean(returns))


def main() -> None:
    """Run the seeds and print the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--root", type=Path, default=None, help="run dirs (default: a temp dir)")
    parser.add_argument("overrides", nargs="*", help="train.py overrides (none: the default)")
    args = parser.parse_args()
    root = args.root or Path(tempfile.mkdtemp(prefix="default_run_"))
    runs = []
    for seed in args.seeds:
        run_dir = root / f"seed{seed}"
        cmd = [sys.executable, str(ROOT / "train.py"), *args.overrides, f"seed={seed}"]
        cmd += ["progress=false", f"run_dir={run_dir}"]
        start = time.monotonic()
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        seconds = time.monotonic() - start
        evals = [json.loads(x) for x in (run_dir / "evals.jsonl").read_text().splitlines()]
        curve = {e["step"]: float(np.mean(e["returns"])) for e in evals}
        runs.append(
            {
                "seed": seed,
                "wall_seconds": round(seconds, 1),
                "final_return": curve[max(curve)],
                "random_return": random_return(args.overrides, seed),
                "curve": curve,
            }
        )
    print(json.dumps({"overrides": args.overrides, "root": str(root), "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
