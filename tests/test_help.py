"""Every script answers --help: its usage on stdout, exit status 0, nothing run."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ["train.py", "evaluate.py", "measure.py", "report.py", "sweep.py"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_prints_its_usage_on_help(script, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / script), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() and "error" not in proc.stderr.lower()
    assert list(tmp_path.iterdir()) == []  # nothing written
