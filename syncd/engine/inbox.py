"""Provider webhooks: verified, stored raw in the durable ``inbox`` (deduplicated by delivery
id), acknowledged fast; then processed by a worker through the one ingest path.

A delivery that fails to process is kept with its error and retried with backoff; after
``SYNCD_INBOX_MAX_ATTEMPTS`` it is parked as ``failed`` (visible in status and metrics), and
it never blocks the deliveries behind it.
"""

from __future__ import annotations

import asyncio
import base64
import functools
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import structlog

from syncd import metrics
from syncd.engine.context import EngineContext, connector_for
from syncd.engine.ingest import ingest
from syncd.engine.lifecycle import PAUSED_RECHECK_S
from syncd.engine.poller import PollBusy, Poller
from syncd.engine.workers import Worker
from syncd.kit.connector import Connector
from syncd.kit.errors import PermanentError, RateLimited, SignatureError
from syncd.kit.http import settle_bounded
from syncd.models import InboxItem, Integration, new_id
from syncd.universal import Changes, WebhookAnswer, WebhookRequest

log = structlog.get_logger(__name__)

#: Headers every stored delivery keeps; a platform adds what its ``parse_webhook`` reads
#: (``Connector.keep_headers``). Never auth headers.
_KEEP_HEADERS = ("content-type", "user-agent")
#: Deliveries claimed and processed together: a backlog costs a few round-trips per batch,
#: not several per delivery; small enough to finish well inside one lease.
BATCH = 100
#: While deliveries stream in (the last batch found some, less than ``STREAM_S`` ago, and was
#: not full), the worker lets new ones gather this long before the next claim: a few
#: milliseconds of latency buy batches instead of single items, so the per-batch round-trips
#: are shared. A delivery after a quiet spell is claimed at once.
LINGER_S = 0.02
STREAM_S = 0.25
#: Processing is background work: before each batch the worker lets whatever is ready in the
#: event loop run first (above all the acknowledgements of arriving webhooks: a platform
#: retries, and in the end disables, a webhook that answers slowly), until one pass of the
#: loop takes less than ``QUIET_S`` and no delivery is being received, deferring at most
#: ``DEFER_MAX_S``. An idle loop costs it nothing; during a burst the backlog waits in the
#: inbox and is worked off after it. (A short pass alone does not tell a burst: an
#: acknowledgement spans several passes, each of them short.)
QUIET_S = 0.002
DEFER_MAX_S = 0.25
#: Work that can wait (the app's callbacks) lets the deliveries go first while any are being
#: received or worked off (``Inbox.idle``), waiting at most this long at a time.
YIELD_MAX_S = 1.0
#: How many deliveries of one integration's batch are parsed (and followed up) at once; each
#: may wait on a platform request. Bounded as an import's lanes are, below platforms' limits.
SIDE_BY_SIDE = 8


@functools.cache
def _webhooks_counted(platform: str, outcome: str) -> Any:
    """The received-webhooks counter of one platform and outcome (looked up once, not per delivery)."""
    return metrics.WEBHOOKS.labels(platform, outcome)


_FIELDS = frozenset(InboxItem.model_fields)
_set = object.__setattr__


def _pending_item(**values: Any) -> InboxItem:
    """``InboxItem.model_construct(**values)`` for the acknowledgement's hot path: every field
    given, already of its type and in the model's order, so the model is filled as
    ``model_construct`` fills it, without its pass over the fields and their aliases (which
    cost more than the rest of storing the delivery)."""
    item = InboxItem.__new__(InboxItem)
    _set(item, "__dict__", values)
    _set(item, "__pydantic_fields_set__", set(_FIELDS))
    _set(item, "__pydantic_extra__", None)
    _set(item, "__pydantic_private__", None)
    return item


