"""launcher=slurm: what can be checked without Slurm (the job's batch script, requeueing, the
start-up error). Submitting and running jobs needs a Slurm cluster and is not tested here."""

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("submitit")

from mbrl_sam.errors import ConfigError  # noqa: E402
from mbrl_sam.sweep.slurm_launcher import SlurmOptions, _TrainJob, sbatch_script  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def test_the_batch_script_carries_every_job_setting():
    options = SlurmOptions(partition="gpu", time_minutes=600, cpus=4, gpus=1, mem_gb=16)
    script = sbatch_script(options, Path("/shared/sweeps/dmc"))
    for line in [
        "#SBATCH --partition=gpu",
        "#SBATCH --time=600",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --mem=16384M",
        "#SBATCH --output=/shared/sweeps/dmc/slurm/%j/%j_0_log.out",
        "#SBATCH --signal=USR2@90",  # submitit's warning before the time limit: requeue
    ]:
        assert line in script, line
    default = sbatch_script(SlurmOptions(), Path("r"))
    assert "--partition" not in default and "--gpus" not in default and "--account" not in default


def test_a_job_asks_to_be_requeued_with_the_same_run():
    job = _TrainJob()
    args = ("train.py", ("task=gym/Pendulum-v1", "seed=0"), "/shared/run")
    again = job.checkpoint(*args)
    assert again.function is job and again.args == args


@pytest.mark.parametrize(
    "field,value", [("time_minutes", 0), ("cpus", 0), ("gpus", -1), ("mem_gb", 0)]
)
def test_bad_job_settings_are_refused(field, value):
    with pytest.raises(ConfigError, match=f"slurm.{field}"):
        SlurmOptions(**{field: value})


def test_sweep_without_slurm_says_so_in_one_line_and_prints_the_job_on_request(tmp_path):
    base = [sys.executable, str(ROOT / "sweep.py"), "suite=dmc_easy", "launcher=slurm"]
    base.append(f"root={tmp_path}")
    proc = subprocess.run(base, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "sbatch" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    shown = subprocess.run(
        [*base, "print_job=true", "slurm.partition=long"], cwd=ROOT, capture_output=True, text=True
    )
    assert shown.returncode == 0 and "#SBATCH --partition=long" in shown.stdout
