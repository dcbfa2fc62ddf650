"""Atari-100k games (`atari/<Game>`) on ale-py's bundled ROMs, with DreamerV3's atari100k protocol.

Every choice below follows DreamerV3's configs.yaml `atari100k` entry unless it says otherwise:
- ALE runs at frameskip=1 and this adapter repeats each action `action_repeat` = 4 times
  (`repeat: 4`, DEFAULT_ACTION_REPEAT), so it can see the raw frames of the repeat.
- Frame pooling: the obs is the pixel-wise max of the last 2 raw frames of the repeat; Atari
  draws some sprites only on alternate frames and the max keeps them visible.
- Sticky actions off: repeat_action_probability=0.0 (`sticky: False`); episodes still differ
  through the no-op starts.
- Actions: the game's minimal action set (`actions: needed`, full_action_space=False), given as
  one-hot vectors (Pong has 6 actions).
- No-op starts: 1..30 NOOP frames after each reset (`noops: 30`), drawn from the emulator env's
  own numpy RNG so the seed fixes them. DreamerV3 draws 0..30; 1..30 is Machado et al. (2018)
  and Gymnasium's AtariPreprocessing, and guarantees at least one frame of variation.
- Lives unused (`lives: unused`): losing a life neither ends the episode nor is reported.
- Terminated on game over; truncated at 108,000 emulator frames (ALE's
  max_num_frames_per_episode; 27,000 agent steps, 30 minutes at 60 Hz). ALE's counter includes
  the no-op frames, DreamerV3's does not: at most 30 frames apart.
- Rewards summed over the repeat and not clipped (`clip_reward: False`).
- No FIRE press after reset (`autostart: False`): starting the game is the agent's job.
- Obs: RGB (`gray: False`) resized from 210x160 to size x size = 64x64 (`size: [64, 64]`),
  channels-first uint8 (3, 64, 64) like dmc pixels. Resizing uses cv2 INTER_AREA (DreamerV3's
  `resize: opencv` option) rather than its default Pillow bilinear: averaging source pixels keeps
  thin objects (balls, bullets) that bilinear sampling can skip.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import cv2
import gymnasium as gym
import numpy as np

from envs.base import agent_steps, as_action_vector, check_episode_running, discrete_index
from mbrl_sam.environment import Env, EnvSpec
from mbrl_sam.errors import ConfigError

DEFAULT_ACTION_REPEAT = 4
NOOP_MAX = 30
POOL_FRAMES = 2
# 108k frames = 27k agent steps at repeat 4 = 30 minutes of play, the standard episode cap.
MAX_FRAMES = 108_000
# Index 0 of every minimal action set is NOOP; AtariEnv checks this when it opens a game.
NOOP = 0
# The 26 Atari-100k games (Kaiser et al., 2020), spelt as ale-py's ALE/<Game>-v5 ids.
GAMES = (
    "Alien",
    "Amidar",
    "Assault",
    "Asterix",
    "BankHeist",
    "BattleZone",
    "Boxing",
    "Breakout",
    "ChopperCommand",
    "CrazyClimber",
    "DemonAttack",
    "Freeway",
    "Frostbite",
    "Gopher",
    "Hero",
    "Jamesbond",
    "Kangaroo",
    "Krull",
    "KungFuMaster",
    "MsPacman",
    "Pong",
    "PrivateEye",
    "Qbert",
    "RoadRunner",
    "Seaquest",
    "UpNDown",
)


def task_names() -> list[str]:
    """The 26 Atari-100k games, CamelCase as ALE names them."""
    return list(GAMES)


def validate(name: str, obs: str) -> None:
    """Raise ConfigError unless `name` is an Atari-100k game and `obs` is "pixels"."""
    if name not in GAMES:
        # Compare lower-cased so `atari/pong` or `atari/mspacman` still find their game.
        by_lower = {game.lower(): game for game in GAMES}
        similar = difflib.get_close_matches(name.lower(), list(by_lower), n=5, cutoff=0.6)
        hint = f"close matches: {', '.join(by_lower[s] for s in similar)}; " if similar else ""
        raise ConfigError(
            f"task='atari/{name}' is not an Atari-100k game; {hint}"
            f"choose one of: {', '.join(GAMES)}"
        )
    if obs != "pixels":
        raise ConfigError(
            f"obs={obs!r} is not available for task='atari/{name}': Atari has only pixels; "
            "use obs=pixels"
        )


def make(
    name: str, obs: str, action_repeat: int, seed: int, size: int, render: bool = False
) -> AtariEnv:
    """Build the adapter for a validated game name (it can always render)."""
    validate(name, obs)
    return AtariEnv(name, action_repeat, seed, size)


def max_pool(frames: Sequence[np.ndarray]) -> np.ndarray:
    """Pixel-wise max over the last POOL_FRAMES frames (a single frame comes back unchanged)."""
    return np.max(np.stack(frames[-POOL_FRAMES:]), axis=0)


def _open(game: str, max_frames: int) -> gym.Env:
    try:
        import ale_py
    except ImportError as err:
        raise ConfigError(f"task='atari/{game}' needs ale-py: pip install ale-py ({err})") from err
    # Importing ale_py registers the ALE/* ids; this call only makes the dependency explicit.
    gym.register_envs(ale_py)
    return gym.make(
        f"ALE/{game}-v5",
        frameskip=1,
        repeat_action_probability=0.0,
        full_action_space=False,
        max_num_frames_per_episode=max_frames,
    )


class AtariEnv(Env):
    """An ALE game with one-hot actions, no-op starts and max-pooled 64x64 RGB obs."""

    def __init__(
        self,
        game: str,
        action_repeat: int = DEFAULT_ACTION_REPEAT,
        seed: int = 0,
        size: int = 64,
        max_frames: int = MAX_FRAMES,
    ) -> None:
        """Open `game`; `seed` seeds the first reset given none; episodes end at max_frames."""
        self._env = _open(game, max_frames)
        meanings = self._env.unwrapped.get_action_meanings()
        if meanings[NOOP] != "NOOP":
            self._env.close()
            raise RuntimeError(f"ALE/{game}-v5 has {meanings[NOOP]} at action {NOOP}, not NOOP")
        self._size = size
        # Gymnasium seeds only through reset, so hold the seed until the first one.
        self._pending_seed: int | None = seed
        self.noops = 0  # no-op frames played at the last reset, for inspection
        self.spec = EnvSpec(
            obs_shape=(3, size, size),
            obs_dtype=np.dtype(np.uint8),
            action_dim=len(meanings),
            discrete=True,
            action_repeat=action_repeat,
            episode_length=agent_steps(max_frames, action_repeat),
        )
        self._done = True
        self._closed = False

    def _observe(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        image = cv2.resize(max_pool(frames), (self._size, self._size), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(image.transpose(2, 0, 1))

    def render(self) -> np.ndarray:
        """The emulator's last full-size (210, 160, 3) screen, without pooling or resizing."""
        return self._env.unwrapped.ale.getScreenRGB()

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Start an episode with 1..30 no-ops; a `seed` (or the constructor's) reseeds the game."""
        if seed is None:
            seed, self._pending_seed = self._pending_seed, None
        frame, _ = self._env.reset(seed=seed)
        self._pending_seed = None
        # AtariEnv reseeds this RNG with the emulator, so a seed fixes the no-op count too.
        self.noops = int(self._env.unwrapped.np_random.integers(1, NOOP_MAX + 1))
        for _ in range(self.noops):
            frame, _, terminated, truncated, _ = self._env.step(NOOP)
            if terminated or truncated:  # only with a tiny frame cap; start over, don't end
                frame, _ = self._env.reset()
        self._done = False
        # Like DreamerV3, the first obs is the last frame alone: there is no repeat to pool.
        return self._observe([frame])

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool]:
        """obs, reward summed over the action repeat, terminated, truncated."""
        check_episode_running(self._done)
        index = discrete_index(as_action_vector(action, self.spec.action_dim))
        frames: list[np.ndarray] = []
        total, terminated, truncated = 0.0, False, False
        for _ in range(self.spec.action_repeat):
            frame, reward, terminated, truncated, _ = self._env.step(index)
            frames.append(frame)
            total += float(reward)
            if terminated or truncated:
                break
        self._done = bool(terminated or truncated)
        return self._observe(frames), total, bool(terminated), bool(truncated)

    def close(self) -> None:
        """Close the emulator."""
        if not self._closed:
            self._closed = True
            self._env.close()
