"""Messages as the app sees them: lookups, pages of a chat behind opaque cursors, the app's
own messages (pending until sent, then given their platform id) and its edits and deletes."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pymongo import DESCENDING
from pymongo.errors import DuplicateKeyError

from syncd.merge import absorb_echo, normalize, sent_changes
from syncd.models import Message
from syncd.store.documents import (
    _AFTER,
    MAX_ROUNDS,
    StoreBase,
    StoreConflict,
    _doc,
    _strip,
)

#: The largest page ``list_messages`` returns, whatever the caller asks for.
MAX_PAGE = 1000


def encode_cursor(sent_at: datetime | None, message_id: str) -> str:
    key = [sent_at.isoformat() if sent_at else None, message_id]
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime | None, str]:
    """The sort key a cursor stands for; ``ValueError`` for anything we did not hand out."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        sent_at, message_id = json.loads(raw)
        if not isinstance(message_id, str):
            raise TypeError("message id")
        return (normalize(datetime.fromisoformat(sent_at)) if sent_at else None), message_id
    except (binascii.Error, ValueError, TypeError, OverflowError, RecursionError) as exc:
        # OverflowError: a date at the edge of the calendar with an offset that moves it past.
        raise ValueError("invalid cursor") from exc


class MessagesStore(StoreBase):
    """The ``messages`` collection, except the merge of platform pages (:mod:`.upserts`)."""

    if TYPE_CHECKING:
        # Defined by :class:`.upserts.UpsertsStore`, the other part of ``Store``.
        async def _read_keys(self, keys: Iterable[tuple[str, str, str]]) -> dict[tuple, dict]: ...

    async def get_message(self, id: str) -> Message | None:
        doc = await self.messages.find_one({"_id": id})
        return Message.model_validate(_strip(doc)) if doc else None

    async def find_message(self, customer_id: str, platform: str, *, id: str | None = None,
                           external_message_id: str | None = None,
                           app_message_id: str | None = None) -> Message | None:
        """The message named by our id, the platform's id or the app's id (first that matches)."""
        scope = {"customerId": customer_id, "platform": platform}
        for field_name, value in (("_id", id), ("externalMessageId", external_message_id),
                                  ("appMessageId", app_message_id)):
            if value is not None:
                doc = await self.messages.find_one({**scope, field_name: value})
                if doc:
                    return Message.model_validate(_strip(doc))
        return None

    async def find_messages(self, customer_id: str, platform: str,
                            external_message_ids: Iterable[str]) -> dict[str, Message]:
        """The stored messages with these platform ids, by platform id, in one read."""
        found = await self._read_keys((customer_id, platform, ext) for ext in external_message_ids)
        return {key[2]: Message.model_validate(_strip(doc)) for key, doc in found.items()}

    async def list_messages(self, chat_id: str, *, cursor: str | None = None,
                            limit: int = 50) -> tuple[list[Message], str | None]:
        """One page of a chat, newest first (tombstones included so the app can drop them);
        ``limit`` is capped at ``MAX_PAGE``; a cursor we did not hand out is a ``ValueError``."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        limit = min(limit, MAX_PAGE)
        query: dict[str, Any] = {"chatId": chat_id}
        if cursor:
            sent_at, last_id = decode_cursor(cursor)
            if sent_at is None:
                query.update({"sentAt": None, "_id": {"$lt": last_id}})
            else:
                # Comparisons never cross BSON types: messages without sentAt sort last and
                # must be asked for separately.
                query["$or"] = [{"sentAt": {"$lt": sent_at}},
                                {"sentAt": sent_at, "_id": {"$lt": last_id}},
                                {"sentAt": None}]
        docs = await (self.messages.find(query).sort([("sentAt", DESCENDING), ("_id", DESCENDING)])
                      .limit(limit + 1).to_list(limit + 1))
        page = [Message.model_validate(_strip(d)) for d in docs[:limit]]
        next_cursor = None
        if len(docs) > limit:
            last = docs[limit - 1]
            next_cursor = encode_cursor(normalize(last.get("sentAt")), last["_id"])
        return page, next_cursor

    async def insert_pending_message(self, msg: Message) -> Message:
        if msg.app_message_id:
            existing = await self.find_message(msg.customer_id, msg.platform,
                                               app_message_id=msg.app_message_id)
            if existing:
                return existing
        doc = {**normalize(_doc(msg)), "rev": 0}
        doc["deliveryState"] = doc["deliveryState"] or "pending"
        try:
            await self.messages.insert_one(doc)
        except DuplicateKeyError:
            found = await self.get_message(msg.id) or await self.find_message(
                msg.customer_id, msg.platform, external_message_id=msg.external_message_id)
            if found is None:
                raise
            return found
        return Message.model_validate(_strip(doc))

    async def record_sent(self, message_id: str, external_message_id: str, *,
                          sent_at: datetime | None = None, external_thread_id: str | None = None,
                          extra: dict | None = None) -> Message:
        """Give the app's pending message its platform id. When the platform's echo was stored
        first, its platform fields move into the app's document and the echo document goes,
        so exactly one document remains."""
        absorbed: dict[str, Any] = {}  # survives a lost round: the echo is already deleted then
        for _ in range(MAX_ROUNDS):
            doc = await self.messages.find_one({"_id": message_id})
            if doc is None:
                raise KeyError(f"message {message_id} not found")
            if doc.get("externalMessageId") != external_message_id:
                echo = await self.messages.find_one(
                    {"customerId": doc["customerId"], "platform": doc["platform"],
                     "externalMessageId": external_message_id})
                if echo is not None:
                    absorbed = absorb_echo(absorbed, echo)
                    gone = await self.messages.delete_one({"_id": echo["_id"],
                                                           "rev": echo.get("rev")})
                    if gone.deleted_count == 0:
                        continue
            sets = sent_changes(doc, external_message_id, sent_at, external_thread_id,
                                extra, absorbed, self.clock())
            sets["rev"] = (doc.get("rev") or 0) + 1
            try:
                saved = await self.messages.find_one_and_update(
                    {"_id": message_id, "rev": doc.get("rev")}, {"$set": sets},
                    return_document=_AFTER)
            except DuplicateKeyError:
                continue  # the echo was stored again meanwhile: absorb it too
            if saved is not None:
                return Message.model_validate(_strip(saved))
        raise StoreConflict(f"message {message_id} kept conflicting while recording its send")

    async def update_message(self, id: str, *, live_only: bool = False, **fields: Any) -> Message | None:
        """Set message fields as given (snake_case; ``None`` erases): the app's own edits,
        deletes and delivery states, which are not platform merges. ``live_only``: not if the
        message is a tombstone by then (an edit racing a delete never rewrites it)."""
        sets: dict[str, Any] = {}
        for name, value in fields.items():
            info = Message.model_fields.get(name)
            if info is None or name in ("id", "created_at"):
                raise TypeError(f"message field cannot be updated: {name}")
            if hasattr(value, "doc"):
                value = value.doc()
            elif isinstance(value, list):
                value = [v.doc() if hasattr(v, "doc") else v for v in value]
            sets[info.alias or name] = value
        sets["updatedAt"] = self.clock()
        query: dict[str, Any] = {"_id": id, "deletedAt": None} if live_only else {"_id": id}
        doc = await self.messages.find_one_and_update(
            query, {"$set": sets, "$inc": {"rev": 1}}, return_document=_AFTER)
        return Message.model_validate(_strip(doc)) if doc else None

    async def live_external_ids(self, chat_id: str) -> set[str]:
        query = {"chatId": chat_id, "deletedAt": None, "externalMessageId": {"$type": "string"}}
        return {d["externalMessageId"]
                async for d in self.messages.find(query, {"externalMessageId": 1})}

    async def mark_deleted(self, chat_id: str, external_message_ids: Iterable[str],
                           at: datetime) -> int:
        ids = sorted(set(external_message_ids))
        total = 0
        for start in range(0, len(ids), 500):
            result = await self.messages.update_many(
                {"chatId": chat_id, "externalMessageId": {"$in": ids[start:start + 500]},
                 "deletedAt": None},
                {"$set": {"deletedAt": at, "updatedAt": self.clock()}, "$inc": {"rev": 1}})
            total += result.modified_count
        return total
