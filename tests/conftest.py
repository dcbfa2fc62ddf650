"""Test-session settings: with pytest-xdist's workers (`-n 2`, one per core), each keeps to one
CPU thread; two workers of torch's default two threads on two cores slow each other down
many times over (benchmarks/shared_cores.py)."""

import os

import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"  # and the processes the tests start
