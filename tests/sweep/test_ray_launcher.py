"""launcher=ray on a real Ray cluster on loopback: a worker killed mid-run is retried, and the
retry resumes the run from its checkpoint."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
GRID = ["task=gym/Pendulum-v1,gym/MountainCarContinuous-v0", "agent=tdmpc", "size=tiny"]
GRID += ["objective=erm,sam", "planner=none", "steps=300", "prefill=100", "eval_every=300"]
GRID += ["eval_episodes=1", "checkpoint_minutes=0.02"]
GRID += ["agent.batch_size=32", "train_ratio=256"]  # a quarter of the default run's updates


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster():
    """A Ray head with 2 CPUs bound to loopback; everything it started is stopped after."""
    port = _free_port()
    # Short: Ray's unix sockets live under it, and their paths must stay under 108 bytes.
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    head = ["ray", "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}"]
    head += ["--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats"]
    head += [f"--temp-dir={temp}"]
    subprocess.run(head, env=ENV, check=True, capture_output=True, timeout=120)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run(["ray", "stop", "--force"], env=ENV, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def _progress(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "progress.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def test_a_sweep_on_ray_survives_a_killed_worker_and_resumes_its_run(tmp_path, cluster):
    root = tmp_path / "sweep"
    cmd = [sys.executable, str(ROOT / "sweep.py"), *GRID, f"root={root}", "launcher=ray"]
    proc = subprocess.Popen(
        [*cmd, f"ray.address={cluster}"], cwd=ROOT, env=ENV, stdout=subprocess.PIPE, text=True
    )
    victim = root / "gym_Pendulum-v1.objective-erm.seed-0"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        progress = _progress(victim)
        if progress.get("env_steps", 0) > 0 and not progress["finished"]:
            break
        time.sleep(0.2)
    killed_at = _progress(victim)["env_steps"]
    os.kill(int((victim / "worker.pid").read_text()), signal.SIGKILL)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    assert "4 runs: 4 finished" in out
    log = (victim / "train.log").read_text()
    assert "Resuming" in log and f"from step {killed_at}" in log, log
    report = json.loads((root / "report" / "report.json").read_text())
    assert len(report["runs"]) == 4
