"""Paged reads for people browsing the data (the web console), and putting a dead letter
back in its queue. Every read here is bounded: a page, a count, or one document per key."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING

from syncd.models import Chat, InboxItem, Integration, OutboxItem, SyncStatus
from syncd.store.documents import StoreBase, _strip

#: The largest page any listing here returns.
MAX_BROWSE_PAGE = 200


def _bounded(limit: int) -> int:
    return max(1, min(limit, MAX_BROWSE_PAGE))


class BrowseStore(StoreBase):
    """Pages of integrations, chats and failures with their totals; per-page summaries."""

    async def page_integrations(self, *, customer_id: str | None = None, platform: str | None = None,
                                status: str | None = None, skip: int = 0,
                                limit: int = 50) -> tuple[list[Integration], int]:
        query: dict[str, Any] = {"status": status if status else {"$ne": "deleted"}}
        if customer_id:
            query["customerId"] = customer_id
        if platform:
            query["platform"] = platform
        total = await self.integrations.count_documents(query)
        cursor = self.integrations.find(query, {"credentials": 0}).sort(
            [("customerId", ASCENDING), ("platform", ASCENDING), ("_id", ASCENDING)])
        docs = await cursor.skip(max(0, skip)).limit(_bounded(limit)).to_list(_bounded(limit))
        return [Integration.model_validate(_strip(d)) for d in docs], total

    async def page_chats(self, *, integration_id: str | None = None, customer_id: str | None = None,
                         search: str | None = None, skip: int = 0,
                         limit: int = 50) -> tuple[list[Chat], int]:
        """Chats, most recently active first; ``search`` matches the name or the platform's
        chat id, case-insensitively, as plain text."""
        query: dict[str, Any] = {}
        if integration_id:
            query["integrationId"] = integration_id
        if customer_id:
            query["customerId"] = customer_id
        if search:
            pattern = {"$regex": re.escape(search), "$options": "i"}
            query["$or"] = [{"name": pattern}, {"externalChatId": pattern}]
        total = await self.chats.count_documents(query)
        cursor = self.chats.find(query).sort([("lastMessageAt", DESCENDING), ("_id", ASCENDING)])
        docs = await cursor.skip(max(0, skip)).limit(_bounded(limit)).to_list(_bounded(limit))
        return [Chat.model_validate(_strip(d)) for d in docs], total

    async def count_messages(self, chat_id: str) -> int:
        return await self.messages.count_documents({"chatId": chat_id})

    async def top_statuses(self, integration_ids: list[str]) -> dict[str, SyncStatus]:
        """Each integration's own sync status (not its chats'), by integration id."""
        cursor = self.sync_status.find({"integrationId": {"$in": integration_ids}, "chatId": None})
        return {d["integrationId"]: SyncStatus.model_validate(_strip(d)) async for d in cursor}

    async def page_chat_statuses(self, integration_id: str, *, skip: int = 0,
                                 limit: int = 50) -> tuple[list[SyncStatus], int]:
        query = {"integrationId": integration_id, "chatId": {"$ne": None}}
        total = await self.sync_status.count_documents(query)
        cursor = self.sync_status.find(query).sort([("updatedAt", DESCENDING), ("_id", ASCENDING)])
        docs = await cursor.skip(max(0, skip)).limit(_bounded(limit)).to_list(_bounded(limit))
        return [SyncStatus.model_validate(_strip(d)) for d in docs], total

    async def chat_phases(self, integration_ids: list[str]) -> dict[str, dict[str, int]]:
        """How many chat imports of each integration are in each phase."""
        pipeline = [{"$match": {"integrationId": {"$in": integration_ids}, "chatId": {"$ne": None}}},
                    {"$group": {"_id": {"i": "$integrationId", "p": "$phase"}, "n": {"$sum": 1}}}]
        phases: dict[str, dict[str, int]] = {}
        async for row in self.sync_status.aggregate(pipeline):
            phases.setdefault(row["_id"]["i"], {})[row["_id"]["p"]] = row["n"]
        return phases

    async def last_message_times(self, integration_ids: list[str]) -> dict[str, datetime]:
        pipeline = [{"$match": {"integrationId": {"$in": integration_ids}}},
                    {"$group": {"_id": "$integrationId", "last": {"$max": "$lastMessageAt"}}}]
        return {row["_id"]: row["last"] async for row in self.chats.aggregate(pipeline) if row.get("last")}

    async def last_webhook_times(self, integration_ids: list[str]) -> dict[str, datetime]:
        pipeline = [{"$match": {"integrationId": {"$in": integration_ids}}},
                    {"$group": {"_id": "$integrationId", "last": {"$max": "$receivedAt"}}}]
        return {row["_id"]: row["last"] async for row in self.inbox.aggregate(pipeline) if row.get("last")}

    async def messages_since(self, integration_ids: list[str], since: datetime) -> dict[str, int]:
        """Messages stored since ``since``, by integration (the console's throughput)."""
        pipeline = [{"$match": {"integrationId": {"$in": integration_ids}, "createdAt": {"$gte": since}}},
                    {"$group": {"_id": "$integrationId", "n": {"$sum": 1}}}]
        return {row["_id"]: row["n"] async for row in self.messages.aggregate(pipeline)}

    async def failure_counts(self, integration_ids: list[str]) -> dict[str, int]:
        """Failed webhook deliveries and dead app events, by integration."""
        counts: dict[str, int] = {}
        for collection, status in ((self.inbox, "failed"), (self.outbox, "dead")):
            pipeline = [{"$match": {"integrationId": {"$in": integration_ids}, "status": status}},
                        {"$group": {"_id": "$integrationId", "n": {"$sum": 1}}}]
            async for row in collection.aggregate(pipeline):
                counts[row["_id"]] = counts.get(row["_id"], 0) + row["n"]
        return counts

    async def page_dead_events(self, *, skip: int = 0, limit: int = 50) -> tuple[list[OutboxItem], int]:
        query = {"status": "dead"}
        total = await self.outbox.count_documents(query)
        cursor = self.outbox.find(query).sort([("updatedAt", DESCENDING), ("_id", ASCENDING)])
        docs = await cursor.skip(max(0, skip)).limit(_bounded(limit)).to_list(_bounded(limit))
        return [OutboxItem.model_validate(_strip(d)) for d in docs], total

    async def page_failed_deliveries(self, *, skip: int = 0,
                                     limit: int = 50) -> tuple[list[InboxItem], int]:
        query = {"status": "failed"}
        total = await self.inbox.count_documents(query)
        cursor = self.inbox.find(query).sort([("receivedAt", DESCENDING), ("_id", ASCENDING)])
        docs = await cursor.skip(max(0, skip)).limit(_bounded(limit)).to_list(_bounded(limit))
        return [InboxItem.model_validate(_strip(d)) for d in docs], total

    async def requeue_dead_event(self, id: str) -> bool:
        """A dead app event queued again with a fresh attempt budget; False if none is dead."""
        result = await self.outbox.update_one(
            {"_id": id, "status": "dead"},
            {"$set": {"status": "queued", "nextAttemptAt": self.clock(), "leaseUntil": None,
                      "attempts": 0, "waits": 0, "updatedAt": self.clock()}})
        return result.modified_count == 1

    async def requeue_failed_delivery(self, id: str) -> bool:
        """A failed webhook delivery pending again; False if none with this id failed."""
        result = await self.inbox.update_one(
            {"_id": id, "status": "failed"},
            {"$set": {"status": "pending", "nextAttemptAt": self.clock(), "leaseUntil": None,
                      "attempts": 0}})
        return result.modified_count == 1

    async def display_names(self, customer_id: str, platform: str, external_user_ids: list[str]) -> dict[str, str]:
        """The known display names of these platform users (a page of senders)."""
        query = {"customerId": customer_id, "platform": platform,
                 "externalUserId": {"$in": sorted(set(external_user_ids))}, "displayName": {"$ne": None}}
        return {d["externalUserId"]: d["displayName"] async for d in self.user_platforms.find(query)}
