"""`train.py seeds=K`: K seeds in one process, each the run a process of its own would train."""

import os
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import train
from agents.run import load_config
from agents.tdmpc_seeds import StackedTDMPC
from mbrl_sam.errors import ConfigError
from mbrl_sam.run_checkpoint import RunCheckpoint
from mbrl_sam.schedules import Clock

# 60 agent steps of learning after the prefill, 2 updates each, an evaluation in between.
ARGS = ["agent=tdmpc", "size=tiny", "task=gym/Pendulum-v1", "objective=sam", "prefill=100"]
ARGS += ["agent.batch_size=16", "train_ratio=128", "agent.catch_up=false", "eval_episodes=1"]
ARGS += ["eval_every=0", "progress=false", "tensorboard=false"]  # one evaluation, at the end


def run(run_dir: Path, *overrides: str) -> dict:
    return train.run(load_config([*ARGS, f"run_dir={run_dir}", *overrides]), run_dir)


def checkpoint(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoint.pt", weights_only=False)


def test_each_seed_trains_as_its_own_run_would_and_writes_a_run_directory(tmp_path):
    run(tmp_path / "group", "seeds=2", "steps=160")  # MPPI acting, 120 updates
    for seed in (0, 1):
        alone = tmp_path / f"alone-{seed}"
        run(alone, f"seed={seed}", "steps=160")
        ours, theirs = checkpoint(tmp_path / "group" / f"seed-{seed}"), checkpoint(alone)
        assert ours["counters"]["updates"] == theirs["counters"]["updates"] == 120
        # Float differences of ~1e-7 from the batched kernels; the learning dynamics amplify
        # them with time (docs/speed.md), so the comparison is kept to a short run.
        for name, value in theirs["agent"]["wm"].items():
            torch.testing.assert_close(ours["agent"]["wm"][name], value, atol=1e-5, rtol=0)
        assert torch.equal(ours["rng"]["torch"], theirs["rng"]["torch"])  # the same draws
        saved = OmegaConf.load(tmp_path / "group" / f"seed-{seed}" / "config.yaml")
        assert (saved.seed, saved.seeds) == (seed, 1)
        for name in ("evals.jsonl", "metrics.jsonl", "progress.json"):
            assert (tmp_path / "group" / f"seed-{seed}" / name).exists()


def test_a_stopped_seed_group_resumes_bit_identical_to_an_uninterrupted_one(tmp_path, monkeypatch):
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    fast = ("planner=none", "steps=140")  # acting by the policy prior: the stop is the point
    run(straight, "seeds=2", *fast)
    original, calls = StackedTDMPC.update, []

    def stop_after_some(self, *args):
        calls.append(1)
        if len(calls) == 30:
            train.STOP.set()  # as SIGTERM would, in the middle of a step's updates
        return original(self, *args)

    monkeypatch.setattr(StackedTDMPC, "update", stop_after_some)
    try:
        with pytest.raises(KeyboardInterrupt):
            run(cut, "seeds=2", *fast, "checkpoint_minutes=1e-6")
    finally:
        train.STOP.clear()
    monkeypatch.setattr(StackedTDMPC, "update", original)
    run(cut, "seeds=2", *fast)
    for seed in (0, 1):
        a, b = checkpoint(straight / f"seed-{seed}"), checkpoint(cut / f"seed-{seed}")
        for part in ("wm", "q_scale"):
            for name, value in (
                a["agent"][part].items() if part == "wm" else [("", a["agent"][part])]
            ):
                other = b["agent"][part][name] if part == "wm" else b["agent"][part]
                assert torch.equal(value, other), (seed, part, name)
        for i, state in a["agent"]["wm_opt"]["adam"]["state"].items():
            assert torch.equal(
                state["exp_avg_sq"], b["agent"]["wm_opt"]["adam"]["state"][i]["exp_avg_sq"]
            )


def test_a_seed_directory_resumes_alone_and_a_group_only_together(tmp_path, capsys):
    group = tmp_path / "group"
    run(group, "seeds=2", "steps=110", "planner=none")
    # One seed of the group, as a run of its own: one save ahead of the other, which the group
    # takes back (its previous checkpoint is the step both hold) ...
    run(group / "seed-1", "seed=1", "steps=120", "planner=none")
    run(group, "seeds=2", "steps=115", "planner=none")
    assert "seed-1: back to its previous checkpoint, at 110 agent steps" in capsys.readouterr().out
    assert list((group / "seed-1" / "stale").glob("*/checkpoint.pt"))
    assert checkpoint(group / "seed-1")["counters"]["agent_steps"] == 115
    # ... two saves ahead, it is refused.
    run(group / "seed-1", "seed=1", "steps=120", "planner=none")
    run(group / "seed-1", "seed=1", "steps=125", "planner=none")
    with pytest.raises(ConfigError, match="different steps"):
        run(group, "seeds=2", "steps=130", "planner=none")


def test_every_seed_of_a_group_saves_at_the_same_steps(tmp_path, monkeypatch):
    reads, saved = [0], {"seed-0": [], "seed-1": []}

    def every_seventh_reading(self: Clock) -> bool:
        reads[0] += 1  # whoever reads it: a clock per seed would be due for one seed at a time
        return reads[0] % 7 == 0

    original = RunCheckpoint.save

    def record(self: RunCheckpoint, trainer) -> None:
        saved[self.run_dir.name].append(trainer.collector.agent_steps)
        original(self, trainer)

    monkeypatch.setattr(Clock, "due", every_seventh_reading)
    monkeypatch.setattr(RunCheckpoint, "save", record)
    run(tmp_path, "seeds=2", "steps=160", "planner=none")
    assert len(saved["seed-0"]) > 5 and saved["seed-0"] == saved["seed-1"]


@pytest.mark.parametrize(
    "killed", ["between the seeds' saves", "in the first save", "with a first save corrupt"]
)
def test_a_group_killed_while_saving_resumes_as_an_uninterrupted_one(tmp_path, killed, capsys):
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    fast = ("planner=none", "steps=200")
    run(straight, "seeds=2", *fast)
    if killed == "between the seeds' saves":
        # Seed 0 wrote its checkpoint at 160, seed 1 not yet: its latest is seed 0's previous.
        run(cut, "seeds=2", "planner=none", "steps=140")
        run(cut, "seeds=2", "planner=none", "steps=160")
        second = cut / "seed-1"
        os.replace(second / "checkpoint.prev.pt", second / "checkpoint.pt")
        expected = "seed-0: back to its previous checkpoint"
    elif killed == "in the first save":
        run(cut, "seeds=2", "planner=none", "steps=140")  # one save each, at the end
        for name in ("checkpoint.pt", "checkpoint.sha256"):
            (cut / "seed-1" / name).unlink()
        expected = "seed-0: starts over with the seeds that have no checkpoint"
    else:
        run(cut, "seeds=2", "planner=none", "steps=140")
        (cut / "seed-1" / "checkpoint.pt").write_bytes(b"not a checkpoint")
        expected = "seed-1: its checkpoint does not load; starts over"
    capsys.readouterr()
    run(cut, "seeds=2", *fast)
    assert expected in capsys.readouterr().out
    for seed in (0, 1):
        a, b = checkpoint(straight / f"seed-{seed}"), checkpoint(cut / f"seed-{seed}")
        assert a["counters"]["updates"] == b["counters"]["updates"]
        for name, value in a["agent"]["wm"].items():
            assert torch.equal(value, b["agent"]["wm"][name]), (seed, name)
        assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])


@pytest.mark.parametrize(
    "overrides,match",
    [
        (["seeds=0"], "seeds=0"),
        (["seeds=2", "agent=dreamer"], "seeds=2 is not valid for agent=dreamer"),
        (["seeds=2", "agent.compile=true"], "agent.compile=true is not valid with seeds=2"),
    ],
)
def test_bad_seed_settings_are_refused_in_one_line(tmp_path, overrides, match):
    with pytest.raises(ConfigError, match=match) as err:
        run(tmp_path, *overrides)
    assert "\n" not in str(err.value)
