"""The one export path: app change events -> durable outbox -> platform.

``accept`` stores an event before the HTTP answer (idempotent on the event id); ``deliver``
runs in the outbox worker: it registers the outgoing message before sending it (so the
platform's echo is recognised, not imported as a second message), sends, and records the
platform's message id on the stored message.
"""

from __future__ import annotations

from typing import Any

import structlog

from syncd.engine.context import EngineContext, connector_for
from syncd.engine.errors import Invalid, NotFound
from syncd.engine.importer import chat_data
from syncd.kit.errors import PermanentError, RetryableError
from syncd.models import AppEvent, Chat, Integration, Message, OutboxItem, Sender
from syncd.universal import ChatData, MessageData, OutgoingMessage

log = structlog.get_logger(__name__)


class Waiting(RetryableError):
    """The event itself is fine but waits for something else; not counted as a failed attempt."""


class WaitingForCreate(Waiting):
    """An update/delete for a message whose create has not reached the platform yet."""


class WaitingForIntegration(Waiting):
    """The integration is in ``error`` (e.g. its credentials were revoked) until an operator
    puts new credentials, or paused until it is resumed; its events are kept until then, not
    dead-lettered."""


class Exporter:
    def __init__(self, ctx: EngineContext):
        self.ctx = ctx

    # -- accepting ---------------------------------------------------------------------
    async def resolve_integration(self, event: AppEvent) -> Integration:
        """customerId + platform -> the customer's active integration (never the payload's guess)."""
        store = self.ctx.store
        if event.chat_id:
            chat = await store.get_chat(event.chat_id)
            if chat is None or chat.customer_id != event.customer_id or chat.platform != event.platform:
                raise NotFound("unknown_chat", f"no chat {event.chat_id!r} for this customer and platform")
            integration = await store.get_integration(chat.integration_id)
            if integration is not None and integration.status in ("active", "paused"):
                return integration
        # A paused integration keeps its events until it is resumed.
        active = await store.list_integrations(customer_id=event.customer_id, platform=event.platform,
                                               status=("active", "paused"))
        if not active:
            raise Invalid(
                "no_integration", f"customer {event.customer_id!r} has no active {event.platform!r} integration",
            )
        # Several active integrations: the one that owns the chat; else the newest.
        if event.external_chat_id:
            chat = await store.find_chat(event.customer_id, event.platform, event.external_chat_id)
            for integration in active:
                if chat is not None and chat.integration_id == integration.id:
                    return integration
        return max(active, key=lambda i: i.created_at)

    async def accept(self, event: AppEvent) -> tuple[OutboxItem, bool]:
        """Store the event in the outbox; returns (item, created). Raises ``NotFound`` or ``Invalid``."""
        existing = await self._existing(event)
        if existing is not None:
            return existing, False
        integration = await self.resolve_integration(event)
        connector_cls = self.ctx.connectors.connector_class(integration.platform)
        if event.type == "message.updated" and not connector_cls.can_edit:
            raise Invalid("unsupported", f"{integration.platform} does not allow editing messages")
        if event.type == "message.deleted" and not connector_cls.can_delete:
            raise Invalid("unsupported", f"{integration.platform} does not allow deleting messages")
        payload = event.model_dump(by_alias=True, mode="json")
        item = OutboxItem(
            customer_id=event.customer_id, idempotency_key=event.id, type=event.type,
            payload=payload, integration_id=integration.id,
        )
        return await self.ctx.store.outbox_put(item)

    async def _existing(self, event: AppEvent) -> OutboxItem | None:
        # outbox_put is the real idempotency check; looking first answers a repeat with the
        # first result even when the integration has changed since.
        return await self.ctx.store.find_outbox(event.customer_id, event.id)

    # -- delivering ----------------------------------------------------------------------
    async def deliver(self, item: OutboxItem) -> dict[str, Any]:
        event = AppEvent.model_validate(item.payload)
        integration = await self.ctx.store.get_integration(item.integration_id or "")
        if integration is None or integration.status == "deleted":
            raise PermanentError("the integration was deleted")
        if integration.status != "active":
            raise WaitingForIntegration(f"integration is {integration.status}: {integration.status_reason or ''}")
        connector = await connector_for(self.ctx, integration)
        if event.type == "message.created":
            return await self._create(integration, connector, event)
        message = await self._find(event)
        if message is None:
            # Retried within the attempt budget: its create may still be on its way here
            # (another replica claimed it a moment ago), else it is dead-lettered.
            raise RetryableError("no stored message matches message.id / externalMessageId")
        if message.deleted_at is not None:
            # Deleted (by the app or at the platform) before this event was taken: a deleted
            # message is never edited nor deleted again, there or here.
            return {"messageId": message.id, "externalMessageId": message.external_message_id,
                    "skipped": "the message was deleted"}
        if message.external_message_id is None:
            if message.delivery_state == "failed":
                raise PermanentError("the message's create was dead-lettered; there is nothing to change")
            raise WaitingForCreate("the message has not been delivered to the platform yet")
        chat = await self.ctx.store.get_chat(message.chat_id) if message.chat_id else None
        out = OutgoingMessage(
            chat=chat_data(chat) if chat else ChatData(external_chat_id=message.external_chat_id),
            text=event.message.text, html=event.message.html, subject=event.message.subject,
            external_message_id=message.external_message_id, external_thread_id=message.external_thread_id,
            app_message_id=message.app_message_id,
        )
        if event.type == "message.updated":
            result = await connector.edit(out)
            # Only what the event says changes (update_message erases a field given as None).
            # The platform's edit time when it says one, so its echo of the edit matches.
            given = {name: getattr(event.message, name) for name in ("text", "html", "subject")}
            await self.ctx.store.update_message(
                message.id, **{k: v for k, v in given.items() if v is not None},
                edited_at=result.edited_at or self.ctx.now(), live_only=True,
            )
        else:
            await connector.delete(out)
            await self.ctx.store.update_message(message.id, deleted_at=self.ctx.now())
        return {"messageId": message.id, "externalMessageId": message.external_message_id}

    async def _find(self, event: AppEvent) -> Message | None:
        store, m = self.ctx.store, event.message
        found = None
        if m.id:
            found = await store.find_message(event.customer_id, event.platform, app_message_id=m.id) or \
                await store.find_message(event.customer_id, event.platform, id=m.id)
        if found is None and m.external_message_id:
            found = await store.find_message(event.customer_id, event.platform, external_message_id=m.external_message_id)
        return found

    async def _create(self, integration: Integration, connector: Any, event: AppEvent) -> dict[str, Any]:
        store = self.ctx.store
        chat = await self._chat(integration, event)
        self_ids, self_emails = await store.self_identities(integration.customer_id, integration.platform)
        registered = Message(
            customer_id=integration.customer_id, integration_id=integration.id, platform=integration.platform,
            chat_id=chat.id, external_chat_id=chat.external_chat_id,
            external_thread_id=event.message.external_thread_id,
            sender=Sender(external_user_id=next(iter(sorted(self_ids)), None),
                          email=next(iter(sorted(self_emails)), None)),
            direction="outbound", text=event.message.text, html=event.message.html,
            subject=event.message.subject, origin="app", app_message_id=event.message.id or event.id,
            delivery_state="pending", sent_at=self.ctx.now(),
        )
        pending = await store.insert_pending_message(registered)
        if pending.external_message_id is not None:
            # Sent by an earlier attempt that died before the outbox item was closed.
            return {"messageId": pending.id, "externalMessageId": pending.external_message_id}
        latest, _ = await store.list_messages(chat.id, limit=5)
        reply_to = next((m for m in latest if m.external_message_id and m.id != pending.id), None)
        out = OutgoingMessage(
            chat=chat_data(chat), text=event.message.text, html=event.message.html,
            subject=event.message.subject, external_thread_id=event.message.external_thread_id,
            app_message_id=pending.app_message_id,
            reply_to=_as_data(reply_to) if reply_to else None,
        )
        # Registered by an earlier attempt: its send may have reached the platform with its
        # answer lost (a timeout, a dropped connection). Found there, it is not sent again.
        earlier = pending.id != registered.id
        result = (await connector.reconcile_send(out) if earlier else None) or await connector.send(out)
        message = await store.record_sent(
            pending.id, result.external_message_id, sent_at=result.sent_at or self.ctx.now(),
            external_thread_id=result.external_thread_id, extra=result.extra,
        )
        return {"messageId": message.id, "externalMessageId": message.external_message_id}

    async def _chat(self, integration: Integration, event: AppEvent) -> Chat:
        store = self.ctx.store
        if event.chat_id:
            chat = await store.get_chat(event.chat_id)
            if chat is None:
                raise PermanentError(f"chat {event.chat_id!r} no longer exists")
            return chat
        chat = await store.find_chat(integration.customer_id, integration.platform, event.external_chat_id or "")
        if chat is not None:
            return chat
        # A chat the app knows and we have not imported: record it so its messages have a home.
        return await store.upsert_chat(
            integration.customer_id, integration.id, integration.platform,
            ChatData(external_chat_id=event.external_chat_id or ""),
        )

    async def failed(self, item: OutboxItem, error: str) -> None:
        """Dead-lettered: mark the registered message failed so the app can see it."""
        if item.type != "message.created":
            return
        event = AppEvent.model_validate(item.payload)
        message = await self._find(event)
        if message is not None and message.external_message_id is None:
            await self.ctx.store.update_message(message.id, delivery_state="failed")


def _as_data(message: Message) -> MessageData:
    return MessageData(
        external_chat_id=message.external_chat_id, external_message_id=message.external_message_id or "",
        external_thread_id=message.external_thread_id, sender=message.sender, text=message.text,
        html=message.html, subject=message.subject, sent_at=message.sent_at, extra=message.extra,
    )
