"""The one ingest path: map -> dedupe -> upsert -> notify.

Webhooks, polls, imports and resyncs all end here with universal ``MessageData`` (already
mapped by the connector through its mapping file). This module attaches them to their chats,
decides direction from ``user_platforms``, names senders the platform gave only an id (from
the integration's users, ``syncd.engine.users``), writes them through the store's merge rules in one
bulk call, and queues the app callbacks for what really changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import structlog

from syncd import metrics
from syncd.engine.context import EngineContext
from syncd.engine.notifier import queue_callbacks
from syncd.models import Chat, Integration, Message
from syncd.store import Checkpoint, WriteResult
from syncd.universal import ChatData, MessageData

log = structlog.get_logger(__name__)


@dataclass
class IngestResult:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    skipped: int = 0
    chats: dict[str, Chat] = field(default_factory=dict)
    #: What became of the ``checkpoint`` given to ``ingest`` (``WriteResult.checkpointed``).
    checkpointed: bool | None = None

    def add(self, other: IngestResult) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.deleted += other.deleted
        self.skipped += other.skipped


async def ingest(
    ctx: EngineContext,
    integration: Integration,
    messages: list[MessageData],
    chats: list[ChatData] | None = None,
    *,
    source: str,
    known_chats: dict[str, Chat] | None = None,
    guess_new: bool | None = None,
    identities: tuple[set[str], set[str]] | None = None,
    checkpoint: Checkpoint | None = None,
) -> IngestResult:
    """Store ``messages`` (and ``chats``) for ``integration``; returns what changed.

    When the integration restricts its chats (``settings.importChats``), messages of chats
    that are not imported are skipped: the customer chose not to sync them.

    ``guess_new`` (default: for webhooks) writes messages that look new without reading them
    first (see ``Store.upsert_messages``); ``identities`` are the account's own ids and
    emails when the caller already holds them (an import reads them once per chat);
    ``checkpoint`` is an import page's sync status, which the store may write with the
    messages (``IngestResult.checkpointed``; see ``Store.upsert_messages``).
    """
    store = ctx.store
    result = IngestResult()
    by_id: dict[str, Chat] = dict(known_chats or {})
    restricted = integration.settings.get("importChats") is not None
    messages, result.skipped = await _chats_of_answers(ctx, integration, messages)

    # Every chat these messages name, read at once (a webhook batch may span many chats).
    named = [*(c.external_chat_id for c in chats or []), *(m.external_chat_id for m in messages)]
    unknown = {ext for ext in named if ext not in by_id}
    if unknown:
        by_id.update(await store.find_chats(integration.customer_id, integration.platform, unknown))
    for chat_data in chats or []:
        existing = by_id.get(chat_data.external_chat_id)
        if restricted and (existing is None or not existing.imported):
            continue
        imported = None if restricted else True
        if existing is not None and store.chat_holds(existing, integration.id, chat_data, imported=imported):
            continue  # the chat (stored, or written earlier in this batch) already says so
        by_id[chat_data.external_chat_id] = await store.upsert_chat(
            integration.customer_id, integration.id, integration.platform, chat_data, imported=imported,
        )

    # Most polls find nothing: the account's identities are read only when a message needs them.
    self_ids, self_emails = identities or (await self_identities(ctx, integration) if messages else (set(), set()))
    messages = await ctx.users.name_senders(ctx, integration, messages)
    rows: list[Message] = []
    for data in messages:
        chat = by_id.get(data.external_chat_id)
        if chat is None and not restricted:
            chat = by_id[data.external_chat_id] = await store.upsert_chat(
                integration.customer_id, integration.id, integration.platform,
                ChatData(external_chat_id=data.external_chat_id), imported=True,
            )
        if chat is None or (restricted and not chat.imported):
            result.skipped += 1
            continue
        rows.append(_row(integration, chat, data, self_ids, self_emails))

    app_before = await _app_messages(ctx, integration, rows)
    if guess_new is None:
        guess_new = source == "webhook"
    # The changed messages are only wanted for app callbacks; building them costs a validation each.
    report = bool(ctx.settings.app_callback_url)
    # The chats' lastMessageAt moves first ($max, idempotent): once the page is written its
    # checkpoint may be too, and a crash after that must not leave the chat behind.
    await _touch_chats(ctx, integration, rows, by_id)
    written = await store.upsert_messages(rows, guess_new=guess_new, report=report, checkpoint=checkpoint) \
        if rows else WriteResult(0, 0, 0, 0, [])
    result.checkpointed = written.checkpointed
    result.inserted, result.updated = written.inserted, written.updated
    result.unchanged, result.deleted = written.unchanged, written.deleted
    result.chats = by_id
    for kind, count in (("created", written.inserted), ("updated", written.updated),
                        ("unchanged", written.unchanged), ("deleted", written.deleted)):
        if count:
            metrics.INGESTED.labels(integration.platform, source, kind).inc(count)
    await queue_callbacks(ctx, integration, written.changed, app_before)
    if rows:
        log.debug("ingested", source=source, platform=integration.platform, integration_id=integration.id,
                  inserted=written.inserted, updated=written.updated, unchanged=written.unchanged,
                  deleted=written.deleted)
    return result


async def _chats_of_answers(ctx: EngineContext, integration: Integration,
                            messages: list[MessageData]) -> tuple[list[MessageData], int]:
    """A message whose platform names no chat, only the message it answers
    (``externalThreadId``: an agent's reply to a ticket), joins that message's chat; one that
    answers a message syncd does not know starts a chat named by that message (the app still
    hears of it); one that names neither is left out (counted as skipped)."""
    wanted = {m.external_thread_id for m in messages if not m.external_chat_id and m.external_thread_id}
    if not any(not m.external_chat_id for m in messages):
        return messages, 0
    found = await ctx.store.find_messages(integration.customer_id, integration.platform, sorted(wanted)) \
        if wanted else {}
    kept: list[MessageData] = []
    for message in messages:
        if not message.external_chat_id and message.external_thread_id:
            parent = found.get(message.external_thread_id)
            chat = parent.external_chat_id if parent is not None else message.external_thread_id
            message = message.model_copy(update={"external_chat_id": chat})
        if message.external_chat_id:
            kept.append(message)
        else:
            log.warning("a message that names no chat is left out", platform=integration.platform,
                        integration_id=integration.id, message=message.external_message_id)
    return kept, len(messages) - len(kept)


async def self_identities(ctx: EngineContext, integration: Integration) -> tuple[set[str], set[str]]:
    """The ids and email addresses of the customer's own accounts on the integration's platform."""
    return await ctx.store.self_identities(integration.customer_id, integration.platform)


async def _app_messages(ctx: EngineContext, integration: Integration, rows: list[Message]) -> dict[str, Message]:
    """The app's own messages among ``rows``, as stored before this write. Only our own
    account's messages can be one (the app sends through it), so only those are looked up,
    all in one read."""
    wanted = {row.external_message_id for row in rows if row.direction == "outbound" and row.external_message_id}
    if not wanted:
        return {}
    stored = await ctx.store.find_messages(integration.customer_id, integration.platform, sorted(wanted))
    return {ext: message for ext, message in stored.items() if message.origin == "app"}


def _row(integration: Integration, chat: Chat, data: MessageData, self_ids: set[str], self_emails: set[str]) -> Message:
    sender = data.sender
    outbound = data.from_self or (sender.external_user_id is not None and sender.external_user_id in self_ids) or (
        sender.email is not None and sender.email.lower() in self_emails
    )
    return Message(
        customer_id=integration.customer_id,
        integration_id=integration.id,
        platform=integration.platform,
        chat_id=chat.id,
        external_chat_id=data.external_chat_id,
        external_message_id=data.external_message_id,
        external_thread_id=data.external_thread_id,
        sender=sender,
        direction="outbound" if outbound else "inbound",
        text=data.text,
        html=data.html,
        subject=data.subject,
        attachments=data.attachments or [],
        sent_at=data.sent_at,
        edited_at=data.edited_at,
        deleted_at=data.deleted_at,
        delivery_state=data.delivery_state,
        extra=data.extra,
    )


async def _touch_chats(ctx: EngineContext, integration: Integration, rows: list[Message], chats: dict[str, Chat]) -> None:
    latest: dict[str, datetime] = {}  # the newest sent_at of each chat
    for row in rows:
        if row.sent_at and (row.external_chat_id not in latest or row.sent_at > latest[row.external_chat_id]):
            latest[row.external_chat_id] = row.sent_at
    due: dict[str, datetime] = {}
    for ext, sent_at in latest.items():
        last = chats[ext].last_message_at
        if last is None or sent_at > last:
            due[ext] = sent_at
    if due:
        await ctx.store.touch_chats(integration.id, {chats[ext].id: at for ext, at in due.items()})
        for ext, at in due.items():
            chats[ext] = chats[ext].model_copy(update={"last_message_at": at, "integration_id": integration.id})
