"""``Schedule``: the daemon's interval jobs (one poll, maintenance and full-sync job per
integration) on the event loop's own timers.

Every job waits in one heap ordered by its next run, and one timer of the event loop is armed
for the earliest (a timer handle per job cost ~0.9 KB of each of the 26,668 jobs of 10,000
integrations, in uvloop's handle and libuv's timer). A run that comes late runs once, however
late (no run is dropped, missed runs are not made up), and a job whose last run is still going
skips its turn. APScheduler did the same, but adding a job cost it ~0.8 ms of CPU (a signature
inspection of the function, trigger and job objects, a sorted job store): 20 of the 30 CPU
seconds of a start with 10,000 integrations (26,668 jobs).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

log = structlog.get_logger(__name__)


@dataclass(eq=False, slots=True)
class Job:
    id: str
    func: Callable[..., Awaitable[Any]]
    args: tuple[Any, ...]
    every_s: float
    #: When the next run is due (seconds since the epoch).
    due: float
    #: When the run that started last was due (its lateness is its start minus this).
    last_due: float | None = None
    schedule: Schedule | None = field(default=None, repr=False)
    #: Whether the job waits in the schedule's heap (at most once).
    armed: bool = field(default=False, repr=False)
    task: asyncio.Task[Any] | None = field(default=None, repr=False)

    def remove(self) -> None:
        if self.schedule is not None:
            self.schedule.remove(self.id)


class Schedule:
    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._running = False
        self._loop: asyncio.AbstractEventLoop | None = None
        #: (due, tie-breaker, job) of every armed job; a removed job's entry is skipped when popped.
        self._heap: list[tuple[float, int, Job]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = math.inf
        #: Set while due jobs are taken off the heap: the timer is armed once, after.
        self._waking = False

    def start(self, *, paused: bool = False) -> None:
        """Start; ``paused``: jobs wait for :meth:`resume` (a start adding thousands of jobs
        lets none run before all are in)."""
        self._loop = asyncio.get_running_loop()
        if not paused:
            self.resume()

    def resume(self) -> None:
        self._running = True
        for job in self._jobs.values():
            if not job.armed:
                self._arm(job)

    def shutdown(self) -> None:
        """No run starts any more; runs in hand go on (their owner waits for them)."""
        self._running = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_due = None, math.inf
        for _, _, job in self._heap:
            job.armed = False
        self._heap.clear()

    def add_job(self, func: Callable[..., Awaitable[Any]], *, id: str, every_s: float,
                args: tuple[Any, ...] | list[Any] = (), first_at: float | None = None) -> Job:
        """Every ``every_s`` seconds from ``first_at`` (the epoch's seconds; now if not
        given). A job of the same id is replaced."""
        self.remove(id)
        job = Job(id=id, func=func, args=tuple(args), every_s=every_s,
                  due=time.time() if first_at is None else first_at, schedule=self)
        self._jobs[id] = job
        if self._running:
            self._arm(job)
        return job

    def get_job(self, id: str) -> Job | None:
        return self._jobs.get(id)

    def get_jobs(self) -> list[Job]:
        return list(self._jobs.values())

    def remove(self, id: str) -> None:
        # Its heap entry stays until it comes up (then skipped): removals are rare, and a
        # heap has no cheap delete.
        job = self._jobs.pop(id, None)
        if job is not None:
            job.schedule = None

    def _arm(self, job: Job) -> None:
        assert self._loop is not None, "start() first"
        job.armed = True
        heapq.heappush(self._heap, (job.due, next(self._order), job))
        if job.due < self._timer_due and not self._waking:
            self._set_timer(job.due)

    def _set_timer(self, due: float) -> None:
        assert self._loop is not None
        if self._timer is not None:
            self._timer.cancel()
        self._timer_due = due
        self._timer = self._loop.call_later(max(0.0, due - time.time()), self._wake)

    def _wake(self) -> None:
        self._timer, self._timer_due = None, math.inf
        now = time.time()
        self._waking = True
        try:
            while self._heap and self._heap[0][0] <= now:
                _, _, job = heapq.heappop(self._heap)
                job.armed = False
                self._fire(job, now)
        finally:
            self._waking = False
        if self._heap and self._running:
            self._set_timer(self._heap[0][0])

    def _fire(self, job: Job, now: float) -> None:
        if not self._running or self._jobs.get(job.id) is not job:
            return
        if job.task is None or job.task.done():
            job.last_due = job.due
            job.task = asyncio.ensure_future(self._run(job))
        # However late, once: the next due time after now, on the job's own beat.
        job.due += job.every_s * max(1, math.floor((now - job.due) / job.every_s) + 1)
        self._arm(job)

    @staticmethod
    async def _run(job: Job) -> None:
        try:
            await job.func(*job.args)
        except Exception:
            log.exception("scheduled job failed", job=job.id)
