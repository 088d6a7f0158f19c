"""Sync status: an integration's (or a chat's) import cursor, counts and poll marks."""

from __future__ import annotations

from typing import Any

from syncd.merge import normalize
from syncd.models import FullSync, SyncCounts, SyncStatus
from syncd.store.documents import _AFTER, StoreBase, _strip


class SyncStatusStore(StoreBase):
    """The ``sync_status`` collection, one document per integration and chat."""

    async def get_sync_status(self, integration_id: str,
                              chat_id: str | None = None) -> SyncStatus | None:
        doc = await self.sync_status.find_one({"integrationId": integration_id, "chatId": chat_id})
        return SyncStatus.model_validate(_strip(doc)) if doc else None

    async def save_sync_status(self, status: SyncStatus) -> None:
        sets = {k: v for k, v in status.doc().items() if k != "id"}
        sets["updatedAt"] = self.clock()
        key = {"integrationId": status.integration_id, "chatId": status.chat_id}
        await self._upsert(self.sync_status, key,
                           {"$set": sets, "$setOnInsert": {"_id": status.id, "id": status.id}})

    async def checkpoint_sync_status(self, status: SyncStatus) -> bool:
        """Save ``status`` if its stored plan is still the one it belongs to (same
        ``startedAt``), in one round-trip; False when a newer plan replaced it. A status that
        is not stored at all is saved."""
        if status.started_at is None:
            await self.save_sync_status(status)
            return True
        result = await self.sync_status.update_one(*self._checkpoint_update(status))
        return result.matched_count > 0 or await self._checkpoint_missed(status)

    def _checkpoint_update(self, status: SyncStatus) -> tuple[dict[str, Any], dict[str, Any]]:
        """The filter and update of a checkpoint: it applies only to its own plan."""
        sets = {k: v for k, v in status.doc().items() if k != "id"}
        sets["updatedAt"] = self.clock()
        key = {"integrationId": status.integration_id, "chatId": status.chat_id}
        return {**key, "startedAt": normalize(status.started_at)}, {"$set": sets}

    async def _checkpoint_missed(self, status: SyncStatus) -> bool:
        """After a checkpoint matched nothing: False when another plan holds the key; a
        status that is not stored at all is saved."""
        key = {"integrationId": status.integration_id, "chatId": status.chat_id}
        if await self.sync_status.find_one(key, {"_id": 1}) is not None:
            return False
        await self.save_sync_status(status)
        return True

    async def update_sync_status(self, integration_id: str, chat_id: str | None = None,
                                 **fields: Any) -> SyncStatus:
        """Write only the given fields (snake_case), so two writers of one status document
        (the importer's cursor, the poller's mark) do not overwrite each other's fields."""
        sets: dict[str, Any] = {}
        for name, value in fields.items():
            info = SyncStatus.model_fields.get(name)
            if info is None or name in ("id", "integration_id", "chat_id"):
                raise TypeError(f"sync status field cannot be updated: {name}")
            sets[info.alias or name] = value.doc() if hasattr(value, "doc") else value
        sets["updatedAt"] = self.clock()
        fresh = SyncStatus(integration_id=integration_id, chat_id=chat_id).doc()
        on_insert = {k: v for k, v in fresh.items()
                     if k not in sets and k not in ("integrationId", "chatId")}
        key = {"integrationId": integration_id, "chatId": chat_id}
        saved = await self._upsert(self.sync_status, key, {
            "$set": sets, "$setOnInsert": {**on_insert, "_id": fresh["id"]}})
        return SyncStatus.model_validate(_strip(saved))

    async def integrations_in_phases(self, phases: tuple[str, ...]) -> set[str]:
        """The integrations with a sync status in one of ``phases``: one round-trip for all of
        them, where asking each integration costs one each (ten thousand at a start)."""
        cursor = self.sync_status.find({"phase": {"$in": list(phases)}}, {"integrationId": 1, "_id": 0})
        return {d["integrationId"] async for d in cursor}

    async def list_sync_status(self, integration_id: str) -> list[SyncStatus]:
        cursor = self.sync_status.find({"integrationId": integration_id}).sort([("_id", 1)])
        return [SyncStatus.model_validate(_strip(d)) async for d in cursor]

    # -- periodic full syncs -----------------------------------------------------------------
    async def claim_full_sync(self, integration_id: str, now: Any, next_at: Any, run: FullSync) -> bool:
        """Start the integration's full sync if it is due at ``now`` and no one started it
        first (replicas race for it): the next one is set to ``next_at``."""
        doc = await self.sync_status.find_one_and_update(
            {"integrationId": integration_id, "chatId": None, "nextFullSyncAt": {"$lte": normalize(now)}},
            {"$set": {"nextFullSyncAt": next_at, "fullSync": run.doc(), "updatedAt": self.clock()}})
        return doc is not None

    async def full_sync_chat_done(self, integration_id: str, counts: SyncCounts, now: Any) -> FullSync | None:
        """Count one chat of the running full sync as done, with what it changed; the run as
        it stands then (finished once every chat is done)."""
        doc = await self.sync_status.find_one_and_update(
            {"integrationId": integration_id, "chatId": None, "fullSync.finishedAt": None},
            {"$inc": {"fullSync.chatsDone": 1, "fullSync.inserted": counts.inserted,
                      "fullSync.updated": counts.updated, "fullSync.deleted": counts.deleted}},
            return_document=_AFTER)
        if doc is None:
            return None
        run = FullSync.model_validate(doc["fullSync"])
        if run.chats_done >= run.chats:
            run.finished_at = now
            await self.sync_status.update_one({"_id": doc["_id"]}, {"$set": {"fullSync.finishedAt": now}})
        return run
