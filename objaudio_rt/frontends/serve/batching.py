"""Micro-batching: generate requests that arrive within a few milliseconds run as one batch.

A request becomes a `Job`: its scene, its runtime selections (one per item) and its options. A
batch of jobs is cut into groups that can share one `Pipeline.generate_many` call: same scene,
same options, same number of conditions per item (a composed union of k parts runs k UNet rows
per item, so it is not padded onto single selections). Each item's starting noise comes from its
own generator seeded with the request's seed, so a job's result does not depend on its
neighbours beyond float rounding (see the README: batch-size dependent kernel blocking).

`MicroBatcher` gathers jobs on the event loop and runs batches one at a time on the model
thread; the Ray deployment uses `@serve.batch` instead and calls the same `run_jobs`.
"""
from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable

from ...core.errors import ObjaudioError
from ...core.options import RunOptions
from ...core.pipeline import Generation, Pipeline, Scene, conditions_per_item
from ...core.selection import Selection


@dataclass(eq=False)
class Job:
    scene_id: str
    scene: Scene
    items: list[Selection]             # what to generate: the stems, then the mix (or the mix alone)
    options: RunOptions


class QueueFull(Exception):
    def __init__(self, retry_after_s: int):
        super().__init__(f"the service is busy: retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


def run_jobs(pipe: Pipeline, jobs: list[Job]) -> list[list[Generation] | Exception]:
    """Generations per job (in item order), or the exception that job raised. Runs on the model thread."""
    groups: dict[tuple, list[tuple[int, int]]] = defaultdict(list)        # key -> [(job, item)]
    for j, job in enumerate(jobs):
        for i, sel in enumerate(job.items):
            groups[(job.scene_id, job.options, conditions_per_item(sel, job.options.union or pipe.union))].append((j, i))
    results: list[list | Exception] = [[None] * len(job.items) for job in jobs]
    for members in groups.values():
        for (j, i), gen in zip(members, _run_group(pipe, jobs, members)):
            if isinstance(gen, Exception):
                results[j] = gen
            elif not isinstance(results[j], Exception):
                results[j][i] = gen
    return results


def _run_group(pipe: Pipeline, jobs: list[Job], members: list[tuple[int, int]]) -> list:
    first = jobs[members[0][0]]
    try:
        return pipe.generate_batch(first.scene, [jobs[j].items[i] for j, i in members], first.options, progress=False)
    except ObjaudioError as exc:
        if len({j for j, _ in members}) == 1:
            return [exc] * len(members)
    # one job's bad input must not fail its neighbours: run each job of the group alone
    out = []
    for j in dict.fromkeys(j for j, _ in members):
        own = [(jj, i) for jj, i in members if jj == j]
        out.extend(_run_group(pipe, jobs, own))
    return out


class MicroBatcher:
    """Gathers jobs for `window_s`, up to `max_batch` of them, and runs them with `run(jobs)` on `executor`."""

    def __init__(self, run: Callable[[list[Job]], list], executor, window_s: float, max_batch: int, max_queue: int):
        self.run, self.executor = run, executor
        self.window_s, self.max_batch, self.max_queue = window_s, max_batch, max_queue
        self._queue: list[tuple[Job, asyncio.Future]] = []
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self.running = 0
        self.last_batch_s = 1.0
        self.batch_sizes: list[int] = []            # jobs per batch run, for the benchmark and tests

    @property
    def pending(self) -> int:
        return len(self._queue) + self.running

    async def submit(self, job: Job) -> list[Generation]:
        if self.pending >= self.max_queue:
            batches_ahead = math.ceil(self.pending / self.max_batch)
            raise QueueFull(max(1, math.ceil(batches_ahead * self.last_batch_s)))
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done():
            self._wake = asyncio.Event()
            self._worker = loop.create_task(self._work())
        future = loop.create_future()
        self._queue.append((job, future))
        self._wake.set()
        result = await future          # cancelling the caller cancels this future; the worker skips it
        if isinstance(result, Exception):
            raise result
        return result

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            if len(self._queue) < self.max_batch and self.window_s > 0:
                await asyncio.sleep(self.window_s)
            while self._queue:
                live = [(j, f) for j, f in self._queue if not f.cancelled()]
                batch, self._queue = live[:self.max_batch], live[self.max_batch:]
                if not batch:
                    break
                self.running = len(batch)
                start = time.perf_counter()
                try:
                    results = await loop.run_in_executor(self.executor, self.run, [j for j, _ in batch])
                except Exception as exc:               # a bug of ours: every job of the batch gets it
                    results = [exc] * len(batch)
                finally:
                    self.running = 0
                self.last_batch_s = time.perf_counter() - start
                self.batch_sizes.append(len(batch))
                for (_, future), result in zip(batch, results):
                    if not future.done():
                        future.set_result(result)
