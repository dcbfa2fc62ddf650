"""benchmarks/harness.py: the scripts import the checkout they sit in."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_benchmarks_import_the_checkout_they_sit_in(tmp_path: Path) -> None:
    # A decoy `envs` first on the path stands in for another clone's editable install.
    decoy = tmp_path / "envs"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("raise ImportError('the decoy clone was imported')\n")
    code = "import harness, envs; print(envs.__file__)"
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT / "benchmarks",
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()) == ROOT / "envs" / "__init__.py"
