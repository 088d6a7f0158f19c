"""Provider webhooks: verified, stored raw in the durable ``inbox`` (deduplicated by delivery
id), acknowledged fast; then processed by a worker through the one ingest path.

A delivery that fails to process is kept with its error and retried with backoff; after
``SYNCD_INBOX_MAX_ATTEMPTS`` it is parked as ``failed`` (visible in status and metrics), and
it never blocks the deliveries behind it.
"""

from __future__ import annotations

import base64

import structlog

from syncd import metrics
from syncd.engine.context import EngineContext, connector_for
from syncd.engine.ingest import ingest
from syncd.engine.poller import Poller, PollBusy
from syncd.engine.workers import Worker
from syncd.models import InboxItem, Integration
from syncd.providers.base import WebhookAnswer, WebhookRequest
from syncd.providers.errors import RateLimited, SignatureError

log = structlog.get_logger(__name__)

#: Headers kept with a stored delivery (what ``parse_webhook`` may need); never auth headers.
_KEEP_HEADERS = ("content-type", "user-agent", "x-slack-retry-num", "x-slack-retry-reason")


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

    async def receive(self, integration: Integration, request: WebhookRequest) -> WebhookAnswer:
        """Verify and store one delivery; raises ``SignatureError`` for a bad signature."""
        connector = await connector_for(self.ctx, integration)
        try:
            accepted = connector.accept_webhook(request)
        except SignatureError:
            metrics.WEBHOOKS.labels(integration.platform, "rejected").inc()
            raise
        if accepted.delivery_id is None:
            metrics.WEBHOOKS.labels(integration.platform, "handshake").inc()
            return accepted.answer
        stored = await self.ctx.store.inbox_put(InboxItem(
            integration_id=integration.id,
            platform=integration.platform,
            delivery_id=accepted.delivery_id,
            body=_encode(request.body),
            headers={k: v for k, v in request.headers.items() if k in _KEEP_HEADERS},
            query={k: v for k, v in request.query.items() if k not in ("token",)},
            received_at=self.ctx.now(),
            next_attempt_at=self.ctx.now(),
        ))
        metrics.WEBHOOKS.labels(integration.platform, "accepted" if stored else "duplicate").inc()
        if stored:
            self.worker.wake()
        return accepted.answer

    async def work_once(self) -> bool:
        item = await self.ctx.store.inbox_claim(self.ctx.now(), self.ctx.settings.lease_ttl_s)
        if item is None:
            return False
        bound = log.bind(integration_id=item.integration_id, platform=item.platform, delivery_id=item.delivery_id)
        try:
            await self.process(item)
        except PollBusy:
            # Another replica is polling; our delivery may be newer than its read.
            await self.ctx.store.inbox_retry(item.id, "poll in progress elsewhere", self.ctx.backoff(1))
            return True
        except Exception as exc:  # noqa: BLE001 - every failure is kept with its error
            error = f"{type(exc).__name__}: {exc}"
            if item.attempts >= self.ctx.settings.inbox_max_attempts:
                await self.ctx.store.inbox_fail(item.id, error)
                metrics.INBOX_ITEMS.labels(item.platform, "failed").inc()
                bound.error("webhook delivery failed for good", error=error, attempts=item.attempts)
            else:
                retry_after = exc.retry_after if isinstance(exc, RateLimited) else None
                await self.ctx.store.inbox_retry(item.id, error, self.ctx.backoff(item.attempts, retry_after))
                metrics.INBOX_ITEMS.labels(item.platform, "retried").inc()
                bound.warning("webhook delivery failed; will retry", error=error, attempts=item.attempts)
            return True
        await self.ctx.store.inbox_done(item.id)
        metrics.INBOX_ITEMS.labels(item.platform, "done").inc()
        return True

    async def process(self, item: InboxItem) -> None:
        integration = await self.ctx.store.get_integration(item.integration_id)
        if integration is None or integration.status == "deleted":
            raise LookupError("the integration was deleted")
        connector = await connector_for(self.ctx, integration)
        request = WebhookRequest(
            method="POST", url=self.ctx.settings.webhook_url(item.platform, item.integration_id),
            headers=item.headers, query=item.query, body=_decode(item.body),
        )
        changes = await connector.parse_webhook(request)
        if changes.messages or changes.chats:
            await ingest(self.ctx, integration, changes.messages, changes.chats, source="webhook")
        if changes.resync_requested:
            await self.poller.restart(integration.id)
        elif changes.poll_requested:
            await self.poller.poll(integration.id)
