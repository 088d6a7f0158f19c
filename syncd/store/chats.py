"""Chats: one per platform conversation, keyed by the platform's chat id."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pymongo import UpdateOne

from syncd.models import Chat, new_id
from syncd.store.documents import StoreBase, _strip
from syncd.universal import ChatData


class ChatsStore(StoreBase):
    """The ``chats`` collection; deleting or repointing a chat carries its messages along."""

    async def upsert_chat(self, customer_id: str, integration_id: str, platform: str,
                          data: ChatData, *, imported: bool | None = None) -> Chat:
        key = {"customerId": customer_id, "platform": platform,
               "externalChatId": data.external_chat_id}
        # The caller passes the active integration, so a chat first seen under "unknown" or
        # under a replaced integration follows it.
        sets: dict[str, Any] = {"integrationId": integration_id}
        chat_id = new_id()
        on_insert: dict[str, Any] = {"_id": chat_id, "id": chat_id, "createdAt": self.clock()}
        for name, value, default in (("name", data.name, None), ("kind", data.kind, "channel")):
            if value is not None:
                sets[name] = value
            else:
                on_insert[name] = default
        if data.participants:
            sets["participants"] = list(data.participants)
        else:
            on_insert["participants"] = []
        if imported:
            sets["imported"] = True
        else:  # never turns an imported chat back into a not-imported one
            on_insert["imported"] = False
        update: dict[str, Any] = {"$set": sets, "$setOnInsert": on_insert}
        if data.last_message_at is not None:
            update["$max"] = {"lastMessageAt": data.last_message_at}
        return Chat.model_validate(_strip(await self._upsert(self.chats, key, update)))

    @staticmethod
    def chat_holds(chat: Chat, integration_id: str, data: ChatData, *, imported: bool | None = None) -> bool:
        """Whether ``upsert_chat`` of ``data`` would leave ``chat`` (as stored) as it is: a
        webhook batch names the same chat with every delivery, and a write that changes
        nothing is a round-trip for nothing."""
        last = data.last_message_at
        return (chat.integration_id == integration_id
                and (data.name is None or chat.name == data.name)
                and (data.kind is None or chat.kind == data.kind)
                and (not data.participants or chat.participants == list(data.participants))
                and (not imported or chat.imported)
                # Stored dates keep milliseconds: a later microsecond is no later there.
                and (last is None or (chat.last_message_at is not None
                                      and chat.last_message_at >= last.replace(microsecond=last.microsecond // 1000 * 1000))))

    async def get_chat(self, id: str) -> Chat | None:
        doc = await self.chats.find_one({"_id": id})
        return Chat.model_validate(_strip(doc)) if doc else None

    async def find_chat(self, customer_id: str, platform: str,
                        external_chat_id: str) -> Chat | None:
        doc = await self.chats.find_one({"customerId": customer_id, "platform": platform,
                                         "externalChatId": external_chat_id})
        return Chat.model_validate(_strip(doc)) if doc else None

    async def find_chats(self, customer_id: str, platform: str,
                         external_chat_ids: Iterable[str]) -> dict[str, Chat]:
        """The stored chats with these platform ids, by platform id, in one read."""
        query = {"customerId": customer_id, "platform": platform,
                 "externalChatId": {"$in": sorted(set(external_chat_ids))}}
        return {d["externalChatId"]: Chat.model_validate(_strip(d)) async for d in self.chats.find(query)}

    async def touch_chats(self, integration_id: str, latest: dict[str, datetime]) -> None:
        """Move each chat's ``lastMessageAt`` forward (never back) and onto ``integration_id``,
        for many chats in one round-trip; ``latest`` maps chat ids to their newest message."""
        if latest:
            await self.chats.bulk_write([
                UpdateOne({"_id": chat_id}, {"$set": {"integrationId": integration_id},
                                             "$max": {"lastMessageAt": at}})
                for chat_id, at in latest.items()], ordered=False)

    async def list_chats(self, *, customer_id: str | None = None,
                         integration_id: str | None = None) -> list[Chat]:
        query = {}
        if customer_id is not None:
            query["customerId"] = customer_id
        if integration_id is not None:
            query["integrationId"] = integration_id
        cursor = self.chats.find(query).sort([("createdAt", 1), ("_id", 1)])
        return [Chat.model_validate(_strip(d)) async for d in cursor]

    async def delete_chat(self, id: str) -> int:
        removed = await self.messages.delete_many({"chatId": id})
        await self.sync_status.delete_many({"chatId": id})
        await self.chats.delete_one({"_id": id})
        return removed.deleted_count

    async def repoint_chats(self, customer_id: str, platform: str, integration_id: str) -> int:
        active = {integration_id}
        async for doc in self.integrations.find(
                {"customerId": customer_id, "platform": platform, "status": {"$in": ["active", "paused"]}},
                {"_id": 1}):
            active.add(doc["_id"])
        stale = {"customerId": customer_id, "platform": platform,
                 "integrationId": {"$nin": sorted(active)}}
        chat_ids = [d["_id"] async for d in self.chats.find(stale, {"_id": 1})]
        if not chat_ids:
            return 0
        result = await self.chats.update_many({"_id": {"$in": chat_ids}},
                                              {"$set": {"integrationId": integration_id}})
        await self.messages.update_many(
            {"chatId": {"$in": chat_ids}},
            {"$set": {"integrationId": integration_id}, "$inc": {"rev": 1}})
        return result.modified_count
