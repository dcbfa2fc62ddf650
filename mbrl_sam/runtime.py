"""Run-wide settings: the compute device, matmul precision, CPU threads and seeding."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import random
import sys
from collections.abc import Iterator

import numpy as np
import torch

from mbrl_sam.errors import ConfigError, check_choice

# torch's names: highest keeps float32 products; high allows TF32 (CUDA); medium allows bfloat16
# products with float32 sums (CUDA, and CPUs with AMX or AVX512-BF16 through oneDNN).
MATMUL_PRECISIONS = ("highest", "high", "medium")


def resolve_device(name: str) -> torch.device:
    """Map `auto` to CUDA when present (else MPS, else CPU); check explicit names exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"device={name!r} is not valid; choose one of: auto, cpu, cuda, cuda:N, mps"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but CUDA is not available here; use device=auto")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(f"device={name!r}: only {torch.cuda.device_count()} CUDA devices")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device={name!r} but MPS is not available here; use device=auto")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device={name!r} is not valid; choose one of: auto, cpu, cuda, mps")
    return device


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
