"""Measure flatness of a saved run: `python measure.py run_dir=runs/x [lanczos_steps=20 ...]`.

Runs every measurement of mbrl_sam/evaluation/flatness.py on the run's checkpoint: world-model
top Hessian eigenvalue (against 2/lr), trace, SAM sharpness, Adam-preconditioned sharpness
(against its edge-of-stability threshold), value-estimation gap, open-loop model error and
performance gap. The probe batch is the one the run measured during training if it did, else
one drawn from its replay with `seed`. Writes run_dir/measure/step_<env steps>.json.

Options (key=value): run_dir (required), device, progress (true), and any field of
MeasureConfig. Its cost is bounded by: lanczos_steps (20) and trace_samples (10), the
Hessian-vector products (2 x lanczos_steps + trace_samples in all); ascent_steps (1); episodes
(1), the real episodes played for the value gap and again for the model error; and
max_episode_steps (none: the env's own length), the env steps after which each is cut. E.g.
`python measure.py run_dir=runs/x lanczos_steps=5 trace_samples=3 max_episode_steps=200`.

Progress goes to stderr: a live bar per stage on a terminal, else a line every 60 s
(MBRL_SAM_PROGRESS_SECONDS). The JSON is rewritten (atomically) after each finished stage and
episode, with `complete` false until the end; Ctrl-C or SIGTERM keeps what is finished, notes
the interruption in it and exits with status 130.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, fields
from pathlib import Path

from omegaconf import MISSING

from mbrl_sam.config import answer_help, parse_options
from mbrl_sam.errors import ConfigError
from mbrl_sam.evaluation.flatness import MeasureConfig


@dataclass
class MeasureOptions(MeasureConfig):
    """measure.py's `key=value` options: a run, a device and the measurement settings."""

    run_dir: str = MISSING  # a training run's directory
    device: str | None = None  # None: the run's
    progress: bool = True  # progress of each stage on stderr


def finished_parts(parts: dict[str, dict], episodes: int) -> str:
    """What `parts` holds, in words: 'sharpness, value_gap (1/3 episodes)'."""
    words = []
    for stage, result in parts.items():
        done = len(result.get("lengths", ()))
        partial = "lengths" in result and done < episodes
        words.append(f"{stage} ({done}/{episodes} episodes)" if partial else stage)
    return ", ".join(words) or "nothing"


def main() -> None:
    """Entry point; start-up errors print one line and exit 2, an interruption exits 130."""
    from mbrl_sam.progress import sigterm_as_interrupt

    answer_help(sys.argv[1:], __doc__)
    sigterm_as_interrupt()
    try:
        options = parse_options(MeasureOptions, sys.argv[1:])
        run_dir, device = Path(options.run_dir), options.device
        mcfg = MeasureConfig(**{f.name: getattr(options, f.name) for f in fields(MeasureConfig)})
        from agents.run import load_saved_run
        from mbrl_sam import seeds
        from mbrl_sam.evaluation.flatness import measure_all, summarize
        from mbrl_sam.progress import write_json
        from mbrl_sam.replay import SequenceReplay
        from mbrl_sam.replay_chunks import ReplayChunks
        from mbrl_sam.replay_store import ChunkStore
        from mbrl_sam.runtime import matmul_precision

        cfg, agent, env, state = load_saved_run(run_dir, device, mcfg.seed)
        mcfg.episode_limit(env.spec.action_repeat)  # too short for the horizon: say so now
        # The batch the run measured during training, if it did (older checkpoints: top level).
        batch = state.get("flatness", {}).get("probe_batch", state.get("probe_batch"))
        if batch is None:
            import numpy as np

            spec = env.spec
            replay = SequenceReplay(
                cfg.replay_capacity, spec.obs_shape, spec.obs_dtype, spec.action_dim, 0
            )
            store = ChunkStore(ReplayChunks(run_dir / "replay"), replay)
            # Read-only: the run may still be training and writing chunk files.
            store.load_state_dict(state["replay"], read_only=True)
            rng = np.random.default_rng(mcfg.seed)
            batch = replay.sample(cfg.agent.batch_size, cfg.agent.batch_length, rng)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("Interrupted before measuring; nothing written.", file=sys.stderr)
        sys.exit(130)
    env_steps = state["counters"]["agent_steps"] * env.spec.action_repeat
    out = run_dir / "measure" / f"step_{env_steps}.json"
    about = dict(task=cfg.task, objective=cfg.objective.name, env_steps=env_steps)
    about["settings"] = dataclasses.asdict(mcfg)
    kept: dict[str, dict] = {}

    def keep(parts: dict[str, dict], note: str | None = None) -> None:
        kept.update(parts)
        done = finished_parts(kept, mcfg.episodes)
        note = note or f"in progress; finished: {done}"
        write_json(out, {**summarize(kept), **about, "complete": False, "note": note})

    # The value gap and model error as the run acts (sharpness is always measured in float32).
    try:
        with matmul_precision(cfg.get("matmul_precision", "highest")):
            result = measure_all(
                agent, batch, env, mcfg, seeds.MEASURE_SCRIPT, options.progress, keep
            )
    except KeyboardInterrupt:
        if not kept:
            print("Interrupted before the first stage finished; nothing written.", file=sys.stderr)
            sys.exit(130)
        done = finished_parts(kept, mcfg.episodes)
        keep({}, f"interrupted (Ctrl-C or SIGTERM); finished: {done}")
        print(f"Interrupted: kept {done} in {out}", file=sys.stderr)
        sys.exit(130)
    finally:
        env.close()
    result.update(about, complete=True)
    write_json(out, result)
    for key, value in result["flat"].items():
        print(f"{key:40s} {value:.5g}")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