def _encode(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(body).decode()


def _decode(body: str) -> bytes:
    if body.startswith("base64:"):
        return base64.b64decode(body[7:])
    return body.encode("utf-8")


class Inbox:
    def __init__(self, ctx: EngineContext, poller: Poller):
        self.ctx = ctx
        self.poller = poller
        self.worker = Worker(ctx, "inbox", self.work_once)
        self._streaming_until = 0.0
        self._receiving = 0  # deliveries being verified and stored right now
        #: Deliveries wait or are being worked off: set when one is stored, cleared when a
        #: claim finds none (a hint for ``idle``, not a count).
        self._working = False

    async def receive(self, integration: Integration, request: WebhookRequest) -> WebhookAnswer:
        """Verify and store one delivery; raises ``SignatureError`` for a bad signature."""
        self._receiving += 1
        try:
            return await self._accept(integration, request)
        finally:
            self._receiving -= 1

    async def _accept(self, integration: Integration, request: WebhookRequest) -> WebhookAnswer:
        connector = await connector_for(self.ctx, integration)
        try:
            if connector.prepares_webhook:
                await connector.prepare_webhook(request)
            accepted = connector.accept_webhook(request)
        except SignatureError:
            _webhooks_counted(integration.platform, "rejected").inc()
            raise
        if accepted.delivery_id is None:
            _webhooks_counted(integration.platform, "handshake").inc()
            return accepted.answer
        now = self.ctx.now()
        stored = await self.ctx.store.inbox_put(_pending_item(
            id=new_id(),
            integration_id=integration.id,
            platform=integration.platform,
            delivery_id=accepted.delivery_id,
            received_at=now,
            body=_encode(request.body),
            headers={k: v for k, v in request.headers.items() if k in _KEEP_HEADERS or k in connector.keep_headers},
            query={k: v for k, v in request.query.items() if k not in connector.secret_query},
            status="pending",
            attempts=0,
            next_attempt_at=now,
            lease_until=None,
            error=None,
        ))
        _webhooks_counted(integration.platform, "accepted" if stored else "duplicate").inc()
        if stored:
            self._working = True
            self.worker.wake()
        return accepted.answer

    async def _quiet_loop(self) -> None:
        """Yield to the work that is ready until the event loop is (nearly) idle and no
        delivery is being received; see ``QUIET_S``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEFER_MAX_S
        while True:
            start = loop.time()
            await asyncio.sleep(0)
            now = loop.time()
            if now > deadline:
                return
            if now - start < QUIET_S:
                if not self._receiving:
                    return
                # What is left waits on the store: wait with it rather than spin.
                await asyncio.sleep(QUIET_S)

    async def idle(self, max_s: float = YIELD_MAX_S) -> None:
        """Until no delivery is being received or worked off, at most ``max_s``. A burst's
        deliveries are stored, deduplicated and handed to the app's callback queue before the
        worker that sends those callbacks (an HTTP request each) takes the CPU from them."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_s
        while loop.time() < deadline:
            if not (self._receiving or self._working):
                return
            await asyncio.sleep(QUIET_S)

    async def work_once(self) -> bool:
        """Claim a batch of due deliveries and process them: one claim, one message write
        per integration and one completion for the whole batch, however many it holds."""
        loop = asyncio.get_running_loop()
        if loop.time() < self._streaming_until:
            await asyncio.sleep(LINGER_S)
        await self._quiet_loop()
        items = await self.ctx.store.inbox_claim_many(self.ctx.now(), self.ctx.settings.lease_ttl_s, BATCH)
        self._working = bool(items)
        if not items:
            return False
        self._streaming_until = loop.time() + STREAM_S if len(items) < BATCH else 0.0
        groups: dict[str, list[InboxItem]] = {}
        for item in items:
            groups.setdefault(item.integration_id, []).append(item)
        done: list[InboxItem] = []
        for group in groups.values():
            done += await self._process_group(group)
        await self.ctx.store.inbox_done_many([item.id for item in done])
        for item in done:
            metrics.INBOX_ITEMS.labels(item.platform, "done").inc()
        return True

    async def _failed(self, item: InboxItem, exc: Exception, give_up: Callable[[], Awaitable[None]] | None = None) -> None:
        """Keep the delivery with its error: retried with backoff, parked after the last attempt
        (then ``give_up`` tells the platform, where it waits to hear)."""
        bound = log.bind(integration_id=item.integration_id, platform=item.platform, delivery_id=item.delivery_id)
        if isinstance(exc, PollBusy):
            # Another replica is polling; our delivery may be newer than its read.
            await self.ctx.store.inbox_retry(item.id, "poll in progress elsewhere", self.ctx.backoff(1))
            return
        error = f"{type(exc).__name__}: {exc}"
        if item.attempts >= self.ctx.settings.inbox_max_attempts:
            await self.ctx.store.inbox_fail(item.id, error)
            metrics.INBOX_ITEMS.labels(item.platform, "failed").inc()
            bound.error("webhook delivery failed for good", error=error, attempts=item.attempts)
            if give_up is not None:
                try:
                    await give_up()
                except Exception as told:
                    bound.warning("could not tell the platform the delivery failed", error=str(told))
        else:
            retry_after = exc.retry_after if isinstance(exc, RateLimited) else None
            await self.ctx.store.inbox_retry(item.id, error, self.ctx.backoff(item.attempts, retry_after))
            metrics.INBOX_ITEMS.labels(item.platform, "retried").inc()
            bound.warning("webhook delivery failed; will retry", error=error, attempts=item.attempts)

    async def _process_group(self, items: list[InboxItem]) -> list[InboxItem]:
        """Process one integration's deliveries in order; the ones that went through.

        Their messages go through the ingest path together. If that fails, each delivery is
        ingested alone, so one poisonous delivery fails by itself and not its whole batch."""
        try:
            integration = await self.ctx.store.get_integration(items[0].integration_id)
            if integration is None or integration.status == "deleted":
                raise LookupError("the integration was deleted")
            if integration.status == "paused":
                # Kept, not failed: a resume makes them due again at once.
                until = self.ctx.now() + timedelta(seconds=PAUSED_RECHECK_S)
                await self.ctx.store.inbox_defer([item.id for item in items], until, "integration paused")
                return []
            connector = await connector_for(self.ctx, integration)
        except Exception as exc:
            for item in items:
                await self._failed(item, exc)
            return []
        parsed: list[tuple[InboxItem, Changes]] = []
        outcomes = await settle_bounded([connector.parse_webhook(self._request(item)) for item in items],
                                        SIDE_BY_SIDE)
        for item, outcome in zip(items, outcomes):
            if isinstance(outcome, Exception):
                await self._failed(item, outcome)
            else:
                parsed.append((item, outcome))
        try:
            await self._ingest(integration, [changes for _, changes in parsed])
        except Exception:
            alone: list[tuple[InboxItem, Changes]] = []
            for item, changes in parsed:
                try:
                    await self._ingest(integration, [changes])
                    alone.append((item, changes))
                except Exception as exc:
                    await self._failed(item, exc, _telling(connector, changes, stored=False))
            parsed = alone
        parsed = await self._followed_up(connector, parsed)
        # One poll (or resync) answers every delivery of the batch that asked for it.
        asking = [item for item, changes in parsed if changes.resync_requested or changes.poll_requested]
        if asking:
            try:
                if any(changes.resync_requested for _, changes in parsed):
                    await self.poller.restart(integration.id)
                else:
                    await self.poller.poll(integration.id)
            except Exception as exc:
                for item in asking:
                    await self._failed(item, exc)
                return [item for item, _ in parsed if item not in asking]
        return [item for item, _ in parsed]

    async def _followed_up(self, connector: Connector,
                           parsed: list[tuple[InboxItem, Changes]]) -> list[tuple[InboxItem, Changes]]:
        """Tell the platform what was stored; a delivery whose follow-up fails for a while is
        retried (its ingest is idempotent), one the platform refuses is done all the same."""
        told: list[tuple[InboxItem, Changes]] = []
        outcomes = await settle_bounded([connector.follow_up(changes.follow_ups, stored=True)
                                         for _, changes in parsed if changes.follow_ups], SIDE_BY_SIDE)
        results = iter(outcomes)
        for item, changes in parsed:
            outcome = next(results) if changes.follow_ups else None
            if isinstance(outcome, PermanentError):
                log.warning("the platform refused a follow-up; the delivery is stored", error=str(outcome),
                            integration_id=item.integration_id, delivery_id=item.delivery_id)
            elif isinstance(outcome, Exception):
                await self._failed(item, outcome, _telling(connector, changes, stored=False))
                continue
            told.append((item, changes))
        return told

    def _request(self, item: InboxItem) -> WebhookRequest:
        return WebhookRequest(
            method="POST", url=self.ctx.settings.webhook_url(item.platform, item.integration_id),
            headers=item.headers, query=item.query, body=_decode(item.body),
        )

    async def _ingest(self, integration: Integration, batch: list[Changes]) -> None:
        messages = [m for changes in batch for m in changes.messages]
        chats = [c for changes in batch for c in changes.chats]
        if messages or chats:
            await ingest(self.ctx, integration, messages, chats, source="webhook")


def _telling(connector: Connector, changes: Changes, *, stored: bool) -> Callable[[], Awaitable[None]] | None:
    if not changes.follow_ups:
        return None
    return lambda: connector.follow_up(changes.follow_ups, stored=stored)
