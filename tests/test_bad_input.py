"""Every bad value of train.py ends at start-up in one line, `error: ...`, naming the key, the value
and what is valid, with exit code 2: before Hydra makes the run directory, before anything is
built (issue 21)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import train
from agents import AGENTS, make_agent
from agents.run import load_config, validate_config
from mbrl_sam.environment import EnvSpec
from mbrl_sam.errors import ConfigError
from mbrl_sam.registry import agent_entry, world_model_groups
from mbrl_sam.runtime import check_run_dir, resolve_device

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory no one can write in. Root ignores permission bits (for root a chmod 555
    directory is writable, and os.access says so truthfully), so as root this mounts a read-only
    tmpfs there, the case tested being a read-only file system; as anyone else chmod 555."""
    path = tmp_path / "read-only"
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    mount = ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path)]
    proc = subprocess.run(mount, capture_output=True, text=True)
    if proc.returncode:
        pytest.skip(f"cannot mount a read-only tmpfs here: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def startup_error(capsys, *argv: str) -> str:
    """The one line train.py's start-up check prints for `argv`; fails unless it exits with 2."""
    with pytest.raises(SystemExit) as exit_:
        train.check_overrides(list(argv))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize(
    "args, words",
    [
        (["agent.model_opt.lr=abc"], ["agent.model_opt.lr='abc'", "Float"]),
        (["agent.model_opt.lr=-1"], ["agent.model_opt.lr=-1.0", "> 0"]),
        (["objective.start_step=abc"], ["objective.start_step='abc'", "Integer"]),
        (["agent=dreamer", "agent.model_opt.lr=abc"], ["agent.model_opt.lr='abc'"]),
        (["agent=dreamer", "agent.model_opt.eps=-1"], ["agent.model_opt.eps=-1.0", "> 0"]),
        (["measure.groups=foo"], ["measure.groups='foo'", "tdmpc", "encoder, dynamics"]),
        (["agent=dreamer", "measure.groups=value"], ["measure.groups='value'", "decoder"]),
        (["measure.groups=encoder+"], ["measure.groups='encoder+'", "''"]),
        (["objective.perturb=encoder+foo"], ["objective.perturb='encoder+foo'", "'foo'"]),
        (["device=cpu:1"], ["device='cpu:1'", "auto, cpu, cuda, cuda:N, mps"]),
        (["device=cuda:x"], ["device='cuda:x'", "cuda:N"]),
        (["steps=-5"], ["steps=-5", "integer >= 1"]),
        (["threads=0"], ["threads=0", "integer >= 1"]),
        (["task=dmc/nosuch"], ["task='dmc/nosuch'", "walker-walk"]),
    ],
)
def test_bad_values_fail_before_hydra_in_one_line(capsys, tmp_path, args, words):
    err = startup_error(capsys, *args, f"run_dir={tmp_path / 'run'}")
    for word in words:
        assert word in err, (word, err)
    assert not (tmp_path / "run").exists()


def test_bad_run_dirs_fail_before_hydra_in_one_line(capsys, tmp_path, read_only_dir):
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    cases = [
        ("run_dir=", "run_dir='' is not valid; give a directory"),
        ("run_dir=' '", "run_dir=' ' is not valid; give a directory"),
        (f"run_dir={afile}", "it is a file, not a directory"),
        (f"run_dir={afile}/sub/deeper", f"{afile} is a file, not a directory"),
        ("run_dir=${nosuch}", "run_dir is not valid"),
        (f"run_dir={read_only_dir}", "it is not writable"),  # an existing, read-only run dir
        (f"run_dir={read_only_dir}/sub", f"its parent {read_only_dir} is not writable"),
    ]
    for arg, message in cases:
        assert message in startup_error(capsys, arg), arg


def test_a_directory_that_only_a_real_write_finds_unwritable_is_refused(tmp_path, monkeypatch):
    # os.access says yes, the write fails (an NFS server's root squash, a FUSE mount's own rules)
    def refuse(**kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("mbrl_sam.runtime.tempfile.mkdtemp", refuse)
    with pytest.raises(ConfigError, match="its parent .* is not writable .permission denied."):
        check_run_dir(tmp_path / "run")


def test_writable_run_dirs_pass_and_the_check_leaves_nothing_behind(tmp_path):
    (tmp_path / "existing").mkdir()
    for path in (tmp_path / "existing", tmp_path / "new" / "deeper", Path("relative-new")):
        check_run_dir(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]
    assert list((tmp_path / "existing").iterdir()) == []


@pytest.mark.parametrize("name", ["cpu:1", "cpu:0", "mps:0", "cuda:-1", "gpu", ""])
def test_device_names_other_than_the_documented_ones_are_refused(name):
    with pytest.raises(ConfigError, match="choose one of: auto, cpu, cuda, cuda:N, mps"):
        resolve_device(name)
    cfg = load_config([f"device={name}"]) if name else load_config(["device=''"])
    with pytest.raises(ConfigError, match="device="):
        validate_config(cfg, Path("/nonexistent"))


SPEC = EnvSpec((5,), np.float32, 2, False, 2, episode_length=500)


@pytest.mark.parametrize(
    "overrides",
    [[f"agent={name}"] for name in sorted(AGENTS)]
    + [["agent=tdmpc", "agent.model.episodic=true"], ["agent=storm", "agent.model.cpc_steps=4"]],
)
def test_the_start_up_group_names_are_the_built_agents(overrides):
    cfg = load_config([*overrides, "size=tiny"])
    run = validate_config(cfg, Path("/nonexistent"))
    names = world_model_groups(agent_entry(run.agent.name), run.agent, run.obs)
    agent = make_agent(cfg, SPEC, torch.device("cpu"))
    assert names == list(agent.world_model.param_groups())
    assert ("termination" in names) == ("agent.model.episodic=true" in overrides)
    assert ("cpc" in names) == ("agent.model.cpc_steps=4" in overrides)


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "steps=10", "progress=false", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,  # generous: a loaded machine can be several times slower
    )


def test_train_py_refuses_bad_values_in_one_line_without_training(tmp_path, read_only_dir):
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    cases = [
        # Each of these trained (exit 0) or ended in a traceback before.
        (["run_dir="], "run_dir='' is not valid"),
        ([f"run_dir={afile}"], "it is a file, not a directory"),
        ([f"run_dir={read_only_dir}"], "it is not writable"),
        (["measure.groups=foo"], "measure.groups='foo' is not valid for agent=tdmpc"),
        (["device=cpu:1"], "device='cpu:1' is not valid"),
    ]
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    for args in cases:
        run_dir = [] if args[0][0].startswith("run_dir=") else [f"run_dir={tmp_path / 'run'}"]
        proc = run_cli(*args[0], *run_dir, cwd=cwd)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
        assert args[1] in proc.stderr, (args, proc.stderr)
        assert proc.stdout == ""
    assert list(cwd.iterdir()) == [] and not (tmp_path / "run").exists()
