"""Train an agent: `python train.py agent=dreamer task=dmc/walker-walk objective=sam size=S`."""

from __future__ import annotations

import signal
import sys
import traceback
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from mbrl_sam.errors import ConfigError, RunError, is_disk_full
from mbrl_sam.stop import StopSignal

# Set by SIGTERM and SIGINT. During start-up a signal interrupts at once; while training, the
# trainer stops at its next safe point (between updates and steps) and writes a checkpoint, so
# no signal, however many and however timed, can cut an update or a checkpoint write short.
STOP = StopSignal()


def _interrupt(signum: int, frame: object) -> None:
    STOP.request(signal.Signals(signum).name)


def run(cfg: DictConfig, run_dir: Path) -> dict[str, float]:
    """Validate the config, build everything, resume if asked, and train."""
    from agents.run import validate_config
    from mbrl_sam.runtime import apply_threads, matmul_precision, resolve_device, tune_allocator

    STOP.training = False
    typed = validate_config(cfg, run_dir)
    tune_allocator()
    device = resolve_device(typed.device)
    apply_threads(typed.threads)
    if typed.seeds > 1:
        return run_seed_group(cfg, typed, run_dir, device)
    trainer, resumed, envs = build_run(cfg, typed, run_dir, device)
    announce(trainer, typed, device, run_dir, resumed)
    with matmul_precision(typed.matmul_precision):
        result = trainer.run()
        record_in_study(trainer, cfg, typed, run_dir)
    for env in envs:
        env.close()
    print(f"Done: {trainer.env_steps} env steps, eval return {result['eval_return']:.1f}")
    return result


def record_in_study(trainer: Any, cfg: DictConfig, typed: Any, run_dir: Path) -> None:
    """A finished run of a study (`study=<name>`): measure the final agent and append its curve
    and measurement to the study's CSVs, unless they hold it already. A run stopped early (a
    time limit) is not recorded; rerunning it to the end is."""
    from agents.run import study_folder, study_identity
    from mbrl_sam.evaluation.flatness_hook import final_measurement
    from mbrl_sam.evaluation.runs import eval_curve
    from mbrl_sam.evaluation.study import commit_of, is_recorded, record

    if typed.study is None or trainer.collector.agent_steps < typed.steps // trainer.repeat:
        return
    folder, identity = study_folder(typed), study_identity(cfg)
    if is_recorded(folder, identity):
        print(f"Study {typed.study}: this run is recorded in {folder} already.")
        return
    print(f"Study {typed.study}: measuring the final agent ...", flush=True)
    measures = final_measurement(trainer, typed.measure, run_dir)
    commit = commit_of(Path(__file__).resolve().parent)
    record(folder, identity, eval_curve(run_dir), measures, commit)
    print(f"Study {typed.study}: recorded in {folder}", flush=True)


def build_run(cfg: DictConfig, typed: Any, run_dir: Path, device: Any) -> tuple[Any, bool, list]:
    """One seed's run in `run_dir`, built and resumed from its checkpoint if it has one:
    (its trainer, whether it resumed, its envs). Leaves the global RNGs as the run starts."""
    from agents import make_agent
    from envs import make_env
    from mbrl_sam import seeds
    from mbrl_sam.collector import Collector, prefill_steps
    from mbrl_sam.evaluation.flatness_hook import FlatnessHook
    from mbrl_sam.logger import Logger
    from mbrl_sam.replay import SequenceReplay
    from mbrl_sam.replay_chunks import ReplayChunks
    from mbrl_sam.replay_store import ChunkStore
    from mbrl_sam.run_checkpoint import RunCheckpoint
    from mbrl_sam.runtime import seed_everything
    from mbrl_sam.trainer import Trainer

    seed_everything(typed.seed)
    env_kwargs = dict(obs=typed.obs, action_repeat=typed.action_repeat)
    env = make_env(typed.task, seed=typed.seed, **env_kwargs)
    eval_env = make_env(typed.task, seed=seeds.eval_env(typed.seed), **env_kwargs)
    spec = env.spec
    agent = make_agent(typed, spec, device)
    replay = SequenceReplay(
        typed.replay_capacity, spec.obs_shape, spec.obs_dtype, spec.action_dim, typed.seed
    )
    store = ChunkStore(ReplayChunks(run_dir / "replay"), replay)
    collector = Collector(agent, env, replay, typed.seed, prefill_steps(typed.prefill, spec), store)
    run_dir.mkdir(parents=True, exist_ok=True)
    logger = Logger(run_dir, use_tensorboard=typed.tensorboard)
    checkpoint = RunCheckpoint(run_dir, typed, store)
    hooks = [FlatnessHook(typed.measure)] if typed.measure.every > 0 else []
    trainer = Trainer(typed, agent, collector, eval_env, logger, checkpoint, STOP, hooks)
    resumed = trainer.try_resume()  # validate_config refused resume=false with a checkpoint
    OmegaConf.save(cfg, run_dir / "config.yaml")
    return trainer, resumed, [env, eval_env]


