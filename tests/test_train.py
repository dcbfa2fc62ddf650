"""End-to-end: short real training runs, stop-and-resume, and start-up errors of train.py."""

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import train
from agents import AGENTS
from agents.run import load_config
from mbrl_sam.checkpoint import load_latest

ROOT = Path(__file__).resolve().parent.parent
FAST = [
    "agent=dreamer",
    "size=tiny",
    "agent.batch_size=4",
    "agent.batch_length=16",
    "train_ratio=32",
    "agent.behavior.horizon=5",
    "eval_episodes=1",
    "log_every=100",
    "progress=false",
]


TDMPC_FAST = [
    "agent=tdmpc",
    "size=tiny",
    "agent.batch_size=16",
    "train_ratio=16",
    "eval_episodes=1",
    "log_every=100",
    "progress=false",
]


def config(tmp_path: Path, *overrides: str):
    fast = TDMPC_FAST if "agent=tdmpc" in overrides else FAST
    return load_config([*fast, f"run_dir={tmp_path}", *overrides])


def scalars(run_dir: Path) -> dict[str, list[float]]:
    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.mark.parametrize(
    "task,obs,steps,prefill,precision",
    [
        # A DMC episode is 1000 env steps; the long prefill keeps the updates few.
        ("dmc/cartpole-swingup", "state", 1200, 800, "highest"),
        ("dmc/cartpole-swingup", "pixels", 1100, 900, "highest"),
        ("gym/CartPole-v1", "state", 500, 200, "medium"),
    ],
)
def test_short_run_writes_logs_and_checkpoint(tmp_path, task, obs, steps, prefill, precision):
    overrides = [f"task={task}", f"obs={obs}", f"steps={steps}", f"prefill={prefill}"]
    overrides.append(f"matmul_precision={precision}")
    cfg = config(tmp_path, *overrides, "eval_every=2000")  # evaluated at 0 and at the end
    result = train.run(cfg, tmp_path)
    assert torch.get_float32_matmul_precision() == "highest"  # the caller's, restored
    assert np.isfinite(result["eval_return"])
    assert (tmp_path / "checkpoint.pt").exists() and (tmp_path / "config.yaml").exists()
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    tags = scalars(tmp_path)
    for tag in (
        "train/model/loss",
        "train/model/grad_norm",
        "train/model/sharpness",
        "eval/return",
    ):
        assert tag in tags, (tag, sorted(tags))
    assert all(np.isfinite(tags["train/model/loss"]))
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any("episode/return" in x for x in lines) and any("eval/return" in x for x in lines)


@pytest.mark.parametrize(
    "task,steps,planner,precision",
    [("dmc/cartpole-swingup", 600, "mppi", "highest"), ("gym/Pendulum-v1", 400, "cem", "medium")],
)
def test_tdmpc_short_run_with_sam_on_a_subset(tmp_path, task, steps, planner, precision):
    cfg = config(
        tmp_path,
        f"matmul_precision={precision}",
        "agent=tdmpc",
        f"task={task}",
        f"steps={steps}",
        "prefill=200",
        f"planner={planner}",
        "objective=sam",
        "objective.perturb=encoder+dynamics",
    )
    result = train.run(cfg, tmp_path)
    assert np.isfinite(result["eval_return"])
    # Saved with the run, so evaluate.py and measure.py act as it trained.
    assert f"matmul_precision: {precision}" in (tmp_path / "config.yaml").read_text()
    tags = scalars(tmp_path)
    for tag in ("train/model/loss", "train/model/sharpness", "train/policy/pi_loss", "eval/return"):
        assert tag in tags, (tag, sorted(tags))
    assert all(np.isfinite(tags["train/model/consistency_loss"]))
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["counters"]["updates"] > 0


