"""The CPU thread count: --threads, then OMP_NUM_THREADS, then the cores not busy right now."""
import os

import pytest

from objaudio_rt.core import threads
from objaudio_rt.core.errors import ObjaudioError


def test_requested_then_environment_then_free_cores(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.pick_threads(5) == 5
    assert threads.pick_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 0.0)
    assert threads.pick_threads() == 2                      # idle: every core
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 1.2)
    assert threads.pick_threads() == 1                      # one core busy elsewhere
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 9.0)
    assert threads.pick_threads() == 1                      # never fewer than one
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 0.0)
    assert threads.pick_threads() == threads.MAX_DEFAULT
    with pytest.raises(ObjaudioError, match="from 1 to 64"):
        threads.pick_threads(0)


@pytest.mark.parametrize("given", [0, -1, 3, 100000, 2.0, True, "2"])
def test_a_given_count_is_bounded_by_the_cores(monkeypatch, given):
    """--threads 100000 started 100000 threads (263 GB of virtual memory, the host's thread limit):
    every count a user gives is at most the cores this process may use, refused in one line."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    with pytest.raises(ObjaudioError, match=r"--threads must be an integer from 1 to 2 \(the cores") as exc:
        threads.check_threads(given)
    assert "\n" not in str(exc.value)
    assert threads.check_threads(2) == 2 and threads.pick_threads(1) == 1
    with pytest.raises(ObjaudioError, match="--threads"):
        threads.pick_threads(given)


def test_omp_num_threads_is_bounded_too(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "100000")
    with pytest.raises(ObjaudioError, match="OMP_NUM_THREADS must be an integer from 1 to 2"):
        threads.pick_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.pick_threads() == 2


def test_busy_elsewhere_counts_other_running_threads_now(monkeypatch, tmp_path):
    """Linux: procs_running less this thread, sampled now (not the load average of runs just ended)."""
    samples = iter([b"cpu  1 2 3\nprocs_running 3\n", b"procs_running 1\n", b"procs_running 3\n"])
    real_open = open

    def fake_open(path, mode="r", *args, **kwargs):
        if path == "/proc/stat":
            f = tmp_path / "stat"
            f.write_bytes(next(samples))
            return real_open(f, mode)
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", fake_open)
    monkeypatch.setattr(os, "getloadavg", lambda: (7.0, 0.0, 0.0))          # stale: must not be used
    assert threads.busy_elsewhere(samples=3, interval_s=0) == 2.0           # median 3, less this thread
