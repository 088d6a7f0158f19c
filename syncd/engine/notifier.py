"""Callbacks to the app: every stored change that came from a platform is POSTed to
``SYNCD_APP_CALLBACK_URL``, signed like app events, and retried until acknowledged.

Callbacks ride the durable outbox (type ``callback``) so a restart or an app outage loses
none; they have their own worker so a slow app never delays exports to platforms.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import httpx

from syncd.engine.context import EngineContext
from syncd.models import Integration, Message, OutboxItem
from syncd.providers.errors import PermanentError, TransientError

CALLBACK = "callback"


def sign(secret: str, body: bytes) -> str:
    """``X-Syncd-Signature`` value: ``sha256=<hex HMAC-SHA256 of the raw body>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def message_view(message: Message) -> dict[str, Any]:
    """A message as the API and callbacks show it (camelCase, JSON-ready)."""
    return message.model_dump(by_alias=True, mode="json")


async def queue_callbacks(ctx: EngineContext, integration: Integration, changed: list[tuple[str, Message]]) -> None:
    if not ctx.settings.app_callback_url:
        return
    for kind, message in changed:
        if message.origin == "app" and kind == "created":
            continue  # the app created it; it already knows
        version = message.updated_at.isoformat()
        key = f"cb:{message.id}:{kind}:{version}"
        payload = {
            "id": key,
            "type": f"message.{kind}",
            "customerId": message.customer_id,
            "platform": message.platform,
            "message": message_view(message),
        }
        await ctx.store.outbox_put(OutboxItem(
            customer_id=message.customer_id, idempotency_key=key, type=CALLBACK,
            payload=payload, integration_id=integration.id,
        ))


class CallbackSender:
    """Delivers one callback; raises a retryable error unless the app answered 2xx."""

    def __init__(self, ctx: EngineContext, transport: httpx.AsyncBaseTransport | None = None):
        self.ctx = ctx
        self.client = httpx.AsyncClient(timeout=ctx.settings.http_timeout_s, transport=transport)

    async def deliver(self, item: OutboxItem) -> dict[str, Any]:
        url = self.ctx.settings.app_callback_url
        if not url:
            raise PermanentError("SYNCD_APP_CALLBACK_URL is not set")
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