def assert_same_tree(a, b, path: str = "") -> None:
    """Nested dicts/lists of tensors, arrays and plain values are exactly equal."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_same_tree(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tree(x, y, f"{path}/{i}")
    elif isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=path)
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=path)
    else:
        assert a == b, path


def assert_same_state(a: dict, b: dict) -> None:
    assert a["counters"] == b["counters"]
    np.testing.assert_equal(a["last_returns"], b["last_returns"])  # NaN before any episode ends
    assert a["replay"]["total"] == b["replay"]["total"]
    for key, value in a["replay_data"].items():
        np.testing.assert_array_equal(value, b["replay_data"][key])
    # Weights, optimizer moments and step counts, Q scale: everything the agent saves.
    assert_same_tree(a["agent"], b["agent"], "agent")


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_stop_and_resume_restores_everything(tmp_path, monkeypatch, name):
    from mbrl_sam import trainer as trainer_module

    saved, loaded = {}, {}
    original_save = trainer_module.Trainer.save
    original_resume = trainer_module.Trainer.try_resume

    def buffer(replay):
        return {key: array[: len(replay)].copy() for key, array in replay._data.items()}

    def save_and_capture(self):
        original_save(self)
        saved["state"] = torch.load(self.checkpoint.path, weights_only=False)
        saved["state"]["replay_data"] = buffer(self.replay)

    def resume_and_capture(self):
        resumed = original_resume(self)
        state = copy.deepcopy(self.checkpoint.state(self))
        loaded["state"] = {**state, "replay_data": buffer(self.replay)}
        return resumed

    monkeypatch.setattr(trainer_module.Trainer, "save", save_and_capture)
    monkeypatch.setattr(trainer_module.Trainer, "try_resume", resume_and_capture)
    agent_args = [f"agent={name}", "size=tiny", "agent.batch_size=4", "train_ratio=16"]
    agent_args += ["task=gym/Pendulum-v1", "steps=400", "prefill=150", "eval_episodes=1"]
    agent_args += ["log_every=100", "progress=false", f"run_dir={tmp_path}"]
    cfg = load_config(agent_args)
    train.run(cfg, tmp_path)
    before = saved["state"]
    first_steps = before["counters"]["agent_steps"]
    repeat = 2 if cfg.task.startswith("dmc/") else 1  # the suites' default action repeats
    assert first_steps == cfg.steps // repeat and before["counters"]["updates"] > 0

    # Rerun into the same run_dir with a larger budget: it continues from the checkpoint.
    more = [a for a in agent_args if not a.startswith("steps=")] + [f"steps={cfg.steps * 3 // 2}"]
    cfg = load_config(more)
    train.run(cfg, tmp_path)
    assert_same_state(before, loaded["state"])
    after = saved["state"]
    assert after["counters"]["agent_steps"] == first_steps * 3 // 2
    assert after["counters"]["updates"] > before["counters"]["updates"]
    assert after["replay"]["total"] > before["replay"]["total"]
    # Training time adds up over the resume; the eval log carries it for the report.
    hours = [json.loads(x)["hours"] for x in (tmp_path / "evals.jsonl").read_text().splitlines()]
    assert hours[0] >= 0 and hours == sorted(hours)
    assert 0 < before["counters"]["train_seconds"] < after["counters"]["train_seconds"]
    seconds = [3600 * h for h in hours]
    assert before["counters"]["train_seconds"] <= seconds[-1] <= after["counters"]["train_seconds"]
    # Rerunning a finished run trains no more and returns its last evaluation.
    last = json.loads((tmp_path / "evals.jsonl").read_text().splitlines()[-1])
    result = train.run(cfg, tmp_path)
    assert result["eval_return"] == pytest.approx(np.mean(last["returns"]))
    assert saved["state"]["counters"]["agent_steps"] == after["counters"]["agent_steps"]


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    args = [*FAST, "task=gym/CartPole-v1", "steps=1500", "prefill=100", "train_ratio=8"]
    args.append(f"run_dir={tmp_path}")
    args.append("checkpoint_minutes=0.005")
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT)
    checkpoint = tmp_path / "checkpoint.pt"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        if checkpoint.exists() and checkpoint.stat().st_size > 0:
            time.sleep(1.5)
            break
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # A kill inside a write can leave only the previous checkpoint (checkpoint.prev.pt).
    state, _ = load_latest(tmp_path)
    assert state is not None, "no checkpoint was written before the kill"
    stopped_at = state["counters"]["agent_steps"]
    assert 0 < stopped_at < 1500
    proc = run_cli(*args[:-1], "checkpoint_minutes=10")
    assert proc.returncode == 0, proc.stderr
    assert "Resuming" in proc.stdout
    final = torch.load(checkpoint, weights_only=False)
    assert final["counters"]["agent_steps"] == 1500
    # The stretch redone after the resume appears once in the logs, not twice.
    steps: dict[str, list[int]] = {}
    for line in (tmp_path / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        for key in record.keys() - {"step", "time"}:
            steps.setdefault(key, []).append(record["step"])
    assert steps and all(s == sorted(set(s)) for s in steps.values()), steps


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_saves_a_checkpoint_and_exits_quietly(tmp_path, sig):
    args = [*FAST, "task=gym/CartPole-v1", "steps=100000", "prefill=100", f"run_dir={tmp_path}"]
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = tmp_path / "metrics.jsonl"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not (metrics.exists() and metrics.stat().st_size):
        time.sleep(0.2)
    time.sleep(2.0)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Interrupted: checkpoint saved" in out and "Traceback" not in err
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert 0 < state["counters"]["agent_steps"] < 100000


def test_a_stop_request_whose_interrupt_was_lost_still_stops_with_a_checkpoint(
    tmp_path, monkeypatch
):
    from mbrl_sam import trainer as trainer_module

    # As if SIGTERM set train.STOP but its KeyboardInterrupt was swallowed mid-update.
    original_train = trainer_module.Trainer._update

    def train_then_request_stop(self):
        yield from original_train(self)
        if self.counters.updates >= 3:
            train.STOP.set()

    monkeypatch.setattr(trainer_module.Trainer, "_update", train_then_request_stop)
    cfg = config(tmp_path, "task=gym/CartPole-v1", "steps=5000", "prefill=100")
    try:
        with pytest.raises(KeyboardInterrupt):
            train.run(cfg, tmp_path)
    finally:
        train.STOP.clear()
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["counters"]["updates"] >= 3 and 0 < state["counters"]["agent_steps"] < 5000


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,  # generous: a loaded machine can be several times slower
    )


@pytest.mark.parametrize(
    "args,expected",
    [
        (["task=nosuch/x"], ["nosuch", "dmc", "gym"]),
        (["task=dmc/walker-fly"], ["walker-fly", "walker-walk"]),
        (["objective.rho=0"], ["rho", "0"]),
        (["train_ratio=-1"], ["train_ratio", "-1"]),
        (["objective=nosuch"], ["nosuch", "sam", "erm"]),
        (["size=XL"], ["XL", "tiny"]),
        (["obs=depth"], ["depth", "pixels"]),
        (["matmul_precision=low"], ["low", "highest", "medium"]),
    ],
)
def test_bad_values_fail_at_startup_with_clear_message(tmp_path, args, expected):
    proc = run_cli(*args, f"run_dir={tmp_path / 'run'}", "steps=10")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    for word in expected:
        assert word in proc.stderr, (word, proc.stderr)


def test_unreadable_checkpoint_fails_at_startup(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    proc = run_cli(f"run_dir={tmp_path}", "steps=10", "task=gym/Pendulum-v1")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "checkpoint.pt" in proc.stderr


def test_time_limit_stops_early_with_an_evaluation_and_a_checkpoint(tmp_path):
    cfg = config(tmp_path, "task=gym/CartPole-v1", "steps=100000", "prefill=100")
    cfg.time_limit_minutes = 0.1
    start = time.monotonic()
    result = train.run(cfg, tmp_path)
    assert time.monotonic() - start < 120
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    steps = state["counters"]["agent_steps"]
    assert 0 < steps < 100000 and np.isfinite(result["eval_return"])
    last = [json.loads(x) for x in (tmp_path / "evals.jsonl").read_text().splitlines()][-1]
    assert last["step"] == steps  # evaluated where it stopped
