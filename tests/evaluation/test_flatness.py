"""Flatness measurements during a real run and on its checkpoint (measure.py)."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import measure
import train
from agents import make_agent
from agents.run import load_config
from envs import make_env
from mbrl_sam.errors import ConfigError
from mbrl_sam.evaluation import flatness
from mbrl_sam.evaluation.flatness import MeasureConfig, measure_all, sharpness_measures
from mbrl_sam.evaluation.report import write_report
from mbrl_sam.progress import INTERVAL_VARIABLE
from mbrl_sam.runtime import matmul_precision
from tests.agents.test_tdmpc import agent as tdmpc_agent
from tests.agents.test_tdmpc import random_batch
from tests.test_runtime import bf16_products_here

ROOT = Path(__file__).resolve().parents[2]
MEASURE = ["measure.lanczos_steps=4", "measure.trace_samples=2", "measure.horizon=3"]


def test_measurements_during_training_and_on_the_checkpoint(tmp_path):
    cfg = load_config(
        [
            "task=gym/Pendulum-v1",
            "agent=tdmpc",
            "size=tiny",
            "agent.batch_size=16",
            "train_ratio=32",
            "steps=400",
            "prefill=200",
            "eval_every=0",
            "progress=false",
            "measure.every=50",
            *MEASURE,
            f"run_dir={tmp_path}",
        ]
    )
    train.run(cfg, tmp_path)
    records = [json.loads(x) for x in (tmp_path / "measure.jsonl").read_text().splitlines()]
    assert len(records) >= 2
    flat = records[-1]["flat"]
    for key in (
        "sharpness/top_eigenvalue",
        "sharpness/trace",
        "sharpness/sam_sharpness",
        "sharpness/preconditioned_sharpness",
        "value_gap/rmse",
        "model_error/latent_mse_3",
        "performance_gap/gap",
    ):
        assert key in flat and np.isfinite(flat[key]), key
    # Lanczos steps for the plain and the preconditioned eigenvalue, plus the trace probes.
    assert flat["sharpness/hvps"] == 4 + 4 + 2
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert "measure/sharpness/top_eigenvalue" in acc.Tags()["scalars"]
    # The hook's state rides in the checkpoint: a resumed run measures the same batch.
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["flatness"]
    assert saved["probe_batch"]["obs"].shape[:2] == (16, 4) and saved["last_measure"] >= 50

    proc = subprocess.run(
        [sys.executable, str(ROOT / "measure.py"), f"run_dir={tmp_path}", "lanczos_steps=4"]
        + ["trace_samples=2", "horizon=3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(next((tmp_path / "measure").glob("step_*.json")).read_text())
    assert result["task"] == "gym/Pendulum-v1" and result["env_steps"] == 400
    # The checkpoint kept the run's probe batch, so the sharpness is measured on the same data.
    assert np.isfinite(result["flat"]["sharpness/top_eigenvalue"])

    # The report gains the flatness columns (eval_every=0: the final evaluation only).
    report = write_report([tmp_path], tmp_path / "report", reps=50)
    row = report["measures"]["gym/Pendulum-v1"]["tdmpc-sam"]
    assert row["sharpness/top_eigenvalue"] == result["flat"]["sharpness/top_eigenvalue"]
    assert "Flatness at the last measurement" in (tmp_path / "report" / "report.md").read_text()


def test_measure_rejects_unknown_options():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "measure.py"), "run_dir=x", "lanczos=3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "lanczos" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.skipif(not bf16_products_here(), reason="this CPU has no bfloat16 matmul support")
def test_sharpness_is_measured_in_float32_whatever_the_run_trains_with():
    agent, batch = tdmpc_agent(), random_batch(16)
    mcfg = MeasureConfig(lanczos_steps=4, trace_samples=2)
    measured = {}
    for precision in ("highest", "medium"):
        with matmul_precision(precision):
            measured[precision] = sharpness_measures(agent, batch, mcfg)
            assert torch.get_float32_matmul_precision() == precision  # restored after
    for key in ("top_eigenvalue", "trace", "sam_sharpness"):
        assert measured["medium"][key] == pytest.approx(measured["highest"][key], rel=1e-5), key


def test_measurement_cost_is_bounded_and_shown(capsys, monkeypatch):
    monkeypatch.setenv(INTERVAL_VARIABLE, "0")  # off a terminal: a line at every update
    env = make_env("gym/Pendulum-v1")  # 200-step episodes
    torch.manual_seed(0)
    agent = make_agent(load_config(["agent=tdmpc", "size=tiny"]), env.spec, "cpu")
    rng = np.random.default_rng(0)
    batch = {
        "obs": torch.as_tensor(rng.standard_normal((8, 4, 3)), dtype=torch.float32),
        "action": torch.as_tensor(rng.uniform(-1, 1, (8, 4, 1)), dtype=torch.float32),
        "reward": torch.as_tensor(rng.standard_normal((8, 4)), dtype=torch.float32),
        "is_first": torch.zeros((8, 4), dtype=torch.bool),
        "is_terminal": torch.zeros((8, 4), dtype=torch.bool),
    }
    mcfg = MeasureConfig(
        lanczos_steps=3, trace_samples=2, episodes=2, horizon=3, max_episode_steps=12
    )
    seen = []

    def on_part(parts):
        seen.append({stage: len(part.get("lengths", ())) for stage, part in parts.items()})

    result = measure_all(agent, batch, env, mcfg, seed=0, progress=True, on_part=on_part)
    env.close()
    assert result["value_gap"]["lengths"] == [12, 12]
    assert result["model_error"]["lengths"] == [12, 12]
    assert np.isfinite(result["flat"]["model_error/reward_abs_3"])
    # Each stage, and each episode within one, is handed over as it finishes.
    assert seen == [
        {"sharpness": 0},
        {"sharpness": 0, "value_gap": 1},
        {"sharpness": 0, "value_gap": 2},
        {"sharpness": 0, "value_gap": 2, "model_error": 1},
        {"sharpness": 0, "value_gap": 2, "model_error": 2},
    ]
    lines = capsys.readouterr().err.splitlines()
    assert "\r" not in "".join(lines)
    # No optimizer state yet: the top eigenvalue's Lanczos steps and the trace probes.
    assert any(x.startswith("sharpness: 100%") and "5/5 [" in x and "hvp/s" in x for x in lines)
    for stage in ("value gap", "model error"):
        assert any(x.startswith(f"{stage}:") and "12/24" in x for x in lines), stage
        assert any(x.startswith(f"{stage}: 100%") and "episode=2/2" in x for x in lines), stage

    with pytest.raises(ConfigError, match="measure.max_episode_steps=15 is not valid"):
        MeasureConfig(horizon=15, max_episode_steps=15)
    with pytest.raises(ConfigError, match="leaves 3 agent steps at action_repeat=2"):
        MeasureConfig(horizon=3, max_episode_steps=7).episode_limit(2)


def exit_status(main) -> int | str | None:
    """A script's main()'s exit status, run in this process; Ctrl-C escaping it fails the test
    (not the whole session), and the SIGTERM handler it installs is put back."""
    handler = signal.getsignal(signal.SIGTERM)
    try:
        main()
    except SystemExit as stop:
        return stop.code
    except KeyboardInterrupt:
        pytest.fail("the interruption escaped main() with a traceback")
    finally:
        signal.signal(signal.SIGTERM, handler)
    return 0


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A tiny TD-MPC run on Pendulum with a checkpoint, evaluated once at the end."""
    run_dir = tmp_path_factory.mktemp("tiny_run")
    overrides = ["task=gym/Pendulum-v1", "agent=tdmpc", "size=tiny", "agent.batch_size=8"]
    overrides += ["train_ratio=32", "steps=220", "prefill=200", "eval_every=0"]
    overrides += ["eval_episodes=1", "progress=false", "tensorboard=false"]
    train.run(load_config([*overrides, f"run_dir={run_dir}"]), run_dir)
    return run_dir


