"""The run config's schema (`RunConfig`: every key with its type, default and range), where its
YAML lives, and the check that a resumed run is the same run.

Hydra composes configs/config.yaml over this schema, so a value of the wrong type or a key that
does not exist fails at composition; `OmegaConf.to_object` then builds the typed objects, whose
`__post_init__` checks the ranges (agents/run.py does both at start-up).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue

from mbrl_sam.errors import ConfigError, check_choice, check_int, check_positive
from mbrl_sam.evaluation.flatness import MeasureConfig
from mbrl_sam.objectives import ObjectiveConfig
from mbrl_sam.planners import PlannerConfig
from mbrl_sam.runtime import MATMUL_PRECISIONS, check_device_name, check_run_dir_name

STUDY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # a folder name under results/


@dataclass
class SizeConfig:
    """The size preset's name (`size=<name>`; its values: configs/preset/<agent>_<name>.yaml)."""

    name: str = MISSING


@dataclass
class RunConfig:
    """Every key of a run; `python train.py key=value` overrides any of them."""

    agent: Any = MISSING  # the agent's own schema: agents/dreamer.py, tdmpc.py, storm.py
    objective: ObjectiveConfig = MISSING
    planner: PlannerConfig = MISSING
    size: SizeConfig = MISSING
    # suite/name: dmc/<domain>-<task>, gym/<Gymnasium id>, atari/<Game>,
    # humanoidbench/<robot>-<task>-v0 (envs/README.md)
    task: str = "gym/Pendulum-v1"
    obs: str = "state"  # state | pixels
    action_repeat: int | None = None  # None: the suite's (dmc 2, gym 1, atari 4, hb 1)
    steps: int = 5000  # env steps, counted with action repeat (the default run: minutes on a CPU)
    seed: int = 0
    # Train seeds seed .. seed + seeds - 1 in this one process, each a complete run in
    # <run_dir>/seed-<s>/, their networks stacked into one batched update (agents that have one:
    # tdmpc). Fills a GPU with small models; on a CPU it saves the per-op overhead only.
    seeds: int = 1
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    # torch CPU threads. 1 keeps a run at its speed when other processes share the cores (on 2
    # cores, torch's default of one thread per core ran 16-24x slower beside one busy process:
    # benchmarks/shared_cores.py); null: torch's default, the fastest on an otherwise idle CPU.
    threads: int | None = 1
    # highest (float32) | high (TF32 on CUDA) | medium (bfloat16 products, float32 sums: CUDA,
    # and CPUs with AMX or AVX512-BF16)
    matmul_precision: str = "highest"
    run_dir: str = "runs/${now:%Y%m%d-%H%M%S}"
    resume: Any = "auto"  # auto: continue if run_dir has a checkpoint | true: require one | false
    # Env steps of uniform random actions before learning starts (the agent's default; auto:
    # TD-MPC2's max(1000, 5 x episode length) agent steps).
    prefill: Any = "${agent.prefill}"
    train_ratio: float = "${agent.train_ratio}"  # replayed steps per agent step (DreamerV3's)
    replay_capacity: int = 1_000_000  # env-step records kept (pixels are stored as uint8)
    eval_every: int = 1000  # env steps between evaluations
    eval_episodes: int = 5
    # Evaluate with the agent's exploring (sampled) actions instead of its greedy ones, as
    # STORM and DreamerV3 report Atari scores; evaluation has its own RNG either way.
    eval_explore: bool = False
    log_every: int = 1000  # env steps between train-metric logs
    checkpoint_minutes: float = 10.0  # also written at the end and on Ctrl-C
    time_limit_minutes: float | None = None  # stop (evaluate, checkpoint) after this long
    progress: bool = True  # progress bar (redraws rarely when not on a terminal)
    tensorboard: bool = True
    # Stop (keeping the last checkpoint) after this many world-model steps in a row were
    # skipped for a non-finite gradient: the run has diverged.
    max_skipped_updates: int = 100
    measure: MeasureConfig = field(default_factory=MeasureConfig)  # flatness during training
    # A named study (docs/studies.md): once finished, the run appends its eval curve and the
    # flatness of its final agent (measure's settings) to <results_dir>/<study>/<task>.csv and
    # <task>.measure.csv, unless the study holds it already.
    study: str | None = None
    results_dir: str | None = None  # None: this repository's results/

    def __post_init__(self) -> None:
        check_choice("obs", self.obs, ("state", "pixels"))
        check_choice("resume", self.resume, ("auto", True, False))
        if self.action_repeat is not None:
            check_int("action_repeat", self.action_repeat, 1)
        check_int("steps", self.steps, 1)
        check_int("seed", self.seed, 0)
        check_int("seeds", self.seeds, 1)
        if self.prefill != "auto" and (not isinstance(self.prefill, int) or self.prefill < 0):
            raise ConfigError(
                f"prefill={self.prefill!r} is not valid; it must be auto or an int >= 0"
            )
        check_int("eval_every", self.eval_every, 0)
        check_int("eval_episodes", self.eval_episodes, 1)
        check_int("log_every", self.log_every, 1)
        batch_steps = self.agent.batch_size * self.agent.batch_length
        if not isinstance(self.replay_capacity, int) or self.replay_capacity < batch_steps:
            raise ConfigError(
                f"replay_capacity={self.replay_capacity!r} is not valid; it must hold at least "
                f"one batch of sequences: agent.batch_size x agent.batch_length = {batch_steps}"
            )
        check_positive("train_ratio", self.train_ratio)
        check_positive("checkpoint_minutes", self.checkpoint_minutes)
        check_int("max_skipped_updates", self.max_skipped_updates, 1)
        if self.time_limit_minutes is not None:
            check_positive("time_limit_minutes", self.time_limit_minutes)
        if self.threads is not None:
            check_int("threads", self.threads, 1)
        check_choice("matmul_precision", self.matmul_precision, MATMUL_PRECISIONS)
        check_device_name(self.device)
        check_run_dir_name(self.run_dir)
        if self.study is not None and not STUDY_NAME.fullmatch(self.study):
            raise ConfigError(
                f"study={self.study!r} is not valid; a study is named by letters, digits, "
                "'_', '-' and '.' (it names a folder of results/)"
            )


