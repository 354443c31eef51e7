"""How many CPU threads a run uses, so that a busy machine slows a run down gracefully.

torch starts one thread per core; on a machine whose cores other processes already use, those
threads wait on each other (measured: one clip took 80 s with torch's default on a loaded 2-core
machine and 2 s with one thread; see benchmarks/startup.py --load). The default is therefore the
cores not busy right now (`busy_elsewhere`), at least 1 and at most MAX_DEFAULT. Right now, not the
1-minute load average: that still counts a run that has just ended, so a second run straight after
a first one took one thread on an idle machine.

Every count a user gives (a `--threads` flag of any command, OMP_NUM_THREADS) goes through
`check_threads`: at least 1 and at most the cores this process may run on. More threads than cores
only wait on each other, and a count such as 100000 exhausted the machine's thread limit.
"""
from __future__ import annotations

import os
import statistics
import time

from .errors import check

MAX_DEFAULT = 4          # beyond this the small models here gain little from more threads


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def check_threads(n, what: str = "--threads") -> int:
    """`n` if it is a thread count in [1, usable_cores()], else an ObjaudioError naming `what` (the flag
    or variable the count came from). Plain Python: command lines call it before importing torch."""
    cores = usable_cores()
    check(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= cores,
          f"{what} must be an integer from 1 to {cores} (the cores this process may use), got {n!r}")
    return n


def pick_threads(requested: int | None = None) -> int:
    """`requested` if given; else OMP_NUM_THREADS if set; else the cores not busy (1..MAX_DEFAULT).
    A given count outside [1, cores] is refused (`check_threads`)."""
    if requested is not None:
        return check_threads(requested)
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit():
        return check_threads(int(env), "OMP_NUM_THREADS")
    cores = usable_cores()
    free = cores - busy_elsewhere()
    return max(1, min(cores, MAX_DEFAULT, int(free + 0.5)))


def busy_elsewhere(samples: int = 5, interval_s: float = 0.002) -> float:
    """Cores other threads keep busy now: Linux's runnable-thread count (/proc/stat procs_running,
    the median of a few samples ~10 ms apart in all) less this thread; elsewhere the 1-minute load
    average (0 where there is none)."""
    counts = []
    for i in range(samples):
        try:
            with open("/proc/stat", "rb") as f:
                line = next((ln for ln in f if ln.startswith(b"procs_running ")), None)
        except OSError:
            line = None
        if line is None:
            return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        counts.append(int(line.split()[1]))
        if i + 1 < samples:
            time.sleep(interval_s)
    return max(0.0, statistics.median(counts) - 1)


def use_threads(requested: int | None = None) -> int:
    """Set torch's intra-op thread count (see `pick_threads`); returns it."""
    import torch

    n = pick_threads(requested)
    torch.set_num_threads(n)
    return n
