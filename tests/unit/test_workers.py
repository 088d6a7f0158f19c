"""The claim-process loop under the inbox and outbox workers: a cancellation always ends it."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from syncd.engine.workers import Worker


async def test_a_cancellation_that_comes_with_a_wake_up_ends_the_loop() -> None:
    """A worker woken (new work, a callback finished) in the same turn as it is cancelled (a
    shutdown past its grace, a process dying) must end, not run on against a closed store."""
    steps = 0

    async def step() -> bool:
        nonlocal steps
        steps += 1
        return False  # nothing to do: the loop waits for a wake-up

    ctx = SimpleNamespace(stopping=asyncio.Event(), settings=SimpleNamespace(worker_poll_s=30))
    for _ in range(20):
        worker = Worker(ctx, "test", step)
        worker.start()
        await asyncio.sleep(0)  # it has run one step and waits
        await asyncio.sleep(0)
        worker.wake()
        assert worker.task is not None
        worker.task.cancel()
        done, _ = await asyncio.wait({worker.task}, timeout=1)
        assert done, "the worker ran on after it was cancelled"
        assert worker.task.cancelled()
