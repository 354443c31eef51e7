"""The CPU thread count: --threads, then OMP_NUM_THREADS, then the cores not already busy."""
import os

import pytest

from objaudio_rt import threads
from objaudio_rt.errors import ObjaudioError


def test_requested_then_environment_then_free_cores(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.pick_threads(5) == 5
    assert threads.pick_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert threads.pick_threads() == 2                      # idle: every core
    monkeypatch.setattr(os, "getloadavg", lambda: (1.2, 0.0, 0.0))
    assert threads.pick_threads() == 1                      # one core busy elsewhere
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 0.0, 0.0))
    assert threads.pick_threads() == 1                      # never fewer than one
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert threads.pick_threads() == threads.MAX_DEFAULT
    with pytest.raises(ObjaudioError, match="at least 1"):
        threads.pick_threads(0)
