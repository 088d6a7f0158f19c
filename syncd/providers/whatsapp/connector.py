"""WhatsApp Business Cloud API: what its manifest (``mappings/whatsapp.yaml``) cannot say.

- customers' edits and deletes arrive as ``type: edit`` / ``type: revoke`` messages naming the
  original wamid: an edit carries the edited message inside it, a revoke nothing but the id;
- media (image/document/audio/video/sticker) are one object, listed as the attachment;
- there is no history API, and asking for one is refused, never answered empty (an empty page
  would pass for "everything is gone at the platform");
- WhatsApp sends plain text: a message without text is refused before any request.
"""

from __future__ import annotations

from typing import Any

from syncd.kit.errors import PermanentError
from syncd.providers.meta import GraphConnector
from syncd.universal import ChatData, HistoryPage, OutgoingMessage, SendResult

MEDIA_TYPES = ("image", "document", "audio", "video", "sticker")


def attachments(message: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The media object of a media message (metadata only: the bytes need a separate,
    authenticated download)."""
    media = message.get(message.get("type") or "")
    if message.get("type") not in MEDIA_TYPES or not isinstance(media, dict):
        return None
    return [{"externalId": str(media["id"]) if media.get("id") is not None else None,
             "mimeType": media.get("mime_type"), "name": media.get("filename"), "url": media.get("url")}]


def unwrapped(raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The message a ``messages[]`` object stands for, and its ctx; ``None`` for an edit or
    revoke that names no original."""
    at = raw.get("timestamp")
    if raw.get("type") == "edit":
        edit = raw.get("edit") or {}
        message = edit.get("message")
        inner: dict[str, Any] = message if isinstance(message, dict) else {}
        if not edit.get("original_message_id"):
            return None
        return {**inner, "from": raw.get("from")}, {"messageId": str(edit["original_message_id"]), "editedAt": at,
                                                    "attachments": attachments(inner)}
    if raw.get("type") == "revoke":
        original = (raw.get("revoke") or {}).get("original_message_id")
        return ({"from": raw.get("from")}, {"messageId": str(original), "deletedAt": at}) if original else None
    return raw, {"sentAt": at, "attachments": attachments(raw)}


class WhatsAppConnector(GraphConnector):
    def map_as(self, kind: str, section: str, record: dict[str, Any], ctx: dict[str, Any]) -> Any:
        if section == "message":
            found = unwrapped(record)
            return None if found is None else super().map_as(kind, section, found[0], {**ctx, **found[1]})
        mapped = super().map_as(kind, section, record, ctx)
        if isinstance(mapped, ChatData):
            mapped = mapped.model_copy(update={"participants": [mapped.external_chat_id]})
        return mapped

    async def fetch_history_page(self, chat: ChatData, cursor: str | None) -> HistoryPage:
        raise PermanentError("WhatsApp has no history API: there is nothing to re-read, and every "
                             "message received by webhook is kept")

    async def send(self, message: OutgoingMessage) -> SendResult:
        if not (message.text or "").strip():
            raise PermanentError("WhatsApp sends plain text: the message has no text")
        return await super().send(message)


CONNECTOR = WhatsAppConnector
