"""Time the official STORM update (weipu-zhang/STORM at 1c50658) and ours side by side, at
STORM's published size, on the same real Pong frames; print JSON.

Usage: python benchmarks/storm_reference.py --checkout /tmp/storm_official [--repeats 3]
(the checkout holds the official `sub_models/`, `agents.py` and `utils.py`; they import einops,
tensorboardX and yacs). Its code names the device "cuda" in a few places; the script runs it
from a temporary copy with those names turned to "cpu", and float32 (its autocast off), which
changes nothing else.

One official update is what its training loop does per step: `WorldModel.update` on a 16 x 64
batch, then `imagine_data` (1,024 rollouts of 16 steps from 8-step contexts, with its KV cache)
and `ActorCriticAgent.update` on them. Ours is `StormAgent.update` on the same 16 x 64 batch
(768 rollouts of 16 steps from every step's full context in the batch, then actor and critic).
The two alternate, so the machine's load hits both alike; medians in ms.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from harness import filled_replay

from agents import make_agent
from agents.run import load_config
from mbrl_sam.nets import eval_mode


def patched_copy(checkout: Path) -> Path:
    """The official code in a temporary folder, its "cuda" device names turned to "cpu"."""
    target = Path(tempfile.mkdtemp(prefix="storm_cpu_"))
    for name in ("agents.py", "utils.py", "sub_models"):
        source = checkout / name
        if source.is_dir():
            shutil.copytree(source, target / name)
        else:
            shutil.copy(source, target / name)
    for path in target.rglob("*.py"):
        text = path.read_text()
        text = text.replace('device="cuda"', 'device="cpu"').replace(".cuda()", "")
        path.write_text(text.replace("device_type='cuda'", "device_type='cpu'"))
    return target


def official_modules(folder: Path) -> tuple[type, type]:
    """The official WorldModel and ActorCriticAgent classes; its `agents` module is imported
    under that name while its world model loads, then ours is put back."""
    sys.path.insert(0, str(folder))
    ours = sys.modules["agents"]
    spec = importlib.util.spec_from_file_location("agents", folder / "agents.py")
    theirs = importlib.util.module_from_spec(spec)
    sys.modules["agents"] = theirs
    try:
        spec.loader.exec_module(theirs)
        from sub_models.world_models import WorldModel
    finally:
        sys.modules["agents"] = ours
    return WorldModel, theirs.ActorCriticAgent


def official_batch(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Our (B, T) replay window in STORM's layout: obs in [0, 1], the action taken at each obs
    as an index, the reward and termination that came of it (the last step's are unknown, so
    the window loses one step)."""
    obs = batch["obs"][:, :-1].float() / 255.0
    action = batch["action"][:, 1:].argmax(-1).float()
    return obs, action, batch["reward"][:, 1:].float(), batch["is_terminal"][:, 1:].float()


def main() -> None:
    """Alternate official and our updates; print medians."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkout", type=Path, default=Path("/tmp/storm_official"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if not (args.checkout / "sub_models" / "world_models.py").exists():
        print(f"No official STORM code at {args.checkout}; see storm_parity.py", file=sys.stderr)
        sys.exit(2)
    torch.set_num_threads(args.threads)
    WorldModel, ActorCriticAgent = official_modules(patched_copy(args.checkout))
    replay, spec = filled_replay("atari/Pong", 3000, obs="pixels")
    cfg = load_config(["agent=storm", "size=M", "objective=erm", "task=atari/Pong", "obs=pixels"])
    torch.manual_seed(0)
    ours = make_agent(cfg, spec, torch.device("cpu"))
    m = cfg.agent.model
    wm = WorldModel(3, spec.action_dim, 64, m.dim, m.layers, m.heads)
    actor = ActorCriticAgent(32 * 32 + m.dim, 2, 512, spec.action_dim, 0.985, 0.95, 3e-4)
    for module in (wm, actor):  # float32 on the CPU: its autocast and scaler read these
        module.use_amp, module.tensor_dtype = False, torch.float32
    wm.scaler = torch.amp.GradScaler("cpu", enabled=False)
    actor.scaler = torch.amp.GradScaler("cpu", enabled=False)

    def official_update(seed: int) -> dict[str, float]:
        rng = np.random.default_rng(seed)
        start = time.perf_counter()
        wm.update(*official_batch(replay.sample(16, 65, rng)))
        model = time.perf_counter()
        context = official_batch(replay.sample(1024, 9, rng))
        wm.eval()
        actor.eval()
        with torch.no_grad():
            latent, action, reward, term = wm.imagine_data(
                actor, context[0], context[1], 1024, 16, log_video=False, logger=None
            )
        actor.update(latent, action, None, None, reward, term)
        end = time.perf_counter()
        return {"model": model - start, "behavior": end - model, "full": end - start}

    def our_update(seed: int) -> dict[str, float]:
        batch = replay.sample(16, 64, np.random.default_rng(seed))
        start = time.perf_counter()
        aux, _ = ours.model_step(batch, seed)
        model = time.perf_counter()
        with eval_mode(ours.world_model):
            starts, cont = ours.world_model.starts(aux["post"]["stoch"], batch, 16)
            ours.ac.update(ours.world_model, starts, cont)
        end = time.perf_counter()
        return {"model": model - start, "behavior": end - model, "full": end - start}

    times: dict[str, list[dict[str, float]]] = {"official": [], "ours": []}
    for i in range(args.repeats + 1):  # the first of each is a warm-up
        for name, update in (("official", official_update), ("ours", our_update)):
            result = update(i)
            if i:
                times[name].append(result)
    med = {
        name: {k: round(statistics.median(r[k] for r in rs) * 1000, 1) for k in rs[0]}
        for name, rs in times.items()
    }
    report = {
        "official": "weipu-zhang/STORM 1c50658 (CPU, float32)",
        "size": "M (2 layers, 8 heads, 512 dims, 32 x 32 latents)",
        "threads": torch.get_num_threads(),
        "ms": med,
        "official_over_ours": {
            k: round(med["official"][k] / med["ours"][k], 2) for k in med["ours"]
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
