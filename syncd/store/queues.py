"""The inbox (webhook deliveries to process) and the outbox (app events to send): claimed
under a lease, retried, and counted by state."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.errors import BulkWriteError, DuplicateKeyError

from syncd.models import InboxItem, OutboxItem, new_id
from syncd.store.documents import _AFTER, _DUP_KEY, StoreBase, _doc, _strip

_INBOX_STATES = ("pending", "done", "failed")
_OUTBOX_STATES = ("queued", "sending", "sent", "dead")


class QueuesStore(StoreBase):
    """The ``inbox`` and ``outbox`` collections."""

    # -- inbox ----------------------------------------------------------------------------
    async def inbox_put(self, item: InboxItem) -> bool:
        try:
            await self.inbox.insert_one(_doc(item))
            return True
        except DuplicateKeyError:
            return False

    async def inbox_claim(self, now: datetime, lease_s: float) -> InboxItem | None:
        doc = await self.inbox.find_one_and_update(
            {"status": "pending", "nextAttemptAt": {"$lte": now},
             "$or": [{"leaseUntil": None}, {"leaseUntil": {"$lte": now}}]},
            {"$set": {"leaseUntil": now + timedelta(seconds=lease_s)}, "$inc": {"attempts": 1}},
            sort=[("nextAttemptAt", ASCENDING), ("receivedAt", ASCENDING)],
            return_document=_AFTER)
        return InboxItem.model_validate(_strip(doc)) if doc else None

    async def inbox_claim_many(self, now: datetime, lease_s: float, limit: int) -> list[InboxItem]:
        """Up to ``limit`` due deliveries, oldest first, in two round-trips (not two per item).

        The claim stamps a token, so when another replica took some of the same items between
        our read and our write, one more read says which ones are ours."""
        due = {"status": "pending", "nextAttemptAt": {"$lte": now},
               "$or": [{"leaseUntil": None}, {"leaseUntil": {"$lte": now}}]}
        docs = await (self.inbox.find(due).sort([("nextAttemptAt", ASCENDING), ("receivedAt", ASCENDING)])
                      .limit(limit).to_list(limit))
        if not docs:
            return []
        token, until = new_id(), now + timedelta(seconds=lease_s)
        ids = [d["_id"] for d in docs]
        claimed = await self.inbox.update_many(
            {**due, "_id": {"$in": ids}},
            {"$set": {"leaseUntil": until, "claimToken": token}, "$inc": {"attempts": 1}})
        if claimed.modified_count != len(ids):
            docs = await self.inbox.find({"_id": {"$in": ids}, "claimToken": token}).to_list(None)
            docs.sort(key=lambda d: ids.index(d["_id"]))
        else:
            for doc in docs:
                doc.update(leaseUntil=until, attempts=doc.get("attempts", 0) + 1)
        return [InboxItem.model_validate(_strip(d)) for d in docs]

    async def inbox_done(self, id: str) -> None:
        await self.inbox.update_one({"_id": id}, {"$set": {"status": "done", "leaseUntil": None}})

    async def inbox_done_many(self, ids: list[str]) -> None:
        if ids:
            await self.inbox.update_many({"_id": {"$in": ids}},
                                         {"$set": {"status": "done", "leaseUntil": None}})

    async def inbox_retry(self, id: str, error: str, next_attempt_at: datetime) -> None:
        await self.inbox.update_one({"_id": id}, {"$set": {
            "status": "pending", "leaseUntil": None, "error": error,
            "nextAttemptAt": next_attempt_at}})

    async def inbox_defer(self, ids: list[str], until: datetime, reason: str) -> None:
        """Put claimed deliveries back untouched until ``until`` (their integration is paused):
        the claim's attempt is given back, so waiting never uses up their retries."""
        if ids:
            await self.inbox.update_many({"_id": {"$in": ids}}, {
                "$set": {"status": "pending", "leaseUntil": None, "error": reason, "nextAttemptAt": until},
                "$inc": {"attempts": -1}})

    async def inbox_wake(self, integration_id: str, now: datetime) -> int:
        """Make the integration's waiting deliveries due now (after a resume)."""
        result = await self.inbox.update_many(
            {"integrationId": integration_id, "status": "pending", "nextAttemptAt": {"$gt": now}},
            {"$set": {"nextAttemptAt": now}})
        return result.modified_count

    async def inbox_fail(self, id: str, error: str) -> None:
        await self.inbox.update_one({"_id": id}, {"$set": {
            "status": "failed", "leaseUntil": None, "error": error}})

    async def inbox_counts(self, integration_id: str | None = None) -> dict[str, int]:
        match = {} if integration_id is None else {"integrationId": integration_id}
        return await self._counts(self.inbox, match, _INBOX_STATES)

    async def list_inbox(self, *, status: str | None = None, integration_id: str | None = None,
                         limit: int = 100) -> list[InboxItem]:
        query = {}
        if status is not None:
            query["status"] = status
        if integration_id is not None:
            query["integrationId"] = integration_id
        cursor = self.inbox.find(query).sort([("receivedAt", DESCENDING), ("_id", DESCENDING)])
        docs = await cursor.limit(limit).to_list(limit)
        return [InboxItem.model_validate(_strip(d)) for d in docs]

    async def _counts(self, collection: Any, match: dict,
                      states: tuple[str, ...]) -> dict[str, int]:
        counts = dict.fromkeys(states, 0)
        pipeline = [{"$match": match}, {"$group": {"_id": "$status", "n": {"$sum": 1}}}]
        async for row in collection.aggregate(pipeline):
            counts[row["_id"]] = row["n"]
        return counts

    # -- outbox ---------------------------------------------------------------------------
    async def outbox_put(self, item: OutboxItem) -> tuple[OutboxItem, bool]:
        try:
            await self.outbox.insert_one(_doc(item))
            return item, True
        except DuplicateKeyError:
            doc = await self.outbox.find_one({"customerId": item.customer_id,
                                              "idempotencyKey": item.idempotency_key})
            if doc is None:
                raise
            return OutboxItem.model_validate(_strip(doc)), False

    async def outbox_put_many(self, items: list[OutboxItem]) -> None:
        """Queue several items in one round-trip; those whose idempotency key is already
        queued are kept as they are."""
        if not items:
            return
        try:
            await self.outbox.insert_many([_doc(item) for item in items], ordered=False)
        except BulkWriteError as exc:
            if any(error.get("code") != _DUP_KEY for error in exc.details.get("writeErrors", [])):
                raise

    async def outbox_claim(self, now: datetime, lease_s: float, *, types: list[str] | None = None,
                           exclude_types: list[str] | None = None,
                           exclude_chats: list[str] | None = None) -> OutboxItem | None:
        """The next due item, or one whose worker died mid-send (its lease ran out);
        ``exclude_chats``: not a callback about a message of these chats (one in hand)."""
        query: dict[str, Any] = {"$or": [
            {"status": "queued", "nextAttemptAt": {"$lte": now}},
            {"status": "sending", "leaseUntil": {"$lte": now}}]}
        type_filter: dict[str, Any] = {}
        if types is not None:
            type_filter["$in"] = list(types)
        if exclude_types:
            type_filter["$nin"] = list(exclude_types)
        if type_filter:
            query["type"] = type_filter
        if exclude_chats:
            query["payload.message.chatId"] = {"$nin": list(exclude_chats)}
        doc = await self.outbox.find_one_and_update(
            query,
            {"$set": {"status": "sending", "leaseUntil": now + timedelta(seconds=lease_s),
                      "updatedAt": now},
             "$inc": {"attempts": 1}},
            sort=[("nextAttemptAt", ASCENDING), ("createdAt", ASCENDING)],
            return_document=_AFTER)
        return OutboxItem.model_validate(_strip(doc)) if doc else None

    async def _outbox_set(self, id: str, sets: dict[str, Any]) -> None:
        await self.outbox.update_one(
            {"_id": id}, {"$set": {**sets, "leaseUntil": None, "updatedAt": self.clock()}})

    async def outbox_done(self, id: str, result: dict) -> None:
        await self._outbox_set(id, {"status": "sent", "result": result})

    async def outbox_retry(self, id: str, error: str, next_attempt_at: datetime, *,
                           waiting: bool = False) -> None:
        """Queue the item again; ``waiting`` counts the attempt as a wait (for its create,
        for new credentials), which does not use up the item's attempt budget."""
        update: dict[str, Any] = {"$set": {"status": "queued", "error": error, "nextAttemptAt": next_attempt_at,
                                           "leaseUntil": None, "updatedAt": self.clock()}}
        if waiting:
            update["$inc"] = {"waits": 1}
        await self.outbox.update_one({"_id": id}, update)

    async def outbox_failures(self, id: str) -> int:
        """Attempts of the item that failed or are in hand, not counting those that waited."""
        doc = await self.outbox.find_one({"_id": id}, {"attempts": 1, "waits": 1})
        return (doc.get("attempts") or 0) - (doc.get("waits") or 0) if doc else 0

    async def outbox_wake(self, integration_id: str, now: datetime) -> int:
        """Make the integration's queued events due now (after a resume), whatever backoff
        their waiting had reached."""
        result = await self.outbox.update_many(
            {"integrationId": integration_id, "status": "queued", "nextAttemptAt": {"$gt": now}},
            {"$set": {"nextAttemptAt": now}})
        return result.modified_count

    async def outbox_dead(self, id: str, error: str) -> None:
        await self._outbox_set(id, {"status": "dead", "error": error})

    async def find_outbox(self, customer_id: str, idempotency_key: str) -> OutboxItem | None:
        doc = await self.outbox.find_one({"customerId": customer_id,
                                          "idempotencyKey": idempotency_key})
        return OutboxItem.model_validate(_strip(doc)) if doc else None

    async def get_outbox(self, id: str) -> OutboxItem | None:
        doc = await self.outbox.find_one({"_id": id})
        return OutboxItem.model_validate(_strip(doc)) if doc else None

    async def outbox_counts(self, customer_id: str | None = None) -> dict[str, int]:
        match = {} if customer_id is None else {"customerId": customer_id}
        return await self._counts(self.outbox, match, _OUTBOX_STATES)

    async def list_outbox(self, *, status: str | None = None, limit: int = 100) -> list[OutboxItem]:
        query = {} if status is None else {"status": status}
        cursor = self.outbox.find(query).sort([("createdAt", DESCENDING), ("_id", DESCENDING)])
        docs = await cursor.limit(limit).to_list(limit)
        return [OutboxItem.model_validate(_strip(d)) for d in docs]