def run_seed_group(cfg: DictConfig, typed: Any, run_dir: Path, device: Any) -> dict[str, float]:
    """Seeds seed .. seed + seeds - 1, each a run of its own in <run_dir>/seed-<s>, trained in
    lockstep with one stacked update (mbrl_sam/seed_group.py)."""
    import dataclasses

    from agents.run import seed_dirs
    from mbrl_sam.checkpoint import rng_state
    from mbrl_sam.registry import agent_entry
    from mbrl_sam.resume import align_seed_checkpoints
    from mbrl_sam.runtime import matmul_precision
    from mbrl_sam.seed_group import SeedGroup

    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / "config.yaml")
    # A group killed in the middle of saving its seeds resumes from the step all of them hold.
    for note in align_seed_checkpoints(seed_dirs(run_dir, typed.seed, typed.seeds)):
        print(note, flush=True)
    trainers, seats, envs, configs = [], [], [], []
    for k, seed_dir in enumerate(seed_dirs(run_dir, typed.seed, typed.seeds)):
        seed = typed.seed + k
        # Each seed's config is a single run's: seed-<s> resumes alone with seeds=1 too.
        one = dataclasses.replace(typed, seed=seed, seeds=1, progress=typed.progress and k == 0)
        one_cfg = cfg.copy()
        one_cfg.seed, one_cfg.seeds, one_cfg.run_dir = seed, 1, str(seed_dir)
        trainer, resumed, seed_envs = build_run(one_cfg, one, seed_dir, device)
        configs.append(one_cfg)
        seats.append(rng_state())  # as a single run's trainer would start with it
        trainers.append(trainer)
        envs += seed_envs
    stacked = agent_entry(typed.agent.name).stacked([t.agent for t in trainers])
    group = SeedGroup(trainers, stacked, seats, device)
    announce(trainers[0], typed, device, run_dir, resumed)
    with matmul_precision(typed.matmul_precision):
        results = group.run()
        dirs = seed_dirs(run_dir, typed.seed, typed.seeds)
        for trainer, one_cfg, seed_dir in zip(trainers, configs, dirs, strict=True):
            record_in_study(trainer, one_cfg, trainer.config, seed_dir)
    for env in envs:
        env.close()
    returns = ", ".join(f"{r['eval_return']:.1f}" for r in results)
    print(f"Done: {trainers[0].env_steps} env steps per seed, eval returns {returns}")
    return {"eval_return": float(sum(r["eval_return"] for r in results) / len(results))}


def announce(trainer: Any, typed: Any, device: Any, run_dir: Path, resumed: bool) -> None:
    """The run's one-line header: what trains, where, from which step."""
    agent = trainer.agent
    n_params = sum(p.numel() for ps in agent.world_model.param_groups().values() for p in ps)
    seeds = f", seeds {typed.seed}-{typed.seed + typed.seeds - 1}" if typed.seeds > 1 else ""
    print(
        f"{'Resuming' if resumed else 'Training'} {typed.agent.name} ({typed.objective.name}, "
        f"size {typed.size.name}, world model {n_params / 1e6:.2f}M params{seeds}) on "
        f"{typed.task} [{typed.obs}] for {typed.steps} env steps on {device}; logs in {run_dir}"
        + (f" from step {trainer.env_steps}" if resumed else ""),
        flush=True,
    )


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def main(cfg: DictConfig) -> None:
    """Entry point: Hydra parses `key=value` overrides into `cfg`."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    run_dir = Path(cfg.run_dir)
    if hydra_cfg.mode == RunMode.MULTIRUN:
        run_dir = Path(hydra_cfg.runtime.output_dir)
    # Schedulers, `kill`, Docker and Ray stop a job with SIGTERM: treat it as Ctrl-C, so the
    # trainer writes its checkpoint before exiting. Set here, not in run(), which callers (and
    # tests) may use in a process whose signals are not ours to take.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        run(cfg, run_dir)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        if not STOP.training:
            print("Stopped by a signal during start-up; nothing was trained or saved.")
        sys.exit(130)  # else the trainer has saved a checkpoint and said so
    except RunError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except Exception as err:
        if is_disk_full(err):  # a replay chunk or a log line; the checkpoint says it itself
            where = getattr(err, "filename", None) or run_dir
            print(f"error: no space left on device while writing {where}", file=sys.stderr)
            sys.exit(1)
        log = run_dir / "error.log"
        try:
            with open(log, "a", encoding="utf-8") as f:
                traceback.print_exc(file=f)
            where = f"traceback in {log}"
        except OSError:
            traceback.print_exc()
            where = "traceback above"
        first = str(err).splitlines()[0] if str(err) else ""
        print(f"error: {type(err).__name__}: {first} ({where})", file=sys.stderr)
        sys.exit(1)


def check_overrides(argv: list[str]) -> None:
    """Compose the command line's overrides once before Hydra does and check every value and the
    run directory, so that a bad key or value ends in one line naming it and what is valid (not
    Hydra's error page or a traceback), before anything is built or written."""
    from agents.run import load_config, register_schemas, validate_config
    from mbrl_sam.runtime import check_run_dir, resolve_device

    register_schemas()
    if any(arg.startswith("-") for arg in argv):
        return  # Hydra's own flags (--multirun, --help, --cfg) and sweeps: Hydra reports
    try:
        cfg = load_config([arg for arg in argv if not arg.startswith("hydra.")])
        # Before Hydra makes the directory (hydra.run.dir is ${run_dir}): it would fail on it
        # with a traceback, or make it and leave it empty when a value is refused, or the run
        # would fail at its first write. run() validates again, for callers that skip this.
        run_dir = run_dir_of(cfg)
        check_run_dir(run_dir)
        validate_config(cfg, Path(run_dir))
        resolve_device(cfg.device)  # device=cuda where there is none
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def run_dir_of(cfg: DictConfig) -> str:
    """cfg.run_dir resolved (its default names the current time); ConfigError if it cannot be."""
    try:
        return str(cfg.run_dir)
    except Exception as err:  # an interpolation that does not resolve
        raise ConfigError(f"run_dir is not valid: {str(err).splitlines()[0]}") from None


if __name__ == "__main__":
    check_overrides(sys.argv[1:])
    main()
