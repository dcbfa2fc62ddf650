"""Time one full training update of the official JAX DreamerV3 (danijar/dreamerv3) and of our
Dreamer side by side in one process, at the same size preset, in float32 on CPU; print JSON.

Both learn from the same real `dmc/walker-walk` (state) transitions, batch 16 x 64, and their
updates alternate (JAX, ours, JAX, ours, ...) so load on this shared host hits both alike. The
JAX update is the official jitted `Agent.train` (world model, actor and critic losses in one
loss, one optimizer step, slow-critic update), timed to `jax.block_until_ready`; its compile time
is reported apart. Ours is `DreamerAgent.update` with objective=erm and reinforce actor
gradients (the official estimator). Presets: tiny = size1m, S = size12m.

Usage: python benchmarks/jax_reference.py [--sizes tiny S] [--repeats 10] [overrides ...]
On a loaded host torch's OpenMP threads spin-wait and updates can stall for seconds; set
OMP_WAIT_POLICY=PASSIVE (read when torch loads; XLA does not use OpenMP) to see without that.
The official code is imported from a local checkout (--dreamerv3, default /opt/dreamerv3);
without one the script exits and says how to install it.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from typing import Any

import numpy as np
import torch
from harness import filled_replay, sync, time_call

from agents import make_agent
from agents.run import load_config
from mbrl_sam.runtime import tune_allocator

PRESETS = {"tiny": "size1m", "S": "size12m"}
INSTALL = """The official DreamerV3 could not be imported from {path} ({error}).
Install it outside this repository (CPU jax is enough):
  git clone https://github.com/danijar/dreamerv3 /opt/dreamerv3
  pip install jax chex optax einops jaxtyping "elements>=3.19.1" "ninjax>=3.5.1" \\
      "portal>=3.5.0" "granular>=0.20.3" ruamel.yaml
