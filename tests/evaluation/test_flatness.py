"""Flatness measurements during a real run and on its checkpoint (measure.py)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import train
from agents.run import load_config
from mbrl_sam.evaluation.flatness import MeasureConfig, sharpness_measures
from mbrl_sam.evaluation.report import write_report
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
