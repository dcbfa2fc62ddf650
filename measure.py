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
from pathlib import Path

from omegaconf import OmegaConf

from mbrl_sam.errors import ConfigError
from mbrl_sam.evaluation.flatness import MeasureConfig


def parse(argv: list[str]) -> tuple[Path, str | None, MeasureConfig]:
    """run_dir, device and the measurement settings; ConfigError for unknown keys."""
    given = OmegaConf.to_container(OmegaConf.from_dotlist(argv))
    fields = {f.name for f in dataclasses.fields(MeasureConfig)}
    unknown = sorted(set(given) - fields - {"run_dir", "device"})
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown}; valid: run_dir, device, {sorted(fields)}")
    if not given.get("run_dir"):
        raise ConfigError("run_dir=<path of a training run> is required")
    settings = {k: v for k, v in given.items() if k in fields}
    return Path(given["run_dir"]), given.get("device"), MeasureConfig(**settings)


def main() -> None:
    """Entry point; start-up errors print one line and exit 2."""
    try:
        run_dir, device, mcfg = parse(sys.argv[1:])
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

    batch = state.get("probe_batch")
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
