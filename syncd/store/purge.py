"""Removing an integration's synced data (``DELETE /integrations/{id}?purge=true``)."""

from __future__ import annotations

from syncd.store.documents import StoreBase


class PurgeStore(StoreBase):
    """Deletes what one integration synced, and says how much."""

    async def purge_integration(self, integration_id: str) -> dict[str, int]:
        """Remove the integration's chats with their messages, the user mappings it made, its
        sync status and its queued webhook deliveries and app events. Mappings the app put
        itself (no integration named) are the app's, and stay."""
        chat_ids = [d["_id"] async for d in self.chats.find({"integrationId": integration_id}, {"_id": 1})]
        messages = await self.messages.delete_many(
            {"$or": [{"integrationId": integration_id}, {"chatId": {"$in": chat_ids}}]})
        chats = await self.chats.delete_many({"_id": {"$in": chat_ids}})
        users = await self.user_platforms.delete_many({"integrationId": integration_id})
        status = await self.sync_status.delete_many({"integrationId": integration_id})
        await self.inbox.delete_many({"integrationId": integration_id})
        await self.outbox.delete_many({"integrationId": integration_id, "status": {"$in": ["queued", "sending"]}})
        return {"chats": chats.deleted_count, "messages": messages.deleted_count,
                "userPlatforms": users.deleted_count, "syncStatus": status.deleted_count}
