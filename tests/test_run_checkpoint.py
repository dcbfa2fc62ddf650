"""A run's checkpoint: assembled without side effects, written after the replay's records, its
chunks retained only once it is written, loaded back into the parts, old layouts read."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mbrl_sam import run_checkpoint
from mbrl_sam.errors import ConfigError
from mbrl_sam.run_checkpoint import Counters
from tests.test_trainer import trainer

PENDULUM = ["task=gym/Pendulum-v1", "planner=none", "steps=1000"]


def collect(t, n: int) -> None:
    if t.collector.agent_steps == 0:
        t.collector.start()
    for _ in range(n):
        t.collector.step()


def files(directory: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in directory.rglob("*")}


def test_the_state_is_assembled_without_writing_or_deleting_anything(tmp_path):
    t = trainer(tmp_path, *PENDULUM, chunk_size=64, capacity=100)
    collect(t, 150)
    t.save()
    collect(t, 150)  # chunks written since, and some the next save's retention would drop
    before = files(tmp_path)
    with pytest.raises(RuntimeError, match="not in chunk files yet"):
        t.checkpoint.state(t)
    assert files(tmp_path) == before
    t.checkpoint.store.flush()
    before = files(tmp_path)
    state = t.checkpoint.state(t)
    assert files(tmp_path) == before
    assert state["counters"]["agent_steps"] == 300 and state["replay"]["total"] == 302


def test_a_save_flushes_the_replay_and_writes_progress_beside_the_checkpoint(tmp_path):
    t = trainer(tmp_path, *PENDULUM, chunk_size=64)
    collect(t, 100)
    t.save()
    chunks = [(c.start, c.end) for c in t.checkpoint.store.files.chunks()]
    assert chunks == [(0, 64), (64, 101)]
    progress = json.loads((tmp_path / "progress.json").read_text())
    assert progress["env_steps"] == 100 and progress["steps"] == 1000
    assert progress["finished"] is False and progress["last_eval"] is None


def test_chunks_are_only_deleted_once_the_new_checkpoint_is_written(tmp_path, monkeypatch):
    t = trainer(tmp_path, *PENDULUM, chunk_size=50, capacity=100)
    collect(t, 300)
    t.save()
    collect(t, 300)
    t.save()  # the checkpoint before this one needs records from 201 on: older ones go
    kept = [c.start for c in t.checkpoint.store.files.chunks()]
    assert kept[0] == 200
    collect(t, 300)

    def disk_full(path, state):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(run_checkpoint, "save_checkpoint", disk_full)
    with pytest.raises(OSError):
        t.save()  # those the last checkpoint written needs are kept, and more
    assert [c.start for c in t.checkpoint.store.files.chunks()][0] == 200


def test_a_resume_restores_every_part(tmp_path):
    t = trainer(tmp_path, *PENDULUM, chunk_size=64)
    collect(t, 250)  # inside the second episode
    t.counters.updates, t.last_eval_return = 7, -123.0
    with torch.no_grad():
        t.agent.world_model.param_groups()["encoder"][0].add_(1.0)  # not as freshly built
    t.save()
    r = trainer(tmp_path, *PENDULUM, chunk_size=64)
    assert r.try_resume()
    assert r.collector.agent_steps == 250 and r.collector.episodes == 1
    assert r.counters.updates == 7 and r.last_eval_return == -123.0
    assert r.collector.last_return == t.collector.last_return
    for key, values in t.replay.records(0, 252).items():
        np.testing.assert_array_equal(r.replay.records(0, 252)[key], values, err_msg=key)
    assert r.collector.rng.bit_generator.state == t.collector.rng.bit_generator.state
    for name, weights in t.agent.state_dict()["wm"].items():
        assert torch.equal(weights, r.agent.state_dict()["wm"][name]), name


def test_a_checkpoint_that_does_not_fit_the_parts_is_a_config_error(tmp_path):
    t = trainer(tmp_path, *PENDULUM, chunk_size=64)
    collect(t, 10)
    t.save()
    other = trainer(tmp_path, *PENDULUM, chunk_size=64, capacity=500)
    with pytest.raises(ConfigError, match="does not fit this config.*capacity"):
        other.try_resume()


def test_a_fresh_start_moves_an_earlier_starts_outputs_aside(tmp_path, capsys):
    (tmp_path / "metrics.jsonl").write_text('{"step": 5}\n')
    assert not trainer(tmp_path, *PENDULUM).try_resume()
    assert "an earlier start's outputs moved to" in capsys.readouterr().out
    assert not (tmp_path / "metrics.jsonl").exists()


def test_counters_read_checkpoints_written_before_they_were_a_dataclass():
    old = {"agent_steps": 7, "updates": 3, "episodes": 1, "last_eval": -1, "last_measure": 2}
    counters = Counters.from_state({**old, "train_seconds": 4.5})
    assert counters == Counters(updates=3, last_eval=None, train_seconds=4.5)
    assert Counters.from_state({**old, "last_eval": 200}).last_eval == 200
