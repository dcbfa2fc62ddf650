"""The GPU-session scripts answer --help without touching anything."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("script", ["device_check.sh", "device_wheels.sh"])
def test_device_script_prints_its_usage_on_help_and_writes_nothing(script, tmp_path):
    before = sorted(p.name for p in ROOT.iterdir())
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / script), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        env={"OUT": str(tmp_path / "out"), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "Usage: bash benchmarks/" in proc.stdout and not proc.stderr
    assert sorted(p.name for p in ROOT.iterdir()) == before
    assert list(tmp_path.iterdir()) == []