def test_an_interrupted_measure_keeps_the_stages_it_finished(tiny_run, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C while the model error's episodes play

    monkeypatch.setattr(flatness, "measure_model_error", interrupted)
    args = ["lanczos_steps=2", "trace_samples=1", "horizon=3", "max_episode_steps=20"]
    monkeypatch.setattr(sys, "argv", ["measure.py", f"run_dir={tiny_run}", *args])
    assert exit_status(measure.main) == 130
    result = json.loads((tiny_run / "measure" / "step_220.json").read_text())
    assert result["complete"] is False and result["env_steps"] == 220
    assert result["note"].startswith("interrupted (Ctrl-C or SIGTERM); finished: sharpness")
    assert result["value_gap"]["lengths"] == [20] and "model_error" not in result
    assert np.isfinite(result["flat"]["sharpness/top_eigenvalue"])
    assert np.isfinite(result["flat"]["value_gap/rmse"])
    assert result["settings"]["max_episode_steps"] == 20
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("Interrupted: kept sharpness, value_gap in ")
    assert "Traceback" not in err


def test_sigterm_stops_measure_with_what_it_finished(tiny_run, tmp_path):
    out = tiny_run / "measure" / "step_220.json"
    out.unlink(missing_ok=True)
    args = ["lanczos_steps=2", "trace_samples=1", "horizon=3", "episodes=20"]
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "measure.py"), f"run_dir={tiny_run}", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not out.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)  # the first stage is written as soon as it is finished
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    result = json.loads(out.read_text())
    assert result["complete"] is False and result["note"].startswith("interrupted")
    assert "sharpness" in result and len(result.get("value_gap", {}).get("lengths", [])) < 20
    assert "Interrupted: kept sharpness" in err and "Traceback" not in err
