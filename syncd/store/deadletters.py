"""Dead letters: app events the outbox gave up on (``dead``) and webhook deliveries the inbox
gave up on (``failed``), found by integration or customer and put back in their queue."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pymongo import DESCENDING

from syncd.models import InboxItem, OutboxItem
from syncd.store.documents import StoreBase, _strip

DeadLetter = tuple[Literal["event"], OutboxItem] | tuple[Literal["delivery"], InboxItem]


class DeadLettersStore(StoreBase):
    """Reads and revives what the ``inbox`` and ``outbox`` collections parked."""

    async def list_dead_letters(self, *, integration_id: str | None = None, customer_id: str | None = None,
                                customer_integrations: list[str] | None = None,
                                limit: int = 100) -> list[DeadLetter]:
        """Newest first. An app event carries its customer; a delivery belongs to a customer
        only through its integration, so the caller resolves the customer's integrations into
        ``customer_integrations``."""
        events: dict[str, Any] = {"status": "dead"}
        deliveries: dict[str, Any] = {"status": "failed"}
        if integration_id is not None:
            events["integrationId"] = integration_id
            deliveries["integrationId"] = integration_id
        if customer_id is not None:
            events["customerId"] = customer_id
            deliveries.setdefault("integrationId", {"$in": customer_integrations or []})
        dead = await (self.outbox.find(events).sort([("updatedAt", DESCENDING), ("_id", DESCENDING)])
                      .limit(limit).to_list(limit))
        failed = await (self.inbox.find(deliveries).sort([("receivedAt", DESCENDING), ("_id", DESCENDING)])
                        .limit(limit).to_list(limit))
        found: list[tuple[datetime, DeadLetter]] = []
        for doc in dead:
            item = OutboxItem.model_validate(_strip(doc))
            found.append((item.updated_at, ("event", item)))
        for doc in failed:
            delivery = InboxItem.model_validate(_strip(doc))
            found.append((delivery.received_at, ("delivery", delivery)))
        found.sort(key=lambda pair: pair[0], reverse=True)
        return [letter for _, letter in found[:limit]]

    async def dead_letter_counts(self, integration_id: str) -> dict[str, int]:
        """``{"events": n, "deliveries": n}`` parked for one integration."""
        return {
            "events": await self.outbox.count_documents({"status": "dead", "integrationId": integration_id}),
            "deliveries": await self.inbox.count_documents({"status": "failed", "integrationId": integration_id}),
        }

    async def get_dead_letter(self, id: str) -> DeadLetter | None:
        doc = await self.outbox.find_one({"_id": id, "status": "dead"})
        if doc is not None:
            return "event", OutboxItem.model_validate(_strip(doc))
        doc = await self.inbox.find_one({"_id": id, "status": "failed"})
        if doc is not None:
            return "delivery", InboxItem.model_validate(_strip(doc))
        return None

    async def revive_dead_letter(self, id: str, now: datetime) -> bool:
        """Put a dead letter back in its queue, due now, with a fresh attempt budget (its last
        error is kept until the next attempt replaces it). False when there is no such dead
        letter: never parked, already revived, or revived by another replica just now."""
        fresh = {"leaseUntil": None, "nextAttemptAt": now, "attempts": 0}
        revived = await self.outbox.update_one(
            {"_id": id, "status": "dead"}, {"$set": {**fresh, "status": "queued", "waits": 0, "updatedAt": now}})
        if revived.modified_count:
            return True
        revived = await self.inbox.update_one({"_id": id, "status": "failed"}, {"$set": {**fresh, "status": "pending"}})
        return bool(revived.modified_count)
