"""Report on many runs: `python report.py runs/ [more dirs] out=reports/dmc reps=2000`.

Finds every training run under the given directories (task x seed x objective), and writes
into `out`: report.md (per-task table, aggregate mean / median / IQM / optimality gap with
stratified-bootstrap 95% intervals, probability of improvement), report.json and PNG plots.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> None:
    """Split positional run roots from key=value options, then write the report."""
    from mbrl_sam.evaluation.report import write_report

    roots = [Path(a) for a in sys.argv[1:] if "=" not in a]
    options = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
    unknown = sorted(set(options) - {"out", "reps"})
    if unknown or not roots:
        print(f"error: usage: python report.py <run dirs...> out=<dir> reps=<n>; got {unknown}")
        sys.exit(2)
    out = Path(options.get("out", "reports/latest"))
    try:
        report = write_report(roots, out, int(options.get("reps", 2000)))
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"{len(report['tasks'])} tasks, methods {report['methods']}: {out / 'report.md'}")


if __name__ == "__main__":
    main()
