"""Measure flatness of a saved run: `python measure.py run_dir=runs/x [lanczos_steps=20 ...]`.

Runs every measurement of mbrl_sam/evaluation/flatness.py on the run's checkpoint: world-model
top Hessian eigenvalue (against 2/lr), trace, SAM sharpness, Adam-preconditioned sharpness
(against its edge-of-stability threshold), value-estimation gap, open-loop model error and
performance gap. The probe batch is the one the run measured during training if it did, else
one drawn from its replay with `seed`. Writes run_dir/measure/step_<env steps>.json.
Options (key=value): run_dir (required), device, and any field of MeasureConfig.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, fields
from pathlib import Path

from omegaconf import MISSING

from mbrl_sam.config import parse_options
from mbrl_sam.errors import ConfigError
from mbrl_sam.evaluation.flatness import MeasureConfig


@dataclass
class MeasureOptions(MeasureConfig):
    """measure.py's `key=value` options: a run, a device and the measurement settings."""

    run_dir: str = MISSING  # a training run's directory
    device: str | None = None  # None: the run's


def main() -> None:
    """Entry point; start-up errors print one line and exit 2."""
    try:
        options = parse_options(MeasureOptions, sys.argv[1:])
        run_dir, device = Path(options.run_dir), options.device
        mcfg = MeasureConfig(**{f.name: getattr(options, f.name) for f in fields(MeasureConfig)})
        from agents.run import load_saved_run
        from mbrl_sam import seeds
        from mbrl_sam.evaluation.flatness import measure_all
        from mbrl_sam.replay import SequenceReplay
        from mbrl_sam.runtime import matmul_precision

        cfg, agent, env, state = load_saved_run(run_dir, device, mcfg.seed)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    import numpy as np

    # The batch the run measured during training, if it did (older checkpoints: top level).
    batch = state.get("flatness", {}).get("probe_batch", state.get("probe_batch"))
    if batch is None:
        replay = SequenceReplay(
            cfg.replay_capacity, env.spec.obs_shape, env.spec.obs_dtype, env.spec.action_dim
        )
        replay.load_state_dict(state["replay"])
        rng = np.random.default_rng(mcfg.seed)
        batch = replay.sample(cfg.agent.batch_size, cfg.agent.batch_length, rng)
    # The value gap and model error as the run acts (sharpness is always measured in float32).
    with matmul_precision(cfg.get("matmul_precision", "highest")):
        result = measure_all(agent, batch, env, mcfg, seed=seeds.MEASURE_SCRIPT)
    env.close()
    env_steps = state["counters"]["agent_steps"] * env.spec.action_repeat
    result.update(task=cfg.task, objective=cfg.objective.name, env_steps=env_steps)
    result["settings"] = dataclasses.asdict(mcfg)
    out = run_dir / "measure" / f"step_{env_steps}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    for key, value in result["flat"].items():
        print(f"{key:40s} {value:.5g}")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
