"""Report on many runs: `python report.py runs/ [more dirs] out=reports/dmc reps=2000`.

Finds every training run under the given directories (task x seed x objective), and writes
into `out`: report.md (per-task table, aggregate mean / median / IQM / optimality gap with
stratified-bootstrap 95% intervals, probability of improvement), report.json and PNG plots.
Options: out (reports/latest), reps (2000 bootstrap resamples), progress (true: the runs read
and the files written on stderr, a live bar on a terminal, else a line every 60 s),
random_episodes (10: a study folder's tasks without a random-action reference in random.csv get
one from that many episodes of uniform random actions; 0: none measured). A task where ERM's IQM
final return stays under twice the random one is left out of the aggregates.
"""

from __future__ import annotations

import sys
from pathlib import Path

USAGE = (
    "usage: python report.py <run dirs...> out=<dir> reps=<n> progress=<true|false> "
    "random_episodes=<n>"
)


def fill_random_references(folder: Path, episodes: int, progress: bool) -> None:
    """Measure and keep the random-action reference of each task of the study in `folder`
    that lacks one, with the env settings of the task's first recorded run."""
    from agents.run import load_config
    from envs import make_env
    from mbrl_sam import seeds
    from mbrl_sam.evaluation.episodes import random_returns
    from mbrl_sam.evaluation.study import commit_of, random_references, read_rows, record_random

    known = random_references(folder)
    for measure_csv in sorted(folder.glob("*.measure.csv")):
        rows = read_rows(measure_csv)
        if not rows or rows[0]["task"] in known:
            continue
        task, agent = rows[0]["task"], rows[0]["agent"]
        cfg = load_config([f"agent={agent}", f"task={task}"])
        env = make_env(task, obs=cfg.obs, action_repeat=cfg.action_repeat, seed=0)
        returns = random_returns(env, episodes, seeds.random_reference(0), 0, progress)
        env.close()
        record_random(folder, task, returns, 0, commit_of(Path(__file__).resolve().parent))
        print(f"{task}: uniform random actions return {sum(returns) / len(returns):.1f}")


def main() -> None:
    """Split positional run roots from key=value options, then write the report."""
    from mbrl_sam.config import answer_help
    from mbrl_sam.evaluation.report import write_report
    from mbrl_sam.evaluation.study import is_study_folder

    answer_help(sys.argv[1:], __doc__)
    roots = [Path(a) for a in sys.argv[1:] if "=" not in a]
    options = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
    unknown = sorted(set(options) - {"out", "reps", "progress", "random_episodes"})
    progress = options.get("progress", "true").lower()
    episodes = options.get("random_episodes", "10")
    if unknown or not roots or progress not in ("true", "false") or not episodes.isdigit():
        print(f"error: {USAGE}; got {sys.argv[1:]}", file=sys.stderr)
        sys.exit(2)
    out = Path(options.get("out", "reports/latest"))
    try:
        if int(episodes) > 0:
            for root in roots:
                if is_study_folder(root):
                    fill_random_references(root, int(episodes), progress == "true")
        report = write_report(roots, out, int(options.get("reps", 2000)), progress == "true")
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"{len(report['tasks'])} tasks, methods {report['methods']}: {out / 'report.md'}")


if __name__ == "__main__":
    main()
