"""Evaluate a saved run's checkpoint: `python evaluate.py run_dir=runs/x episodes=10`.

Writes `run_dir/eval/step_<env steps>.json` with every episode's return and the suite score.
Options (key=value): run_dir (required), episodes (10), device (the run's), seed (0),
explore (false: the agent's greedy action), progress (true), video (false: true also writes the
first episode as `run_dir/eval/step_<env steps>.gif`), fps (30, the video's frame rate).

Progress goes to stderr, counting env steps over all episodes: a live bar on a terminal, else a
line every 60 s (MBRL_SAM_PROGRESS_SECONDS). The JSON is rewritten (atomically) after each
episode, with `complete` false until the last; Ctrl-C or SIGTERM keeps the finished episodes,
notes the interruption in it and exits with status 130.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from mbrl_sam.config import answer_help, parse_options
from mbrl_sam.errors import ConfigError, check_int, check_positive


@dataclass
class EvaluateOptions:
    """evaluate.py's `key=value` options."""

    run_dir: str = MISSING  # a training run's directory
    episodes: int = 10
    device: str | None = None  # None: the run's
    seed: int = 0
    explore: bool = False  # false: the agent's greedy action
    progress: bool = True
    video: bool = False  # also write the first episode as run_dir/eval/step_<env steps>.gif
    fps: float = 30.0  # the video's frame rate

    def __post_init__(self) -> None:
        check_int("episodes", self.episodes, 1)
        check_int("seed", self.seed, 0)
        check_positive("fps", self.fps)


def check_renders(env: Any, task: str) -> None:
    """ConfigError, before any episode is played, if `env` cannot render video frames."""
    from mbrl_sam.environment import RenderUnavailable

    env.reset(seed=0)
    try:
        env.render()
    except RenderUnavailable as err:
        raise ConfigError(f"video=true is not available for task={task!r}: {err}") from err


def evaluate(args: EvaluateOptions) -> dict:
    """Load the run's config and checkpoint, play the episodes, write and return the result."""
    import torch

    from agents.run import load_saved_run
    from mbrl_sam import seeds
    from mbrl_sam.evaluation.episodes import run_episodes
    from mbrl_sam.evaluation.suites import suite_of
    from mbrl_sam.evaluation.video import write_gif
    from mbrl_sam.progress import write_json
    from mbrl_sam.runtime import matmul_precision

    run_dir = Path(args.run_dir)
    cfg, agent, env, state = load_saved_run(run_dir, args.device, args.seed, args.video)
    env_steps = state["counters"]["agent_steps"] * env.spec.action_repeat
    seed = seeds.evaluate_script(args.seed)
    frames = [] if args.video else None
    if args.video:
        check_renders(env, cfg.task)
    out = run_dir / "eval" / f"step_{env_steps}.json"
    suite = suite_of(cfg.task)
    result: dict[str, Any] = {}
    finished: list[dict[str, float]] = []

    def keep(episodes: list[dict[str, float]], note: str | None = None) -> None:
        """Write the episodes finished so far (the video once the first is)."""
        finished[:] = episodes
        returns = [e["return"] for e in episodes]
        result.update(
            task=cfg.task,
            agent=cfg.agent.name,
            objective=cfg.objective.name,
            seed=cfg.seed,
            env_steps=env_steps,
            returns=returns,
            lengths=[e["length"] for e in episodes],
            mean=sum(returns) / len(returns),
            suite=suite.name if suite else None,
            score=suite.normalize(cfg.task, returns) if suite else None,
            complete=len(episodes) == args.episodes and note is None,
        )
        if frames and "video" not in result:
            result["video"] = str(write_gif(frames, out.with_suffix(".gif"), float(args.fps)))
        if not result["complete"]:
            result["note"] = note or f"in progress: {len(episodes)}/{args.episodes} episodes"
        else:
            result.pop("note", None)
        write_json(out, result)

    # As the run trained (runs from before the setting used float32 products).
    try:
        with torch.no_grad(), matmul_precision(cfg.get("matmul_precision", "highest")):
            episodes = run_episodes(
                agent, env, args.episodes, seed, args.explore, args.progress, frames, keep
            )
    except KeyboardInterrupt:
        if finished:
            done = f"{len(finished)}/{args.episodes} episodes"
            keep(finished, f"interrupted (Ctrl-C or SIGTERM) after {done}")
            print(f"Interrupted: kept {done} in {out}", file=sys.stderr)
        else:
            print("Interrupted before the first episode ended; nothing written.", file=sys.stderr)
        raise
    finally:
        env.close()
    returns = [e["return"] for e in episodes]
    print(f"{cfg.task} ({cfg.objective.name}, seed {cfg.seed}) at {env_steps} env steps: ")
    print(f"  return {result['mean']:.1f} over {len(returns)} episodes -> {out}")
    if frames:
        print(f"  the first episode's {len(frames)} frames -> {result['video']}")
    return result


def main() -> None:
    """Entry point; start-up errors print one line and exit 2, an interruption exits 130."""
    from mbrl_sam.progress import sigterm_as_interrupt

    answer_help(sys.argv[1:], __doc__)
    sigterm_as_interrupt()
    try:
        evaluate(parse_options(EvaluateOptions, sys.argv[1:]))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)  # evaluate() has said what it kept


if __name__ == "__main__":
    main()
