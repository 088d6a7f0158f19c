"""The outbox workers: app events to platforms, and callbacks to the app.

Each claimed item is handled once; a retryable failure is rescheduled with exponential
backoff (a platform's Retry-After wins when longer); a permanent failure, or one that keeps
failing past ``SYNCD_OUTBOX_MAX_ATTEMPTS``, is dead-lettered with its error kept. An event that
waits (an edit for its create, any event for an integration in ``error`` for new credentials)
is rescheduled without using up its attempts. Callbacks are retried until the app
acknowledges them (their backoff is capped, never dead-lettered).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from pydantic import ValidationError

from syncd import metrics
from syncd.engine.context import EngineContext
from syncd.engine.exporter import Exporter, Waiting
from syncd.engine.notifier import CALLBACK, CallbackSender
from syncd.engine.workers import Worker
from syncd.kit.errors import AuthError, PermanentError, RateLimited
from syncd.mapping import MappingError
from syncd.models import OutboxItem

log = structlog.get_logger(__name__)


#: Callbacks sent between two waits for ``yield_to``: under a lasting stream of deliveries the
#: app still hears of them at this many per ``YIELD_MAX_S`` at the least.
CALLBACKS_BETWEEN_YIELDS = 50


class Outbox:
    def __init__(self, ctx: EngineContext, exporter: Exporter, callbacks: CallbackSender,
                 yield_to: Callable[[], Awaitable[None]] | None = None):
        self.ctx = ctx
        self.exporter = exporter
        self.callbacks = callbacks
        #: Awaited before callbacks are sent (``Inbox.idle``): ingest goes first.
        self.yield_to = yield_to
        self._sent_since_yield = CALLBACKS_BETWEEN_YIELDS
        self.events = Worker(ctx, "outbox", self.export_once)
        self.notify = Worker(ctx, "callbacks", self.callback_once)
        #: Callbacks in hand, each with its chat: at most ``callback_concurrency``, no chat twice.
        self._slots = asyncio.Semaphore(ctx.settings.callback_concurrency)
        self._sending: dict[asyncio.Task[None], str] = {}

    async def export_once(self) -> bool:
        item = await self.ctx.store.outbox_claim(self.ctx.now(), self.ctx.settings.lease_ttl_s, exclude_types=[CALLBACK])
        if item is None:
            return False
        await self._handle(item, self.exporter.deliver, dead_letter=True)
        return True

    async def callback_once(self) -> bool:
        """Claim the next callback and start sending it, once fewer than
        ``callback_concurrency`` are in hand; none of a chat whose callback is in hand."""
        if self.yield_to is not None and self._sent_since_yield >= CALLBACKS_BETWEEN_YIELDS:
            await self.yield_to()
            self._sent_since_yield = 0
        await self._slots.acquire()
        sending = False
        try:
            item = None if self.notify.stopping() else await self.ctx.store.outbox_claim(
                self.ctx.now(), self.ctx.settings.lease_ttl_s, types=[CALLBACK], exclude_chats=list(self._sending.values()))
            if item is None:
                self._sent_since_yield = CALLBACKS_BETWEEN_YIELDS  # the next burst yields first
                return False
            self._sent_since_yield += 1
            self._start_sending(item)
            sending = True
            return True
        finally:
            if not sending:
                self._slots.release()

    def _start_sending(self, item: OutboxItem) -> None:
        task = asyncio.create_task(self._send_callback(item))
        self._sending[task] = _chat_of(item)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        del self._sending[task]
        self._slots.release()
        self.notify.wake()  # the chat's next callback may be due

    async def _send_callback(self, item: OutboxItem) -> None:
        try:
            await self._handle(item, self.callbacks.deliver, dead_letter=False)
        except Exception:  # the store failed to record it: its lease runs out, it is sent again
            log.exception("callback not recorded", outbox_id=item.id)

    async def drain(self, timeout_s: float) -> None:
        """Let the callbacks in hand finish within ``timeout_s``; the rest are cancelled, and
        sent again once their leases run out."""
        if self._sending:
            await asyncio.wait(set(self._sending), timeout=timeout_s)
        for task in set(self._sending):
            task.cancel()
        await asyncio.gather(*self._sending, return_exceptions=True)

    async def _handle(self, item: OutboxItem, deliver, *, dead_letter: bool) -> None:
        bound = log.bind(outbox_id=item.id, type=item.type, customer_id=item.customer_id,
                         integration_id=item.integration_id, attempts=item.attempts)
        try:
            result = await deliver(item)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            # Anything else (a database failover, a bug) may pass: retried within the budget.
            permanent = isinstance(exc, (PermanentError, MappingError, ValidationError))
            waiting = isinstance(exc, Waiting)  # for its create, for new credentials: not a failure
            # Attempts spent waiting do not count: an update that waited for its create seven
            # times must not be dead-lettered by the first 503 it then meets.
            exhausted = not waiting and dead_letter and \
                await self.ctx.store.outbox_failures(item.id) >= self.ctx.settings.outbox_max_attempts
            if dead_letter and (permanent or exhausted):
                await self.ctx.store.outbox_dead(item.id, error)
                await self.exporter.failed(item, error)
                metrics.OUTBOX_EVENTS.labels(item.type, "dead").inc()
                bound.error("outbox item dead-lettered", error=error, dead_letter_id=item.id)
                return
            if isinstance(exc, AuthError) and item.integration_id:
                await self.ctx.store.update_integration(item.integration_id, status="error", status_reason=str(exc))
            retry_after = exc.retry_after if isinstance(exc, RateLimited) else None
            await self.ctx.store.outbox_retry(item.id, error, self.ctx.backoff(item.attempts, retry_after),
                                              waiting=waiting)
            metrics.OUTBOX_EVENTS.labels(item.type, "waiting" if waiting else "retried").inc()
            if waiting:
                bound.info("outbox item waiting", reason=error)
            else:
                bound.warning("outbox delivery failed; will retry", error=error)
            return
        await self.ctx.store.outbox_done(item.id, result)
        metrics.OUTBOX_EVENTS.labels(item.type, "sent").inc()


def _chat_of(item: OutboxItem) -> str:
    """The chat a callback is about (its id; the callback's own id when it names none)."""
    message: Any = item.payload.get("message") or {}
    return str(message.get("chatId") or item.id)