(do not install its requirements.txt: it pins jax[cuda12] and numpy<2), then pass
--dreamerv3 /opt/dreamerv3 if it lives elsewhere."""


def import_official(path: str) -> tuple[Any, Any, Any, Any]:
    """jax, elements, the official Agent class and embodied.jax.internal, or exit with help."""
    sys.path.insert(0, path)
    try:
        import elements
        import jax
        from dreamerv3.agent import Agent
        from embodied.jax import internal
    except ImportError as error:
        sys.exit(INSTALL.format(path=path, error=error))
    if "in_shardings" not in inspect.signature(jax.jit).parameters or _jit_is_keyword_only(jax):
        # The official code (written for jax 0.4.33) passes jit's shardings positionally,
        # which newer jax refuses; name them, changing nothing else.
        jit = jax.jit
        names = ("in_shardings", "out_shardings", "static_argnums")
        names += ("static_argnames", "donate_argnums")
        jax.jit = lambda fun, *args, **kw: jit(fun, **kw, **dict(zip(names, args)))
    return jax, elements, Agent, internal


def _jit_is_keyword_only(jax: Any) -> bool:
    params = list(inspect.signature(jax.jit).parameters.values())
    return len(params) > 1 and params[1].kind is inspect.Parameter.KEYWORD_ONLY


def official_obs_keys(task: str) -> list[tuple[str, tuple[int, ...]]]:
    """The dm_control observation keys and shapes, in the sorted order our env concatenates."""
    from dm_control import suite

    domain, name = task.split("/", 1)[1].split("-", 1)
    spec = suite.load(domain, name).observation_spec()
    return [(k, tuple(spec[k].shape)) for k in sorted(spec)]


def build_official(mods: tuple, path: str, preset: str, obs_keys: list, action_dim: int) -> Any:
    """The official agent as its main.py builds it for dmc_proprio at `preset`, float32 CPU."""
    jax, elements, agent_cls, _ = mods
    import ruamel.yaml as yaml

    configs = yaml.YAML(typ="safe").load(elements.Path(f"{path}/dreamerv3/configs.yaml").read())
    config = elements.Config(configs["defaults"]).update(configs["dmc_proprio"])
    config = config.update(configs[preset]).update(
        {"jax.platform": "cpu", "jax.compute_dtype": "float32", "jax.prealloc": False}
    )
    space = elements.Space
    obs_space = {k: space(np.float32, shape) for k, shape in obs_keys}
    obs_space.update(reward=space(np.float32), is_first=space(bool))
    obs_space.update(is_last=space(bool), is_terminal=space(bool))
    act_space = {"action": space(np.float32, (action_dim,), -1, 1)}
    agent_config = elements.Config(
        **config.agent,
        logdir=tempfile.mkdtemp(prefix="dreamerv3-"),
        seed=config.seed,
        # No profiler trace at update 100 and no compile in the constructor: timed below.
        jax=dict(config.jax, profiler=False, precompile=False),
        batch_size=config.batch_size,
        batch_length=config.batch_length,
        replay_context=config.replay_context,
        report_length=config.report_length,
        replica=0,
        replicas=1,
    )
    return agent_cls(obs_space, act_space, agent_config)


def official_batch(batch: dict[str, torch.Tensor], agent: Any, obs_keys: list) -> dict:
    """Our (B, T + 1) sample in the official layout: one step of replay context, split obs,
    the action taken at each step (ours stores the one leading into it), zeroed extras."""
    nxt = {k: v[:, 1:].numpy() for k, v in batch.items()}
    cur = {k: v[:, :-1].numpy() for k, v in batch.items()}
    data, start = {}, 0
    for key, shape in obs_keys:
        size = int(np.prod(shape))
        data[key] = cur["obs"][..., start : start + size].reshape(*cur["obs"].shape[:2], *shape)
        start += size
    data["reward"], data["is_first"] = cur["reward"], cur["is_first"]
    data["is_terminal"] = cur["is_terminal"]
    data["is_last"] = cur["is_terminal"] | np.pad(nxt["is_first"][:, :-1], ((0, 0), (0, 1)))
    data["action"] = nxt["action"]
    for key, space in agent.spaces.items():
        data.setdefault(key, np.zeros(data["reward"].shape + space.shape, space.dtype))
    return data


def main() -> None:
    """Build both agents per size and alternate their updates; report medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", nargs="+", default=["tiny"], choices=sorted(PRESETS))
    parser.add_argument("--task", default="dmc/walker-walk")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--dreamerv3", default=os.environ.get("DREAMERV3_PATH", "/opt/dreamerv3"))
    parser.add_argument(
        "--sides",
        nargs="+",
        default=["jax", "ours"],
        choices=["jax", "ours"],
        help="time one side only, e.g. to run each in its own process: two thread pools in "
        "one process (XLA's and torch's OpenMP) slow each other down",
    )
    parser.add_argument("overrides", nargs="*", help="our config overrides")
    args = parser.parse_args()
    xla_flags = os.environ.get("XLA_FLAGS", "")  # the official setup() rewrites it later
    mods = import_official(args.dreamerv3)
    jax, internal = mods[0], mods[3]
    tune_allocator()
    device = torch.device("cpu")
    replay, spec = filled_replay(args.task, 3000)
    obs_keys = official_obs_keys(args.task)
    ours_cfg = ["agent=dreamer", "objective=erm", f"task={args.task}"]
    ours_cfg += ["agent.behavior.actor_grad=reinforce", *args.overrides]
    report: dict[str, Any] = {
        "task": args.task,
        "torch": torch.__version__,
        "jax": jax.__version__,
        "torch_threads": torch.get_num_threads(),  # XLA's CPU pool: one thread per core
        "cpu_count": os.cpu_count(),
        "omp_env": {k: v for k, v in os.environ.items() if k.startswith("OMP_")},
        "xla_flags_at_start": xla_flags,
        "jax_devices": [str(d) for d in jax.devices()],
        "cpu": platform.processor() or platform.machine(),
        "ours_overrides": ours_cfg,
        "sides": sorted(set(args.sides)),
        "results": {},
    }
    for size in args.sizes:
        cfg = load_config([*ours_cfg, f"size={size}"])
        torch.manual_seed(0)
        ours = make_agent(cfg, spec, device)
        preset = PRESETS[size]
        with contextlib.redirect_stdout(sys.stderr):  # it prints its spaces and parameters
            official = build_official(mods, args.dreamerv3, preset, obs_keys, spec.action_dim)
        batch_size, length = official.config.batch_size, official.config.batch_length
        context = official.config.replay_context
        assert (batch_size, length) == (cfg.agent.batch_size, cfg.agent.batch_length)
        start = time.perf_counter()
        if "jax" in args.sides:
            official._compile_train()  # what its constructor does with precompile=True
        compile_s = time.perf_counter() - start
        carry = official.init_train(batch_size)
        times: dict[str, list[float]] = {"jax": [], "ours": []}
        for i in range(args.warmup + args.repeats):
            sample = replay.sample(batch_size, length + context + 1)
            data = official_batch(sample, official, obs_keys)
            data = internal.device_put(data, official.train_sharded)
            data["seed"] = official._seeds(i, official.train_mirrored)
            jax.block_until_ready((data, carry, official.params))
            start = time.perf_counter()
            if "jax" in args.sides:
                carry, _, _ = official.train(carry, data)
                jax.block_until_ready((carry, official.params))
            jax_s = time.perf_counter() - start
            ours_batch = {k: v.to(device) for k, v in replay.sample(batch_size, length).items()}
            sync(device)
            ours_s = 0.0
            if "ours" in args.sides:
                ours_s = time_call(lambda: ours.update(ours_batch, i + 1), device)  # noqa: B023
            if i >= args.warmup:
                times["jax"].append(jax_s)
                times["ours"].append(ours_s)
        med = {k: statistics.median(v) * 1000 for k, v in times.items()}
        both = len(set(args.sides)) == 2
        trained = (ours.world_model, ours.ac.actor, ours.ac.critic)
        n_ours = sum(p.numel() for m in trained for p in m.parameters())
        modules = ("enc", "dyn", "dec", "rew", "con", "pol", "val")  # its optimizer's modules
        n_jax = sum(v.size for k, v in official.params.items() if k.split("/")[0] in modules)
        report["results"][size] = {
            "official_preset": preset,
            "batch": [batch_size, length],
            "official_replay_context": context,
            "jax_compile_s": round(compile_s, 1),
            "jax_ms": round(med["jax"], 1),
            "ours_ms": round(med["ours"], 1),
            "ours_over_jax": round(med["ours"] / med["jax"], 2) if both else None,
            "jax_ms_all": [round(t * 1000, 1) for t in times["jax"]],
            "ours_ms_all": [round(t * 1000, 1) for t in times["ours"]],
            "jax_trained_params": int(n_jax),
            "ours_trained_params": n_ours,
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
