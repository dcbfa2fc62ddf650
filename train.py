"""Train an agent: `python train.py agent=dreamer task=dmc/walker-walk objective=sam size=S`."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from mbrl_sam.errors import ConfigError

# Set on SIGTERM. The trainer also polls it every step: the KeyboardInterrupt raised below can be
# lost when it lands in code that swallows it (a compiled TD-MPC run once trained on after one).
STOP = threading.Event()


def _interrupt(signum: int, frame: object) -> None:
    STOP.set()
    raise KeyboardInterrupt


def run(cfg: DictConfig, run_dir: Path) -> dict[str, float]:
    """Validate the config, build everything, resume if asked, and train."""
    import torch

    from agents import make_agent
    from agents.run import validate_config
    from envs import make_env
    from mbrl_sam import seeds
    from mbrl_sam.evaluation.flatness_hook import FlatnessHook
    from mbrl_sam.logger import Logger
    from mbrl_sam.replay import SequenceReplay
    from mbrl_sam.runtime import matmul_precision, resolve_device, seed_everything, tune_allocator
    from mbrl_sam.trainer import Trainer

    typed = validate_config(cfg, run_dir)
    tune_allocator()
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    seed_everything(cfg.seed)
    env_kwargs = dict(obs=cfg.obs, action_repeat=cfg.action_repeat)
    env = make_env(cfg.task, seed=cfg.seed, **env_kwargs)
    eval_env = make_env(cfg.task, seed=seeds.eval_env(cfg.seed), **env_kwargs)
    spec = env.spec
    agent = make_agent(typed, spec, device)
    replay = SequenceReplay(
        cfg.replay_capacity, spec.obs_shape, spec.obs_dtype, spec.action_dim, seed=cfg.seed
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    logger = Logger(run_dir, use_tensorboard=cfg.tensorboard)
    hooks = [FlatnessHook(typed.measure)] if typed.measure.every > 0 else []
    trainer = Trainer(cfg, agent, env, eval_env, replay, logger, run_dir, STOP, hooks)
    resumed = cfg.resume is not False and trainer.try_resume()
    OmegaConf.save(cfg, run_dir / "config.yaml")
    n_params = sum(p.numel() for ps in agent.world_model.param_groups().values() for p in ps)
    print(
        f"{'Resuming' if resumed else 'Training'} {cfg.agent.name} ({cfg.objective.name}, "
        f"size {cfg.size.name}, world model {n_params / 1e6:.2f}M params) on {cfg.task} "
        f"[{cfg.obs}] for {cfg.steps} env steps on {device}; logs in {run_dir}"
        + (f" from step {trainer.env_steps}" if resumed else ""),
        flush=True,
    )
    with matmul_precision(cfg.matmul_precision):
        result = trainer.run()
    env.close()
    eval_env.close()
    print(f"Done: {trainer.env_steps} env steps, eval return {result['eval_return']:.1f}")
    return result


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
    try:
        run(cfg, run_dir)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)  # the trainer has saved a checkpoint and said so


def check_overrides(argv: list[str]) -> None:
    """Compose the command line's overrides once before Hydra does, so that a bad key or value
    ends in one line naming it and what is valid, not Hydra's error page."""
    from agents.run import load_config, register_schemas

    register_schemas()
    if any(arg.startswith("-") for arg in argv):
        return  # Hydra's own flags (--multirun, --help, --cfg) and sweeps: Hydra reports
    try:
        load_config([arg for arg in argv if not arg.startswith("hydra.")])
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    check_overrides(sys.argv[1:])
    main()
