"""Callbacks to the app: every stored change that came from a platform is POSTed to
``SYNCD_APP_CALLBACK_URL``, signed like app events, and retried until acknowledged.

Callbacks ride the durable outbox (type ``callback``) so a restart or an app outage loses
none; they have their own worker so a slow app never delays exports to platforms.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta
from typing import Any

import httpx

from syncd.engine.context import EngineContext
from syncd.kit.errors import PermanentError, TransientError
from syncd.kit.http import shared_tls
from syncd.kit.transport import AiohttpTransport
from syncd.models import Integration, Message, OutboxItem, new_id, utcnow

CALLBACK = "callback"
#: How long a written change may wait for its callbacks to be queued before the sweep takes
#: it for one whose writer died: far longer than any ingest takes between the two.
OWED_GRACE_S = 60.0
#: How many of a chat's latest messages are searched for the pending send an echo belongs to.
ECHO_WINDOW = 20


def sign(secret: str, body: bytes) -> str:
    """``X-Syncd-Signature`` value: ``sha256=<hex HMAC-SHA256 of the raw body>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def message_view(message: Message) -> dict[str, Any]:
    """A message as the API and callbacks show it (camelCase, JSON-ready)."""
    return message.model_dump(by_alias=True, mode="json")


def app_visible(message: Message) -> tuple[Any, ...]:
    """What the app sees of a message it wrote itself: a platform change that leaves all of
    this alone (its echo filling sender fields, the platform's own edit time) is no news to it."""
    return (message.text, message.html, message.subject, message.attachments, message.deleted_at,
            message.delivery_state)


async def queue_callbacks(
    ctx: EngineContext, integration: Integration, changed: list[tuple[str, Message]],
    app_before: dict[str, Message] | None = None,
) -> None:
    """Queue one callback per change; ``app_before`` holds the app's own messages as they
    were before this write (by platform id), so echoes of its sends and edits stay quiet."""
    if not ctx.settings.app_callback_url:
        return
    items: list[OutboxItem] = []
    now = utcnow()
    for kind, message in changed:
        if message.origin == "app" and kind == "created":
            continue  # the app created it; it already knows
        before = (app_before or {}).get(message.external_message_id or "")
        if kind == "updated" and message.origin == "app" and before is not None \
                and app_visible(before) == app_visible(message):
            continue
        if kind == "created" and await _echo_of_pending_send(ctx, message):
            continue
        version = message.updated_at.isoformat()
        key = f"cb:{message.id}:{kind}:{version}"
        payload = {
            "id": key,
            "type": f"message.{kind}",
            "customerId": message.customer_id,
            "platform": message.platform,
            "message": message_view(message),
        }
        # Every value is of its field's type already: built without a validation pass, every
        # field given (a default left to ``model_construct`` costs more than validating).
        items.append(OutboxItem.model_construct(
            id=new_id(), customer_id=message.customer_id, idempotency_key=key, type=CALLBACK,
            payload=payload, integration_id=integration.id, status="queued", attempts=0,
            next_attempt_at=now, lease_until=None, result=None, error=None, created_at=now, updated_at=now,
        ))
    # One round-trip for the batch's callbacks, not one each.
    await ctx.store.outbox_put_many(items)
    # Queued (or not owed): the marks the write left go. Dying before this line queues them
    # again from the sweep under the same ids, which the outbox keeps once.
    await ctx.store.callbacks_queued(message.id for _, message in changed)


async def sweep_owed_callbacks(ctx: EngineContext, grace_s: float = OWED_GRACE_S) -> int:
    """Queue the callbacks that a process died before queueing; returns how many messages."""
    if not ctx.settings.app_callback_url:
        return 0
    owed = await ctx.store.owed_callbacks(ctx.now() - timedelta(seconds=grace_s))
    by_integration: dict[str, list[tuple[str, Message]]] = {}
    for kind, message in owed:
        by_integration.setdefault(message.integration_id, []).append((kind, message))
    for integration_id, changed in by_integration.items():
        integration = await ctx.store.get_integration(integration_id)
        if integration is None:
            await ctx.store.callbacks_queued(m.id for _, m in changed)
            continue
        await queue_callbacks(ctx, integration, changed)
    return len(owed)


async def _echo_of_pending_send(ctx: EngineContext, message: Message) -> bool:
    """The platform's echo of an app message whose send has not returned yet.

    ``record_sent`` will merge this document into the app's own and delete it, so announcing
    it as new would hand the app a duplicate of its own message. Recognised by what the
    platform tells us before the send returns: our own account wrote it, in a chat where an
    app message with the same text is still pending.
    """
    if message.origin != "platform" or message.direction != "outbound" or message.chat_id is None:
        return False
    recent, _ = await ctx.store.list_messages(message.chat_id, limit=ECHO_WINDOW)
    text = (message.text or "").strip()
    return any(
        m.origin == "app" and m.external_message_id is None and m.delivery_state == "pending"
        and (m.text or "").strip() == text
        for m in recent
    )


class CallbackSender:
    """Delivers one callback; raises a retryable error unless the app answered 2xx."""

    def __init__(self, ctx: EngineContext, transport: httpx.AsyncBaseTransport | None = None):
        self.ctx = ctx
        self.client = httpx.AsyncClient(timeout=ctx.settings.http_timeout_s,
                                        transport=transport or AiohttpTransport(shared_tls()))

    async def deliver(self, item: OutboxItem) -> dict[str, Any]:
        url = self.ctx.settings.app_callback_url
        if not url:
            raise PermanentError("SYNCD_APP_CALLBACK_URL is not set")
        if item.payload.get("type") == "message.created":
            message_id = (item.payload.get("message") or {}).get("id")
            if message_id and await self.ctx.store.get_message(message_id) is None:
                # Merged into the app's own message since (a late-recognised echo), or
                # removed with its chat: there is nothing new for the app to hold.
                return {"skipped": "the message no longer exists"}
        body = json.dumps(item.payload, separators=(",", ":"), default=str).encode()
        headers = {"content-type": "application/json"}
        secret = self.ctx.settings.app_webhook_secret
        if secret is not None:
            headers["x-syncd-signature"] = sign(secret.get_secret_value(), body)
        try:
            response = await self.client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise TransientError(f"callback failed: {type(exc).__name__}") from None
        if response.status_code >= 300:
            raise TransientError(f"callback answered {response.status_code}", status=response.status_code)
        return {"status": response.status_code}

    async def aclose(self) -> None:
        await self.client.aclose()
