"""How many CPU threads a run uses, so that a busy machine slows a run down gracefully.

torch starts one thread per core; on a machine whose cores other processes already use, those
threads wait on each other (measured: one clip took 80 s with torch's default on a loaded 2-core
machine and 2 s with one thread; see benchmarks/threads.py). The default is therefore the cores
not already busy (the 1-minute load average), at least 1 and at most MAX_DEFAULT.
"""
from __future__ import annotations

import os

from .errors import check

MAX_DEFAULT = 4          # beyond this the small models here gain little from more threads


def pick_threads(requested: int | None = None) -> int:
    """`requested` if given; else OMP_NUM_THREADS if set; else the cores not busy (1..MAX_DEFAULT)."""
    if requested is not None:
        check(requested >= 1, f"--threads must be at least 1, got {requested}")
        return requested
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    free = cores - os.getloadavg()[0] if hasattr(os, "getloadavg") else cores
    return max(1, min(cores, MAX_DEFAULT, int(free + 0.5)))


def use_threads(requested: int | None = None) -> int:
    """Set torch's intra-op thread count (see `pick_threads`); returns it."""
    import torch

    n = pick_threads(requested)
    torch.set_num_threads(n)
    return n