# Keys that only steer a run (how long, how often it reports, on what hardware, what it
# measures on the side): a resumed run may change them. Every other key defines the run.
STEERING = (
    "steps",
    "eval_every",
    "eval_episodes",
    "eval_explore",
    "log_every",
    "checkpoint_minutes",
    "time_limit_minutes",
    "max_skipped_updates",
    "threads",
    "device",
    "matmul_precision",
    "agent.compile",
    "progress",
    "tensorboard",
    "run_dir",
    "resume",
    "measure",
    "study",
    "results_dir",
)


def flat_keys(tree: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict as dotted key -> leaf value (lists are leaves)."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flat_keys(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def config_changes(
    saved: dict, now: dict
) -> tuple[dict[str, tuple[Any, Any]], dict[str, tuple[Any, Any]]]:
    """Keys whose values differ between two resolved configs, as key -> (saved, now): those
    that define the run, and those that only steer it. Keys one side lacks (added or renamed
    since) are not compared."""
    old, new = flat_keys(saved), flat_keys(now)
    defining, steering = {}, {}
    for key in sorted(old.keys() & new.keys()):
        if old[key] != new[key]:
            steers = any(key == s or key.startswith(s + ".") for s in STEERING)
            (steering if steers else defining)[key] = (old[key], new[key])
    return defining, steering


def check_resume_matches(cfg: Any, saved: dict, run_dir: Path) -> dict[str, tuple[Any, Any]]:
    """Refuse to resume a checkpoint made with other settings that define a run (agent, task,
    objective, seed, sizes, ...); return the steering keys that changed."""
    for key, now in (("task", cfg.task), ("agent_name", cfg.agent.name)):
        if saved.get(key) != now:
            raise ConfigError(
                f"run_dir={str(run_dir)!r} holds a checkpoint for {key}={saved.get(key)!r}, "
                f"not {now!r}; use another run_dir or the same {key}"
            )
    if "config" not in saved:  # written before checkpoints kept their config
        return {}
    defining, steering = config_changes(saved["config"], OmegaConf.to_container(cfg, resolve=True))
    if defining:
        listed = "; ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in defining.items())
        raise ConfigError(
            f"run_dir={str(run_dir)!r} holds a run with other settings, which must match to "
            f"resume it: {listed}. Use another run_dir, or the saved values"
        )
    return steering


def config_dir() -> Path:
    """The repository's `configs/` folder."""
    return Path(__file__).resolve().parent.parent / "configs"


Options = TypeVar("Options")


def answer_help(argv: list[str], doc: str | None) -> None:
    """Print a script's usage (its docstring) and exit 0 when asked with -h or --help."""
    if any(arg in ("-h", "--help") for arg in argv):
        print((doc or "").strip())
        raise SystemExit(0)


def parse_options(schema: type[Options], argv: list[str]) -> Options:
    """A script's `key=value` arguments over its options dataclass; an unknown key, a value of
    the wrong type, a missing required one or one out of range raises a one-line ConfigError."""
    base = OmegaConf.structured(schema)
    try:
        merged = OmegaConf.merge(base, OmegaConf.from_dotlist(argv))
        return OmegaConf.to_object(merged)
    except ConfigError:
        raise
    except ConfigKeyError as err:
        key = err.full_key or str(err).split("'")[1]
        raise ConfigError(f"{key} is not an option; the options are: {', '.join(base)}") from None
    except MissingMandatoryValue as err:
        key = err.full_key or str(err).rsplit(": ", 1)[-1]
        raise ConfigError(f"{key}=<value> is required") from None
    except Exception as err:  # a value OmegaConf cannot convert to the field's type
        key = getattr(err, "full_key", "") or "?"
        value = dict(a.split("=", 1) for a in argv if "=" in a).get(key)
        raise ConfigError(f"{key}={value!r} is not valid: {str(err).splitlines()[0]}") from None
