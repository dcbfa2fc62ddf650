"""Run-wide settings: the compute device, matmul precision, CPU threads and seeding."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import random
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from mbrl_sam.errors import ConfigError, check_choice

# torch's names: highest keeps float32 products; high allows TF32 (CUDA); medium allows bfloat16
# products with float32 sums (CUDA, and CPUs with AMX or AVX512-BF16 through oneDNN).
MATMUL_PRECISIONS = ("highest", "high", "medium")


DEVICES = "auto, cpu, cuda, cuda:N, mps"


def check_device_name(name: object) -> None:
    """Raise ConfigError unless `name` is one of auto, cpu, cuda, cuda:N, mps (whether that device
    exists here is resolve_device's check, when the run starts)."""
    if not isinstance(name, str) or not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", name):
        raise ConfigError(f"device={name!r} is not valid; choose one of: {DEVICES}")


def resolve_device(name: str) -> torch.device:
    """Map `auto` to CUDA when present (else MPS, else CPU); check explicit names exist."""
    check_device_name(name)  # torch also takes cpu:1, which it runs on the one CPU device
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but CUDA is not available here; use device=auto")
    count = torch.cuda.device_count() if device.type == "cuda" else 0
    if device.type == "cuda" and (device.index or 0) >= count:
        raise ConfigError(
            f"device={name!r} is not valid: this machine has {count} CUDA device(s); "
            f"choose one of: cuda, {', '.join(f'cuda:{i}' for i in range(count))}"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device={name!r} but MPS is not available here; use device=auto")
    return device


def check_run_dir_name(run_dir: object) -> None:
    """Raise ConfigError for an empty run_dir (with which Hydra would make the current directory
    the run's, and its checkpoint and logs would land among the user's files)."""
    if not str(run_dir).strip():
        raise ConfigError(
            f"run_dir={run_dir!r} is not valid; give a directory for the run's logs and "
            "checkpoints, e.g. run_dir=runs/my-run"
        )


def check_run_dir(run_dir: str | Path) -> None:
    """Raise ConfigError unless `run_dir` is a directory this process can write in, or one it
    can create. Called before anything is built (and before Hydra makes the directory), so a
    run never trains for hours and then fails to save. Probes by creating and removing a
    directory, and asks os.access too: os.access alone misses what only a write finds out (an
    NFS or FUSE mount's own rules, a full quota). Root may write where permission bits say no,
    so as root only a read-only mount (or such a rule) makes a directory unwritable."""
    check_run_dir_name(run_dir)
    text = str(run_dir)
    path = Path(text)
    existing = path  # the nearest existing ancestor: where the first new directory would go
    while not existing.is_dir():
        if existing.exists() or existing.is_symlink():
            where = "it" if existing == path else str(existing)
            raise ConfigError(
                f"run_dir={text!r} is not valid: {where} is a file, not a directory; "
                "choose a directory path"
            )
        existing = existing.parent
    where = "it" if existing == path else f"its parent {existing}"
    reason = None
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".mbrl_sam-write-test-", dir=existing))
    except OSError as err:
        reason = (err.strerror or str(err)).lower()
    if reason is None and not os.access(existing, os.W_OK | os.X_OK):
        reason = "permission denied"
    if reason is not None:
        raise ConfigError(
            f"run_dir={text!r} is not valid: {where} is not writable ({reason}); "
            "choose a directory you can write to"
        )


@contextlib.contextmanager
def matmul_precision(name: str) -> Iterator[None]:
    """Run a block at the given float32 matmul precision, restoring the previous one after."""
    check_choice("matmul_precision", name, MATMUL_PRECISIONS)
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(name)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def tune_allocator() -> bool:
    """Keep freed tensor memory in glibc's heap instead of returning it to the OS.

    Eager CPU training allocates and frees the same large tensors every step; with glibc's
    defaults each one is a fresh mmap whose pages fault in again (measured here: imagination
    10-20% faster with this). Returns False where it does not apply (not Linux/glibc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024)) and bool(
            libc.mallopt(m_trim_threshold, 2**30)
        )
    except (OSError, AttributeError):
        return False


def apply_threads(threads: int | None) -> int:
    """Set torch's CPU threads (None: torch's own default); the count in use."""
    if threads is not None:
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()
