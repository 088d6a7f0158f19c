"""A claim-process loop shared by the inbox and outbox workers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from syncd.engine.context import EngineContext

log = structlog.get_logger(__name__)


class Worker:
    """Runs ``step`` (claim and handle one item; True if it found one) until stopped.

    Sleeps ``worker_poll_s`` when idle unless ``wake()`` is called (a new item arrived).
    """

    def __init__(self, ctx: EngineContext, name: str, step: Callable[[], Awaitable[bool]]):
        self.ctx = ctx
        self.name = name
        self.step = step
        self._wake = asyncio.Event()
        self._stopped = False
        self.task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._stopped = False
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run(), name=self.name)

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def stopping(self) -> bool:
        return self._stopped or self.ctx.stopping.is_set()

    async def _run(self) -> None:
        while not self.stopping():
            try:
                busy = await self.step()
            except Exception:  # a bug in one item must not stop the loop
                log.exception("worker step failed", worker=self.name)
                busy = False
            if not busy and not self.stopping():
                self._wake.clear()
                # ``asyncio.timeout``, not ``wait_for``: on Python 3.11 ``wait_for`` swallows a
                # cancellation that comes as the wake-up does, and the loop would run on.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.ctx.settings.worker_poll_s):
                        await self._wake.wait()

    async def stop(self, grace_s: float) -> None:
        """Let the item in hand finish within ``grace_s``, then cancel."""
        if self.task is None:
            return
        self._stopped = True  # this worker alone may be stopped, the engine still running
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self.task), grace_s)
        except (TimeoutError, asyncio.CancelledError):
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task
