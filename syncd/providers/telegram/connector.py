"""Telegram Bot API: what ``mappings/telegram.yaml`` cannot say.

- ``getUpdates`` polling from a stored offset, and never both it and a webhook (409 Conflict):
  with a public URL ``maintain`` registers the webhook and ``poll`` does nothing; without one
  ``maintain`` deletes the webhook and ``poll`` reads ``getUpdates``. Updates are confirmed by
  the *next* call's offset, and the engine stores the new offset only after the batch was
  ingested, so a failed ingest reads the same batch again.
- ``message_id`` is unique only per chat: ids are composed as ``{chat.id}:{message_id}`` by the
  mapping, and decoded again here before sending.
- Mapping context the rule language cannot compute: names joined from optional parts, the
  file attachment list, whether the author is this bot.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from syncd.kit.declarative import ManifestConnector
from syncd.kit.errors import AlreadyDone, PermanentError
from syncd.kit.manifest import Request
from syncd.universal import Changes, ChatData, OutgoingMessage, PollResult, SendResult

#: File-carrying Message fields -> the MIME type to assume when Telegram gives none.
FILE_KEYS = {"document": None, "audio": None, "video": None, "voice": "audio/ogg",
             "video_note": "video/mp4", "animation": None, "sticker": None, "photo": "image/jpeg"}
#: Telegram picks a random next update_id after a week without updates, possibly below a
#: stored offset (which would confirm, i.e. drop, it). Older offsets are not sent: every
#: update before them was confirmed by the polls in between.
OFFSET_MAX_AGE_S = 6 * 24 * 3600
GET_UPDATES = Request(method="POST", path="/getUpdates")
#: Updates per getUpdates call (Telegram's maximum).
PAGE_LIMIT = 100


def full_name(person: dict[str, Any]) -> str | None:
    """``first_name last_name`` of a User or private Chat (either part may be missing)."""
    return " ".join(p for p in (person.get("first_name"), person.get("last_name")) if p) or None


def files(raw: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The message's files as attachment dicts. No URL is kept: Telegram's download URL
    carries the bot token (``/file/bot{token}/...``); ``externalId`` is the ``file_id``."""
    found = []
    for key, default_type in FILE_KEYS.items():
        item = raw.get(key)
        if key == "photo" and isinstance(item, list) and item:
            item = item[-1]  # the sizes are listed smallest first
        if isinstance(item, dict) and item.get("file_id"):
            found.append({"name": item.get("file_name"), "mimeType": item.get("mime_type") or default_type,
                          "size": item.get("file_size"), "externalId": item["file_id"]})
    return found or None


def bare_id(value: str | None) -> str | None:
    """A composed ``{chat}:{message_id}`` as the bare message_id (a bare one is kept)."""
    return value.rpartition(":")[2] or value if value else None


class TelegramConnector(ManifestConnector):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # The token starts with the bot's own user id.
        self._self_id = str(self.scope()["credentials"]["botToken"]).partition(":")[0]
        #: True once this connector made sure no webhook blocks getUpdates.
        self._polling_ready = False

    def map_as(self, kind: str, section: str, record: dict[str, Any], ctx: dict[str, Any]) -> Any:
        if kind == "message":
            sender = record.get("from") or {}
            from_self = bool(sender.get("is_bot")) and str(sender.get("id")) == self._self_id
            ctx = {**ctx, "fromSelf": from_self, "senderName": full_name(sender), "files": files(record)}
        else:
            private = record.get("type") == "private"
            ctx = {**ctx, "fullName": full_name(record), "participants": [str(record["id"])] if private else None}
        return super().map_as(kind, section, record, ctx)

    # -- export: composed ids decoded ------------------------------------------------------
    def _decoded(self, message: OutgoingMessage, operation: str) -> OutgoingMessage:
        if operation != "send" and not message.external_message_id:
            raise PermanentError(f"cannot {operation} a message that has no Telegram id yet")
        if operation != "delete" and not message.text:
            raise PermanentError(f"telegram needs message text to {operation} a message (html-only is not sent)")
        return dataclasses.replace(message, external_message_id=bare_id(message.external_message_id),
                                   external_thread_id=bare_id(message.external_thread_id))

    async def send(self, message: OutgoingMessage) -> SendResult:
        return await super().send(self._decoded(message, "send"))

    async def edit(self, message: OutgoingMessage) -> SendResult:
        try:
            return await super().edit(self._decoded(message, "edit"))
        except AlreadyDone:  # "message is not modified": a retried edit that went through
            return SendResult(message.external_message_id or "")

    async def delete(self, message: OutgoingMessage) -> None:
        await super().delete(self._decoded(message, "delete"))

    # -- getUpdates polling, or the webhook ----------------------------------------------------
    async def _unregister(self) -> None:
        await self.call("deleteWebhook", self.required("unregister_webhook"), self.scope())
        self._polling_ready = True

    async def poll(self, state: Any, chats: list[ChatData], lookback_s: float) -> PollResult:
        mark = dict(state or {"offset": None})
        if state is None or self.ctx.public_webhooks:
            # The first mark reads nothing, so the first poll imports the pending updates
            # (the only "history" a bot has). With a webhook, getUpdates would answer 409.
            return PollResult(Changes(), mark)
        if not self._polling_ready:
            await self._unregister()
        now = self.ctx.clock()
        allowed = (self.required("register_webhook").body or {}).get("allowed_updates")
        params: dict[str, Any] = {"timeout": 0, "limit": PAGE_LIMIT, "allowed_updates": allowed}
        if mark.get("offset") is not None and now - float(mark.get("at") or now) < OFFSET_MAX_AGE_S:
            params["offset"] = mark["offset"]
        try:
            _, answer = await self.call("getUpdates", GET_UPDATES, self.scope(), body=params)
        except PermanentError as exc:
            if exc.status == 409:
                self._polling_ready = False  # a webhook was set behind our back: delete it next time
            raise
        updates = [u for u in (answer or {}).get("result") or [] if isinstance(u, dict)]
        if updates:
            # One batch per poll: asking for the next batch would confirm this one before
            # the engine stored it.
            mark = {"offset": max(int(u["update_id"]) for u in updates) + 1, "at": now}
        return PollResult(self._changes(updates), mark)

    def _changes(self, updates: list[dict[str, Any]]) -> Changes:
        changes, chats = Changes(), dict[str, ChatData]()
        for update in updates:
            found = self.changes_of(update)
            changes.messages += found.messages
            chats.update((chat.external_chat_id, chat) for chat in found.chats)  # the newer title wins
        changes.chats = list(chats.values())
        return changes

    async def maintain(self, state: Any) -> Any:
        if not self.ctx.public_webhooks:
            await self._unregister()
            return {"mode": "polling"}
        await self.call("setWebhook", self.required("register_webhook"), self.scope())
        self._polling_ready = False
        return {"mode": "webhook", "url": self.ctx.webhook_url}

    async def unsubscribe(self, state: Any) -> None:
        """Remove the webhook, so Telegram stops calling a URL that answers 404 once the
        integration is gone. Only ours: a webhook the bot's owner set elsewhere since is left."""
        _, answer = await self.call("webhook_info", self.named("webhookInfo"), self.scope())
        info = (answer or {}).get("result") or {}
        if info.get("url") and info["url"] != self.ctx.webhook_url:
            return
        await super().unsubscribe(state)


CONNECTOR = TelegramConnector
