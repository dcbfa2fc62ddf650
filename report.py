"""Report on many runs: `python report.py runs/ [more dirs] out=reports/dmc reps=2000`.

Finds every training run under the given directories (task x seed x objective), and writes
into `out`: report.md (per-task table, aggregate mean / median / IQM / optimality gap with
stratified-bootstrap 95% intervals, probability of improvement), report.json and PNG plots.
Options: out (reports/latest), reps (2000 bootstrap resamples), progress (true: the runs read
and the files written on stderr, a live bar on a terminal, else a line every 60 s).
"""

from __future__ import annotations

import sys
from pathlib import Path

USAGE = "usage: python report.py <run dirs...> out=<dir> reps=<n> progress=<true|false>"


def main() -> None:
    """Split positional run roots from key=value options, then write the report."""
    from mbrl_sam.config import answer_help
    from mbrl_sam.evaluation.report import write_report

    answer_help(sys.argv[1:], __doc__)
    roots = [Path(a) for a in sys.argv[1:] if "=" not in a]
    options = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
    unknown = sorted(set(options) - {"out", "reps", "progress"})
    progress = options.get("progress", "true").lower()
    if unknown or not roots or progress not in ("true", "false"):
        print(f"error: {USAGE}; got {sys.argv[1:]}", file=sys.stderr)
        sys.exit(2)
    out = Path(options.get("out", "reports/latest"))
    try:
        report = write_report(roots, out, int(options.get("reps", 2000)), progress == "true")
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"{len(report['tasks'])} tasks, methods {report['methods']}: {out / 'report.md'}")


if __name__ == "__main__":
    main()
