"""Tests for atomic checkpoint files and RNG state capture/restore."""

import errno
import random
import subprocess
from contextlib import suppress

import numpy as np
import pytest
import torch

from mbrl_sam.checkpoint import (
    CHECKPOINT,
    all_finite,
    isolated_rng,
    load_checkpoint,
    load_latest,
    remove_stale_temp,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from mbrl_sam.errors import ConfigError, RunError


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("simulated failure mid-write")


def _state(value: float) -> dict:
    return {
        "model": {"w": torch.full((64, 64), value)},
        "array": np.arange(10) * value,
        "step": int(value),
        "nested": {"name": "run", "list": [1, 2.5, None]},
    }


def test_round_trip(tmp_path):
    path = tmp_path / "sub" / "ckpt.pt"
    state = _state(3.0)
    save_checkpoint(path, state)
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["model"]["w"], state["model"]["w"])
    np.testing.assert_array_equal(loaded["array"], state["array"])
    assert loaded["step"] == 3 and loaded["nested"] == state["nested"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["ckpt.pt", "ckpt.sha256"]


def test_overwrite_replaces_whole_file(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, _state(1.0))
    save_checkpoint(path, _state(2.0))
    assert load_checkpoint(path)["step"] == 2
    assert load_checkpoint(tmp_path / "ckpt.prev.pt")["step"] == 1
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["ckpt.prev.pt", "ckpt.pt", "ckpt.sha256"]


def test_failed_save_keeps_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, _state(1.0))
    before = path.read_bytes()
    # Pickling fails inside torch.save, after the temp file was created and opened.
    bad = {"model": {"w": torch.randn(256, 256)}, "oops": _Unpicklable()}
    with pytest.raises(RuntimeError, match="simulated failure"):
        save_checkpoint(path, bad)
    assert path.read_bytes() == before
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt", "ckpt.sha256"]


def test_truncated_file_raises_config_error(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, _state(1.0))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match="ckpt.pt"):
        load_checkpoint(path)


def test_missing_file_raises_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_checkpoint(tmp_path / "absent.pt")


def _draws() -> tuple:
    return (
        [random.random() for _ in range(3)],
        np.random.rand(3).tolist(),
        torch.rand(3).tolist(),
    )


def test_rng_state_reproduces_draws(tmp_path):
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    _draws()
    state = rng_state()
    expected = _draws()
    _draws()  # move every generator on so a no-op restore would fail
    set_rng_state(state)
    assert _draws() == expected

    # The state also survives a trip through a checkpoint file.
    save_checkpoint(tmp_path / "rng.pt", {"rng": state})
    set_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert _draws() == expected


def _flip(path, at: int, n: int = 64) -> None:
    data = bytearray(path.read_bytes())
    data[at : at + n] = bytes(b ^ 0xFF for b in data[at : at + n])
    path.write_bytes(bytes(data))


def test_flipped_bytes_inside_a_tensor_are_caught_by_the_checksum(tmp_path):
    path = tmp_path / CHECKPOINT
    save_checkpoint(path, _state(1.0))
    # Deep inside the 64x64 weight's bytes: torch.load alone reads them without complaint.
    _flip(path, len(path.read_bytes()) // 2)
    with pytest.raises(ConfigError, match="SHA-256 does not match"):
        load_checkpoint(path)


def test_a_corrupt_latest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    path = tmp_path / CHECKPOINT
    save_checkpoint(path, _state(1.0))
    save_checkpoint(path, _state(2.0))
    state, note = load_latest(tmp_path)
    assert state["step"] == 2 and note == ""
    _flip(path, 100)
    state, note = load_latest(tmp_path)
    assert state["step"] == 1 and "SHA-256" in note and "checkpoint.prev.pt" in note
    _flip(tmp_path / "checkpoint.prev.pt", 100)
    with pytest.raises(ConfigError, match="checkpoint.prev.pt"):
        load_latest(tmp_path)


@pytest.mark.parametrize("cut", range(4))
def test_a_kill_between_any_two_steps_of_a_write_leaves_a_verified_checkpoint(
    tmp_path, monkeypatch, cut
):
    """Kill the third save at its `cut`-th rename (listing, latest aside, new in place), twice
    in a row, and save again: every state in between loads, verified, at a step saved."""
    path = tmp_path / CHECKPOINT
    save_checkpoint(path, _state(1.0))
    save_checkpoint(path, _state(2.0))
    real_replace = __import__("os").replace
    calls = []

    def die_at_the_cut(src, dst):
        calls.append(dst)
        if len(calls) > cut:
            raise KeyboardInterrupt  # as SIGKILL between two steps
        real_replace(src, dst)

    for step in (3.0, 4.0):
        calls.clear()
        with monkeypatch.context() as mp, suppress(KeyboardInterrupt):
            mp.setattr("mbrl_sam.checkpoint.os.replace", die_at_the_cut)
            save_checkpoint(path, _state(step))
        remove_stale_temp(tmp_path)
        state, note = load_latest(tmp_path)  # never a corrupt one
        assert state["step"] in (2, 3, 4) and ("missing" in note or note == "")
    save_checkpoint(path, _state(5.0))
    state, note = load_latest(tmp_path)
    assert state["step"] == 5 and note == ""


def test_stale_temp_files_are_removed(tmp_path):
    for name in (".checkpoint.pt.abc123.tmp", ".checkpoint.sha256.tmp", "metrics.jsonl.tmp"):
        (tmp_path / name).write_bytes(b"x" * 100)
    (tmp_path / "keep.txt").write_text("mine")
    assert len(remove_stale_temp(tmp_path)) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def _small_tmpfs(where) -> bool:
    where.mkdir()
    cmd = ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where)]
    return subprocess.run(cmd, capture_output=True).returncode == 0


def test_a_full_disk_says_so_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    disk = tmp_path / "disk"
    mounted = _small_tmpfs(disk)
    try:
        path = disk / CHECKPOINT
        save_checkpoint(path, _state(1.0))  # ~20 kB
        big = {"w": torch.zeros(200_000)}  # 800 kB: more than the 256 kB disk
        if not mounted:  # no permission to mount: the same error from a patched write
            real_save = torch.save

            def full(obj, f):
                real_save(obj, f)
                raise OSError(errno.ENOSPC, "No space left on device")

            monkeypatch.setattr("mbrl_sam.checkpoint.torch.save", full)
        with pytest.raises(RunError, match="no space left on device") as err:
            save_checkpoint(path, big)
        assert str(path) in str(err.value)
        assert load_checkpoint(path)["step"] == 1
        assert not list(disk.glob(".*.tmp"))
    finally:
        if mounted:
            subprocess.run(["umount", str(disk)], check=True)


def test_isolated_rng_gives_seeded_draws_and_puts_every_generator_back():
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    expected = _draws()
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    with isolated_rng(5):
        inside = _draws()
    with isolated_rng(5):
        assert _draws() == inside
    assert _draws() == expected


def test_all_finite_looks_into_nested_states():
    ok = {"a": torch.ones(3), "b": [torch.zeros(2), {"c": torch.arange(3)}], "n": 1.0}
    assert all_finite(ok)
    ok["b"][1]["d"] = torch.tensor([1.0, float("nan")])
    assert not all_finite(ok)
