"""Named leases with an owner and an expiry: one replica at a time runs a given job."""

from __future__ import annotations

from datetime import timedelta

from pymongo import UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from syncd.store.documents import _AFTER, StoreBase


class LeasesStore(StoreBase):
    """The ``leases`` collection, one document per lease name."""

    async def acquire_lease(self, name: str, owner: str, ttl_s: float) -> bool:
        now = self.clock()
        try:
            await self.leases.find_one_and_update(
                {"_id": name, "$or": [{"expiresAt": {"$lt": now}}, {"owner": owner}]},
                {"$set": {"owner": owner, "expiresAt": now + timedelta(seconds=ttl_s)}},
                upsert=True, return_document=_AFTER)
            return True
        except DuplicateKeyError:
            return False  # the lease exists, unexpired, with another owner

    async def acquire_leases(self, leases: list[tuple[str, float]], owner: str) -> bool:
        """Take ``(name, ttl_s)`` leases in order, in one round-trip: True when every one was
        taken. The first that another owner holds stops it; the ones before it stay taken (a
        scheduled poll's turn of its interval, then the poll's own lease)."""
        now = self.clock()
        try:
            await self.leases.bulk_write([
                UpdateOne({"_id": name, "$or": [{"expiresAt": {"$lt": now}}, {"owner": owner}]},
                          {"$set": {"owner": owner, "expiresAt": now + timedelta(seconds=ttl_s)}}, upsert=True)
                for name, ttl_s in leases], ordered=True)
            return True
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors") or []
            if errors and all(error.get("code") == 11000 for error in errors):
                return False  # a lease exists, unexpired, with another owner
            raise

    async def renew_lease(self, name: str, owner: str, ttl_s: float) -> bool:
        result = await self.leases.update_one(
            {"_id": name, "owner": owner},
            {"$set": {"expiresAt": self.clock() + timedelta(seconds=ttl_s)}})
        return result.matched_count == 1

    async def release_lease(self, name: str, owner: str) -> None:
        await self.leases.delete_one({"_id": name, "owner": owner})

    async def release_all(self, owner: str) -> int:
        return (await self.leases.delete_many({"owner": owner})).deleted_count

    async def lease_holder(self, name: str) -> str | None:
        doc = await self.leases.find_one({"_id": name, "expiresAt": {"$gte": self.clock()}})
        return doc["owner"] if doc else None
